"""The default answer step: extractive, offline, and willing to abstain.

Given a query and the passages the search pipeline returned, every sentence of the top
``passages`` chunks is scored against the query (by the evidence-trained sentence selector, the
reranker or the bi-encoder: any ``score(query, sentences) -> scores``), less ``passage_weight``
per rank of the passage it comes from (0 for the first). When even the best
sentence scores below ``threshold`` the answer is an abstention ("the corpus holds no
evidence"; the threshold is calibrated on the dev split). An :class:`AbstainingScorer` puts
another scorer's best sentence score in that test (chosen on dev when it abstains better). Otherwise the best sentence and, up
to ``max_sentences`` in score order, those scoring at least ``sentence_threshold`` become the
answer, each citing itself as ``(document id, sentence index)``: a fixed count for scorers
without a per-sentence threshold, as many as clear it for the selector. Which sentences are
cited does not depend on the abstention threshold, so an answer is the same whether the
threshold is applied here or afterwards (evaluation applies it afterwards).

Every answer records the chunks it was handed (``retrieved``) and the spans it cites, so an
incident review can tell a retrieval miss from a citation miss.

The answer step re-checks access (defence in depth): a hit whose document the principal may
not read is dropped before any of its sentences is scored, so it can be neither quoted nor
cited, whatever the search before it did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..data.documents import Document
from .citation_metrics import Answer, AnswerSentence, Span

ABSTENTION_TEXT = "The corpus holds no evidence for this question."


@dataclass
class AnswerSettings:
    """``passages`` and ``max_sentences`` are defined (with their defaults) by
    ``config.ServingSelectionConfig`` (``answer_passages``, ``answer_max_sentences``); the
    serving bundle records them, and :meth:`from_bundle` reads them back."""

    passages: int  # top chunks whose sentences are candidates
    max_sentences: int  # the most sentences cited
    threshold: float = float("-inf")  # abstain when the best sentence scores below it (calibrated on dev)
    # cite further sentences only at or above it (the selector's, chosen on dev); -inf: a fixed count
    sentence_threshold: float = float("-inf")
    # subtracted per rank of the passage a sentence comes from (chosen on dev): the retrieval
    # order's say in which sentence is cited, since a sentence scorer alone cannot tell the
    # right page from its near-copy for another site or service
    passage_weight: float = 0.0

    @classmethod
    def from_bundle(cls, bundle: dict) -> "AnswerSettings":
        """The answer step a serving bundle (``serving.json``) was chosen with."""
        answer = bundle["answer"]
        return cls(answer["passages"], answer["max_sentences"], answer["threshold"],
                   answer.get("sentence_threshold", float("-inf")), answer.get("passage_weight", 0.0))


def chunk_sentences(hit, documents: dict[str, Document]) -> list[tuple[Span, str]]:
    """The ``(doc_id, sentence index)`` spans and texts of the sentences inside a hit's chunk."""
    doc = documents[hit.doc_id]
    spans = doc.sentences or [(0, len(doc.text))]
    return [((hit.doc_id, i), doc.text[s:e]) for i, (s, e) in enumerate(spans) if s >= hit.start and e <= hit.end and e > s]


def readable_hits(hits: Sequence, documents: dict[str, Document], principal=None) -> list:
    """The hits whose document ``principal`` (None: public only) may read, in order."""
    from ..retrieval.access import Principal

    who = Principal.of(principal)
    return [hit for hit in hits if who.may_read(documents[hit.doc_id].groups)]


def extractive_answer(
    query_id: str, query: str, hits: Sequence, documents: dict[str, Document],
    score: Callable[[str, list[str]], np.ndarray], settings: AnswerSettings, principal=None,
) -> Answer:
    """Answer from ``hits`` as ``principal`` (its groups; None: public only) may read them."""
    hits = readable_hits(hits, documents, principal)
    candidates: dict[Span, str] = {}
    passage_rank: dict[Span, int] = {}
    for rank, hit in enumerate(list(hits)[: settings.passages]):
        for span, text in chunk_sentences(hit, documents):
            candidates.setdefault(span, text)  # overlapping chunks repeat sentences
            passage_rank.setdefault(span, rank)
    retrieved = [hit.chunk_id for hit in hits]
    if not candidates:
        return Answer(query_id, True, [AnswerSentence(ABSTENTION_TEXT)], retrieved, None)
    spans = list(candidates)
    texts = [candidates[s] for s in spans]
    scores = np.asarray(score(query, texts), dtype=np.float64)
    if settings.passage_weight:
        scores = scores - settings.passage_weight * np.array([passage_rank[s] for s in spans], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    evidence = getattr(score, "evidence", None)  # an AbstainingScorer decides abstention by its own score
    best = float(evidence(query, texts)) if evidence is not None else float(scores[order[0]])
    if best < settings.threshold:
        return Answer(query_id, True, [AnswerSentence(ABSTENTION_TEXT)], retrieved, best)
    chosen = [i for rank, i in enumerate(order[: settings.max_sentences])
              if rank == 0 or scores[i] >= settings.sentence_threshold]
    return Answer(query_id, False, [AnswerSentence(candidates[spans[i]], [spans[i]], score=float(scores[i])) for i in chosen],
                  retrieved, best)


class AbstainingScorer:
    """A sentence scorer that cites with one score and decides abstention with another.

    The score best at ranking a query's sentences (which to cite) need not be the one best at
    telling an answerable query from one the corpus cannot answer: on the bundled sample the
    selector cites best but its best score does not separate the dev abstention cases, while
    the bi-encoder's cosine does. Calling it scores for citations (``cite``); :meth:`evidence`
    is the abstention score, the best ``abstain`` score over the same candidate sentences
    (without the passage weight), and it is what the dev-calibrated threshold applies to."""

    def __init__(self, cite: Callable[[str, list[str]], np.ndarray], abstain: Callable[[str, list[str]], np.ndarray],
                 name: str = ""):
        self.cite, self.abstain, self.name = cite, abstain, name

    def __call__(self, query: str, sentences: list[str]) -> np.ndarray:
        return self.cite(query, sentences)

    def evidence(self, query: str, sentences: list[str]) -> float:
        return float(np.max(np.asarray(self.abstain(query, sentences), dtype=np.float64)))


def calibrate_threshold(answerable_scores: Sequence[float], unanswerable_scores: Sequence[float]) -> tuple[float, float]:
    """The threshold that maximises abstention accuracy on a labelled (dev) set: answer when
    the best evidence score is at or above it. Returns ``(threshold, dev accuracy)``; ties go
    to the lowest threshold (answer more). With no unanswerable query, never abstain."""
    answerable = np.asarray([s for s in answerable_scores if s is not None], dtype=np.float64)
    unanswerable = np.asarray([s for s in unanswerable_scores if s is not None], dtype=np.float64)
    if len(unanswerable) == 0:
        return float("-inf"), 1.0
    candidates = np.unique(np.concatenate([answerable, unanswerable, [np.inf]]))
    total = len(answerable) + len(unanswerable)
    best_t, best_acc = float("-inf"), (len(answerable)) / total
    for t in candidates:
        acc = ((answerable >= t).sum() + (unanswerable < t).sum()) / total
        if acc > best_acc + 1e-12:
            best_t, best_acc = float(t), float(acc)
    return best_t, float(best_acc)


@dataclass
class AbstentionSettings:
    """What the dev calibration of the abstention threshold aims for. ``target`` is
    ``accuracy`` (the threshold with the best abstention accuracy) or ``citation_precision``
    (the lowest threshold at which the answered queries' mean citation precision reaches
    ``min_citation_precision``: answer as much as that precision allows). Both knobs are
    defined by ``config.ServingSelectionConfig`` (``abstention_*``)."""

    target: str
    min_citation_precision: float

    @classmethod
    def from_bundle(cls, bundle: dict) -> "AbstentionSettings":
        """The target a serving bundle's threshold was calibrated for; bundles written before
        targets existed were calibrated for accuracy."""
        recorded = bundle["answer"].get("abstention_target") or {"target": "accuracy", "min_citation_precision": 0.0}
        return cls(recorded["target"], float(recorded["min_citation_precision"]))


def lowest_threshold_reaching(candidates: Sequence[float], metric_at: Callable[[float], float], minimum: float
                              ) -> tuple[float, float, bool]:
    """The lowest candidate threshold whose dev ``metric_at(threshold)`` is at least
    ``minimum``: ``(threshold, metric there, True)``. When none reaches it, the threshold
    with the best metric (the lowest among ties) and ``False``, so the caller can say the
    target was missed rather than silently serving something else."""
    best = (float("-inf"), float("-inf"))
    for t in sorted(set(float(c) for c in candidates) | {float("-inf")}):
        value = metric_at(t)
        if value != value:  # nan: nothing answered at this threshold
            continue
        if value >= minimum:
            return t, value, True
        if value > best[1]:
            best = (t, value)
    return best[0], best[1], False


def threshold_curve(answerable_scores: Sequence[float], unanswerable_scores: Sequence[float], points: int = 50):
    """(thresholds, abstention accuracy, answered share) for the report's threshold plot."""
    answerable = np.asarray(answerable_scores, dtype=np.float64)
    unanswerable = np.asarray(unanswerable_scores, dtype=np.float64)
    everything = np.concatenate([answerable, unanswerable])
    if len(everything) == 0:
        return np.array([]), np.array([]), np.array([])
    grid = np.linspace(everything.min(), everything.max(), points)
    total = len(everything)
    accuracy = np.array([((answerable >= t).sum() + (unanswerable < t).sum()) / total for t in grid])
    answered = np.array([(everything >= t).mean() for t in grid])
    return grid, accuracy, answered


def reliability_bins(answerable_scores: Sequence[float], unanswerable_scores: Sequence[float], bins: int = 8
                     ) -> dict[str, list[float]]:
    """The abstention reliability curve: queries grouped by their best evidence score into
    equal-count bins; per bin the mean score, the share of queries that are answerable (what
    answering bets on) and the count. A score that separates the two rises across bins; a
    flat curve means no threshold on it abstains well."""
    scores = np.concatenate([np.asarray(answerable_scores, dtype=np.float64), np.asarray(unanswerable_scores, dtype=np.float64)])
    answerable = np.concatenate([np.ones(len(answerable_scores)), np.zeros(len(unanswerable_scores))])
    if len(scores) == 0:
        return {"score": [], "answerable_share": [], "count": []}
    order = np.argsort(scores, kind="stable")
    groups = [g for g in np.array_split(order, min(bins, len(scores))) if len(g)]
    return {"score": [float(scores[g].mean()) for g in groups],
            "answerable_share": [float(answerable[g].mean()) for g in groups],
            "count": [float(len(g)) for g in groups]}


def encoder_scorer(encoder, batch_size: int = 64) -> Callable[[str, list[str]], np.ndarray]:
    """Cosine similarity of the query and each sentence under a bi-encoder."""
    from ..retrieval.encoder import encode

    def score(query: str, sentences: list[str]) -> np.ndarray:
        vectors = encode(encoder, [query, *sentences], batch_size)
        return vectors[1:] @ vectors[0]

    return score


def reranker_scorer(reranker, batch_size: int = 32) -> Callable[[str, list[str]], np.ndarray]:
    """A cross-encoder's logit for (query, sentence): the passage reranker's, or the sentence
    selector's (the same kind of model, trained on sentence evidence)."""
    from ..retrieval.cross_encoder import score_pairs

    return lambda query, sentences: score_pairs(reranker, query, sentences, batch_size)


def answer_split(pipeline, qids: list[str], queries: dict[str, str], documents: dict[str, Document],
                 score: Callable[[str, list[str]], np.ndarray], settings: AnswerSettings, batch_size: int = 32,
                 principal=None) -> dict[str, Answer]:
    """Search and answer every query of a split (batched search, one answer per query), as
    ``principal`` (None: the pipeline's own)."""
    who = principal if principal is not None else getattr(pipeline, "principal", None)
    answers: dict[str, Answer] = {}
    for start in range(0, len(qids), batch_size):
        batch = qids[start : start + batch_size]
        texts = [queries[q] for q in batch]
        results = pipeline.search(texts) if principal is None else pipeline.search(texts, principal=principal)
        for qid, result in zip(batch, results):
            answers[qid] = extractive_answer(qid, queries[qid], result.hits, documents, score, settings, who)
    return answers
