"""Pseudo-queries: weakly labeled (query, positive passage) pairs cut from the corpus itself,
with no judgement and, but for the optional ``generated`` kind, no model (asset ``pseudo_queries``).

Four kinds of pair (the first three need no model):

- ``inverse_cloze`` (ICT, Lee et al. 2019): a sentence of a chunk is the query and that chunk,
  with the sentence removed, is the positive. A sentence that several chunks hold (their
  overlap) is paired with one of them, drawn; a sentence no chunk holds whole (an over-long
  sentence cut into token windows) is not used.
- ``title``: a document's title is the query and its first chunk the positive.
- ``crop`` (Contriever's independent cropping, Izacard et al. 2022): two contiguous spans of one
  document, each ``crop_min_ratio`` to ``crop_max_ratio`` of its words (the query's length held
  within ``min_query_words``..``max_query_words``); the positive span is redrawn until at most
  ``crop_max_overlap`` of the query's words lie inside it, so the two are never the same span.
  A span runs from the start of its first word to the end of its last (words as the length rule
  counts them), so punctuation at its edges is left out.
- ``generated`` (doc2query-style, only with an OpenAI-compatible endpoint configured): a chunk
  drawn from the document goes to a chat model that writes a question it answers
  (:mod:`.question_writer`, under the answer generator's untrusted-text policy); the chunk is
  the positive. A failed call or an empty reply drops the candidate, counted.

How a positive is rendered: ``PseudoPair.positive`` is the text to train on and never holds the
query verbatim. For ICT it is the chunk's text before the sentence and after it, joined by one
space; for a title pair, the chunk's text; for a crop, the positive span. ``PseudoPair.title`` is
the title a trainer puts in front when passages are encoded with their title
(``PseudoPair.passage``, as ``chunking.passage_text`` renders a chunk); it is empty for a title
query, so the title never comes back. Every check below reads the passage with its title.

Filters, each counted per reason and kind (:data:`REASONS`, in the order they apply): a positive
on an evaluation document; nothing left of the chunk once the sentence is removed; a crop with no
positive under the overlap bound; a query too short or too long (words); boilerplate (mostly
digits and punctuation, or a text found in more than ``max_query_repeats`` documents); the query
verbatim in its passage (case and spacing aside); a near-copy (token Jaccard of query and passage
above ``max_jaccard``); a query already kept (exact text, case and spacing aside: the first in
corpus order stays); then the caps. The cap per document takes the kinds in turn (so the many
sentences do not crowd out titles and crops), each kind's pairs in a drawn order; the total cap
keeps a seeded sample. Kept pairs stay in corpus order.

Leakage: a pair whose positive is a document relevant to a dev or test query would train the
encoder to retrieve that document for a query cut from its own text. The dev choices and the
frozen test figures would then be optimistic, since the encoder saw the evaluation positives as
positives. Such pairs are dropped unless ``allow_eval_documents``; allowed, they are counted
(``pairs_on_eval_documents``).

Deterministic: each document draws from its own generator, seeded by the seed and the document
id, so a document's pairs do not depend on the rest of the corpus; the same seed and corpus give
the same pairs in the same order.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

from ..data.chunking import Chunk
from ..data.documents import Document
from ..data.labels import LabeledQueries, normalized_text

KINDS = ("inverse_cloze", "title", "crop", "generated")
REASONS = ("eval_document", "empty_positive", "crop_overlap", "generator_failed", "generator_empty", "too_short",
           "too_long", "boilerplate_symbols", "boilerplate_repeated", "verbatim_in_positive", "near_copy", "duplicate_query", "per_document_cap",
           "total_cap")
EVAL_SPLITS = ("dev", "test")
_WORD = re.compile(r"\w+")  # what the length and Jaccard rules count, and what a crop is cut along
_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script
_SPACE = re.compile(r"\s")
_CROP_TRIES = 8  # positive spans drawn before a crop gives up on the overlap bound

# (title, passage) -> a question the passage answers (question_writer.py); raises on failure
QuestionWriter = Callable[[str, str], str]


@dataclass
class PseudoQuerySettings:
    """The generator's settings. No defaults here: their one definition is
    ``config.PseudoQueriesConfig``, which builds this (test_settings pins it)."""

    kinds: list[str]
    seed: int
    min_query_words: int
    max_query_words: int
    min_letter_share: float  # letters among a query's non-space characters, below: boilerplate
    max_query_repeats: int  # documents a query's text may appear in before it is boilerplate
    max_jaccard: float
    crop_min_ratio: float
    crop_max_ratio: float
    crop_max_overlap: float
    crops_per_document: int
    generated_per_document: int  # chunks per document sent to the question writer (kind generated)
    max_pairs_per_document: int
    max_pairs: int
    allow_eval_documents: bool

    def validate(self) -> None:
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown or not self.kinds:
            raise ValueError(f"kinds must be some of {list(KINDS)}, not {self.kinds}")
        if not 1 <= self.min_query_words <= self.max_query_words:
            raise ValueError("need 1 <= min_query_words <= max_query_words")
        if not 0 < self.crop_min_ratio <= self.crop_max_ratio <= 1:
            raise ValueError("need 0 < crop_min_ratio <= crop_max_ratio <= 1")
        if not 0 <= self.crop_max_overlap < 1:
            raise ValueError("crop_max_overlap must be in [0, 1): a crop equal to its positive is no pair")
        if min(self.max_pairs_per_document, self.max_pairs, self.crops_per_document, self.generated_per_document) < 1:
            raise ValueError("max_pairs_per_document, max_pairs, crops_per_document and generated_per_document "
                             "must be at least 1")


@dataclass(frozen=True)
class PseudoPair:
    """One weakly labeled pair. Spans are ``[start, end)`` character offsets in the document text."""

    pair_id: str  # <doc id>:<kind>:<n>, stable for a document, seed and settings
    kind: str
    query: str
    positive: str  # the text trained on (module docstring: how it is rendered)
    title: str  # put in front of ``positive`` when passages carry their title; "" for a title query
    doc_id: str
    chunk_id: str | None  # the chunk the positive comes from (None for a crop: a span of the document)
    query_span: tuple[int, int] | None  # None for a title
    positive_span: tuple[int, int]  # the chunk's span (ICT: the sentence is cut out of it) or the crop's

    def passage(self, with_title: bool = True) -> str:
        return f"{self.title}\n{self.positive}" if with_title and self.title else self.positive

    def as_dict(self) -> dict:
        row = asdict(self)
        return {**row, "query_span": list(self.query_span) if self.query_span else None,
                "positive_span": list(self.positive_span)}

    @classmethod
    def from_dict(cls, row: dict) -> "PseudoPair":
        span = row.get("query_span")
        return cls(**{**row, "query_span": tuple(span) if span else None, "positive_span": tuple(row["positive_span"])})


@dataclass
class PseudoQueryResult:
    pairs: list[PseudoPair]
    candidates: Counter  # kind -> candidate pairs made
    dropped: dict[str, Counter]  # reason -> kind -> candidates dropped
    eval_documents: int  # documents relevant to a dev or test query
    pairs_on_eval_documents: int  # kept pairs on those documents (0 unless allow_eval_documents)

    def kept(self) -> dict[str, int]:
        counts = Counter(p.kind for p in self.pairs)
        return {kind: counts.get(kind, 0) for kind in self.candidates}

    def dropped_counts(self) -> dict[str, dict[str, int]]:
        """reason -> kind -> candidates, reasons in the order they apply, only those that dropped any."""
        return {r: dict(sorted(self.dropped[r].items())) for r in REASONS if sum(self.dropped.get(r, Counter()).values())}


PAIRS_FILE = "pairs.jsonl"  # in a pseudo_queries artifact: one PseudoPair.as_dict() per line, corpus order


def write_pairs(folder, pairs: Iterable[PseudoPair]) -> None:
    from pathlib import Path

    from ..data.serialization import write_jsonl

    write_jsonl(Path(folder) / PAIRS_FILE, (p.as_dict() for p in pairs))


def read_pairs(folder) -> list[PseudoPair]:
    """The pairs :func:`write_pairs` wrote, in their order."""
    from pathlib import Path

    from ..data.serialization import read_jsonl

    return [PseudoPair.from_dict(row) for row in read_jsonl(Path(folder) / PAIRS_FILE)]


def eval_documents(labels: LabeledQueries) -> set[str]:
    """Documents judged relevant (score above 0) to a dev or test query."""
    return {doc for split in EVAL_SPLITS for q in labels.ids(split)
            for doc, score in labels.qrels.get(q, {}).items() if score > 0}


def generate_pseudo_queries(documents: Iterable[Document], chunks: Iterable[Chunk], settings: PseudoQuerySettings,
                            held_out: set[str], writer: QuestionWriter | None = None) -> PseudoQueryResult:
    """The pairs of the documents that have chunks (pass only the chunks training may read),
    in corpus order. ``held_out``: the evaluation documents (:func:`eval_documents`).
    ``writer``: the question writer of the ``generated`` kind (needed exactly when it is listed)."""
    settings.validate()
    if ("generated" in settings.kinds) != (writer is not None):
        raise ValueError("kinds lists 'generated' but no question writer is configured (pseudo_queries."
                         "generator_base_url and generator_model)" if writer is None else
                         "a question writer is configured but kinds does not list 'generated'")
    by_doc: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_doc.setdefault(chunk.doc_id, []).append(chunk)
    docs = [d for d in documents if d.doc_id in by_doc]
    repeats = _document_frequency(docs)
    candidates: Counter = Counter({kind: 0 for kind in settings.kinds})
    dropped: dict[str, Counter] = {reason: Counter() for reason in REASONS}
    seen: set[str] = set()
    kept: list[PseudoPair] = []
    for doc in docs:
        rng = random.Random(f"{settings.seed}:{doc.doc_id}")
        survivors: dict[str, list[tuple[int, PseudoPair]]] = {kind: [] for kind in settings.kinds}
        held = doc.doc_id in held_out and not settings.allow_eval_documents
        for position, (pair, reason) in enumerate(_candidates(doc, sorted(by_doc[doc.doc_id], key=lambda c: c.index),
                                                              settings, rng, writer, skip=held)):
            candidates[pair.kind] += 1
            if held:
                reason = "eval_document"
            reason = reason or _rejection(pair, settings, repeats)
            if reason is None:
                key = normalized_text(pair.query)
                reason = "duplicate_query" if key in seen else None
                seen.add(key)
            if reason:
                dropped[reason][pair.kind] += 1
                continue
            survivors[pair.kind].append((position, pair))
        chosen = _take_in_turn(survivors, settings.max_pairs_per_document, rng)
        for kind, items in survivors.items():
            dropped["per_document_cap"][kind] += len(items) - sum(1 for _, p in chosen if p.kind == kind)
        kept.extend(pair for _, pair in sorted(chosen, key=lambda item: item[0]))
    if len(kept) > settings.max_pairs:
        sample = set(random.Random(settings.seed).sample(range(len(kept)), settings.max_pairs))
        for i, pair in enumerate(kept):
            if i not in sample:
                dropped["total_cap"][pair.kind] += 1
        kept = [pair for i, pair in enumerate(kept) if i in sample]
    held = {d.doc_id for d in docs} & held_out
    return PseudoQueryResult(kept, candidates, dropped, len(held), sum(p.doc_id in held for p in kept))


def _candidates(doc: Document, chunks: list[Chunk], settings: PseudoQuerySettings, rng: random.Random,
                writer: QuestionWriter | None, skip: bool) -> Iterator[tuple[PseudoPair, str | None]]:
    """Every candidate of one document, with the reason it already fails (a crop's overlap, a
    failed question writer). ``skip``: the document gives no pair (held out), so the writer is
    not called for it, but its candidates are still counted."""
    if "inverse_cloze" in settings.kinds:
        for n, (start, end) in enumerate(doc.sentences):
            holders = [c for c in chunks if c.start <= start and end <= c.end]
            if not holders or start == end:
                continue
            chunk = holders[0] if len(holders) == 1 else rng.choice(holders)
            around = (doc.text[chunk.start:start].strip(), doc.text[end:chunk.end].strip())
            yield PseudoPair(f"{doc.doc_id}:inverse_cloze:{n}", "inverse_cloze", doc.text[start:end],
                             " ".join(part for part in around if part), chunk.title, doc.doc_id, chunk.chunk_id,
                             (start, end), (chunk.start, chunk.end)), None
    if "title" in settings.kinds and doc.title.strip():
        first = chunks[0]
        yield PseudoPair(f"{doc.doc_id}:title:0", "title", doc.title.strip(), first.text, "", doc.doc_id,
                         first.chunk_id, None, (first.start, first.end)), None
    tokens = [(m.start(), m.end()) for m in _WORD.finditer(doc.text)]
    if "crop" in settings.kinds and tokens:
        for n in range(settings.crops_per_document):
            yield _crop(doc, tokens, settings, rng, n)
    if "generated" in settings.kinds:  # last: the other kinds' draws stay as they were without it
        for n in range(settings.generated_per_document):
            yield _generated(doc, rng.choice(chunks), writer, n, skip)


def _generated(doc: Document, chunk: Chunk, writer: QuestionWriter, n: int, skip: bool) -> tuple[PseudoPair, str | None]:
    """A question the writer asks of one chunk, the chunk its positive."""
    from ..answers.generator import GeneratorError

    query, reason = "", None
    if not skip:
        try:
            query = writer(chunk.title, chunk.text)
        except GeneratorError:
            reason = "generator_failed"
        else:
            reason = None if query.strip() else "generator_empty"
    pair = PseudoPair(f"{doc.doc_id}:generated:{n}", "generated", query, chunk.text, chunk.title, doc.doc_id,
                      chunk.chunk_id, None, (chunk.start, chunk.end))
    return pair, reason


def _crop(doc: Document, tokens: list[tuple[int, int]], settings: PseudoQuerySettings, rng: random.Random,
          n: int) -> tuple[PseudoPair, str | None]:
    """One crop pair: a query span, then positive spans drawn until one overlaps it little enough."""
    total = len(tokens)

    def length(bounds: tuple[int, int]) -> int:
        drawn = round(rng.uniform(settings.crop_min_ratio, settings.crop_max_ratio) * total)
        return max(1, min(total, max(bounds[0], min(bounds[1], drawn))))

    q_len = length((settings.min_query_words, settings.max_query_words))
    q_at = rng.randrange(total - q_len + 1)
    p_len = length((settings.min_query_words, total))
    for _ in range(_CROP_TRIES):
        p_at = rng.randrange(total - p_len + 1)
        overlap = max(0, min(q_at + q_len, p_at + p_len) - max(q_at, p_at)) / q_len
        if overlap <= settings.crop_max_overlap:
            break
    query_span = (tokens[q_at][0], tokens[q_at + q_len - 1][1])
    positive_span = (tokens[p_at][0], tokens[p_at + p_len - 1][1])
    pair = PseudoPair(f"{doc.doc_id}:crop:{n}", "crop", doc.text[slice(*query_span)], doc.text[slice(*positive_span)],
                      doc.title, doc.doc_id, None, query_span, positive_span)
    return pair, None if overlap <= settings.crop_max_overlap else "crop_overlap"


def _rejection(pair: PseudoPair, settings: PseudoQuerySettings, repeats: Counter) -> str | None:
    """The first filter ``pair`` fails (:data:`REASONS` order), or None."""
    if not pair.positive.strip():
        return "empty_positive"
    words = _WORD.findall(pair.query.lower())
    if len(words) < settings.min_query_words:
        return "too_short"
    if len(words) > settings.max_query_words:
        return "too_long"
    visible = len(pair.query) - len(_SPACE.findall(pair.query))
    if len(_LETTER.findall(pair.query)) < settings.min_letter_share * visible:
        return "boilerplate_symbols"
    query = normalized_text(pair.query)
    if repeats[query] > settings.max_query_repeats:
        return "boilerplate_repeated"
    passage = normalized_text(pair.passage(with_title=True))
    if query in passage:
        return "verbatim_in_positive"
    if token_jaccard(words, _WORD.findall(passage)) > settings.max_jaccard:
        return "near_copy"
    return None


def token_jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|A ∩ B| / |A ∪ B| of the two token sets (0 when both are empty)."""
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a or b else 0.0


def _document_frequency(docs: list[Document]) -> Counter:
    """Normalized sentence or title text -> documents holding it: what repeats is boilerplate."""
    frequency: Counter = Counter()
    for doc in docs:
        texts = {normalized_text(doc.text[s:e]) for s, e in doc.sentences}
        frequency.update(texts | ({normalized_text(doc.title)} if doc.title.strip() else set()))
    return frequency


def _take_in_turn(survivors: dict[str, list[tuple[int, PseudoPair]]], cap: int,
                  rng: random.Random) -> list[tuple[int, PseudoPair]]:
    """Up to ``cap`` of one document's survivors, the kinds in turn, each kind in a drawn order."""
    queues = []
    for kind in survivors:
        queue = list(survivors[kind])
        rng.shuffle(queue)
        queues.append(queue)
    chosen: list[tuple[int, PseudoPair]] = []
    while len(chosen) < cap and any(queues):
        for queue in queues:
            if queue and len(chosen) < cap:
                chosen.append(queue.pop(0))
    return chosen
