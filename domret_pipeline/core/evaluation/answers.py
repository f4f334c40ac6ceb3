"""End-to-end answer evaluation on a split: search, answer with citations, score the citations.

Answers are produced once with no threshold (every query answered, its best evidence score
recorded); the abstention threshold is then applied afterwards. That makes calibration on dev
and the threshold curve free: no query is searched twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..answers.citation_metrics import Answer, AnswerSentence, Span, aggregate, score_answer
from ..answers.extractive import (
    ABSTENTION_TEXT, AbstainingScorer, AbstentionSettings, AnswerSettings, answer_split, calibrate_threshold,
    extractive_answer,
    lowest_threshold_reaching,
    reliability_bins, threshold_curve,
)
from ..data.documents import Document
from ..data.labels import LabeledQueries


class RememberedSearch:
    """A search pipeline whose results are remembered per (query, top_n, principal): the dev
    choice of the answer step tries several scorers, and the report answers the challenger's
    searches with two, on the same queries; each query is searched (and reranked) once.
    Everything else is the wrapped pipeline's."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self._seen: dict = {}

    def __getattr__(self, name):
        return getattr(self.pipeline, name)

    def search(self, queries: list[str], top_n: int | None = None, principal=None) -> list:
        def key(query):
            return query, top_n, None if principal is None else repr(principal)

        missing = [q for q in dict.fromkeys(queries) if key(q) not in self._seen]
        if missing:
            found = (self.pipeline.search(missing, top_n) if principal is None
                     else self.pipeline.search(missing, top_n, principal=principal))
            self._seen.update((key(q), result) for q, result in zip(missing, found))
        return [self._seen[key(q)] for q in queries]


def gold_spans(labels: LabeledQueries, qids: list[str]) -> dict[str, set[Span]]:
    wanted = set(qids)
    gold: dict[str, set[Span]] = {q: set() for q in qids}
    for item in labels.evidence:
        if item.query_id in wanted:
            gold[item.query_id].update((item.doc_id, s) for s in item.sentences)
    return gold


def span_coverage(retrieved: list[str], gold: set[Span], chunks: dict, documents: dict[str, Document]) -> float | None:
    """The share of a query's gold evidence sentences that lie inside one of its retrieved
    chunks (``chunks``: chunk id -> an object with ``doc_id``, ``start``, ``end``). The
    answer step can only cite what retrieval handed it, so this bounds citation recall and
    tells a retrieval miss from a citation miss. None for a query without evidence."""
    if not gold:
        return None
    held = [chunks[c] for c in retrieved if c in chunks]
    covered = 0
    for doc_id, index in gold:
        doc = documents[doc_id]
        start, end = doc.sentences[index] if doc.sentences else (0, len(doc.text))
        covered += any(c.doc_id == doc_id and c.start <= start and end <= c.end for c in held)
    return covered / len(gold)


def span_text_of(documents: dict[str, Document]):
    """``span -> text`` for the citation checks: the sentence, or the whole text of a document
    without a sentence split."""

    def span_text(span: Span) -> str:
        doc = documents[span[0]]
        return doc.sentence_text(span[1]) if doc.sentences else doc.text

    return span_text


def with_threshold(answer: Answer, threshold: float) -> Answer:
    """The answer the threshold would have given: an abstention below it."""
    if answer.abstained or answer.evidence_score is None or answer.evidence_score >= threshold:
        return answer
    return replace(answer, abstained=True, sentences=[AnswerSentence(ABSTENTION_TEXT)])


def answer_scores(answers: dict[str, Answer], gold: dict[str, set[Span]]) -> tuple[list[float], list[float]]:
    answerable = [a.evidence_score for q, a in answers.items() if gold[q] and a.evidence_score is not None]
    unanswerable = [a.evidence_score for q, a in answers.items() if not gold[q] and a.evidence_score is not None]
    return answerable, unanswerable


def choose_threshold(raw: dict[str, Answer], gold: dict[str, set[Span]], relevant: dict[str, set[str]], span_text,
                     target: AbstentionSettings | None = None) -> tuple[float, dict]:
    """The abstention threshold for ``target`` from unthresholded (dev) answers, and what it
    reached there: ``{"target", "dev_abstention_accuracy" | "dev_citation_precision", "reached"}``."""
    if target is None or target.target == "accuracy":
        threshold, accuracy = calibrate_threshold(*answer_scores(raw, gold))
        return threshold, {"target": "accuracy", "dev_abstention_accuracy": accuracy, "reached": True}

    def precision_at(threshold: float) -> float:
        rows = {q: score_answer(with_threshold(a, threshold), gold[q], relevant[q], span_text) for q, a in raw.items()}
        return aggregate(rows)["citation_precision"]

    scores = [a.evidence_score for a in raw.values() if a.evidence_score is not None]
    threshold, value, reached = lowest_threshold_reaching(scores, precision_at, target.min_citation_precision)
    return threshold, {"target": f"citation_precision >= {target.min_citation_precision:g}",
                       "dev_citation_precision": value, "reached": reached}


def _dev_answers(pipeline, labels: LabeledQueries, split: str, documents: dict[str, Document], score,
                 settings: AnswerSettings):
    qids = sorted(labels.qrels_for(split))
    qrels = labels.qrels_for(split)
    raw = answer_split(pipeline, qids, labels.queries, documents, score, replace(settings, threshold=float("-inf")))
    relevant = {q: {d for d, r in qrels[q].items() if r > 0} for q in qids}
    return raw, gold_spans(labels, qids), relevant


def calibrate(pipeline, labels: LabeledQueries, split: str, documents: dict[str, Document], score,
              settings: AnswerSettings, target: AbstentionSettings | None = None) -> tuple[float, dict]:
    """(threshold, what it reached) for one system on one (dev) split. Needs evidence labels:
    without any, the threshold is -inf (never abstain)."""
    if not labels.evidence:
        return float("-inf"), {}
    raw, gold, relevant = _dev_answers(pipeline, labels, split, documents, score, settings)
    return choose_threshold(raw, gold, relevant, span_text_of(documents), target)


def evaluate_answers(pipeline, labels: LabeledQueries, split: str, documents: dict[str, Document], score,
                     settings: AnswerSettings, generator=None) -> dict:
    """Summary metrics, per-query rows, the answers and the threshold curve of one system.
    With a ``generator`` (see :mod:`.answers.generator`) the answers are generated instead: the
    model abstains by itself, so there is no threshold or curve."""
    qids = sorted(labels.qrels_for(split))
    gold = gold_spans(labels, qids)
    if generator is not None:
        from ..answers.generator import generated_answers

        raw, _ = generated_answers(pipeline, qids, labels.queries, documents, generator, settings.passages)
        answers = raw
    else:
        raw = answer_split(pipeline, qids, labels.queries, documents, score, replace(settings, threshold=float("-inf")))
        answers = {q: with_threshold(a, settings.threshold) for q, a in raw.items()}
    qrels = labels.qrels_for(split)
    span_text = span_text_of(documents)
    rows = {q: score_answer(answers[q], gold[q], {d for d, r in qrels[q].items() if r > 0}, span_text) for q in qids}
    for q in qids:  # the chunks the answer step reads: the same with or without a threshold
        rows[q]["span_coverage"] = span_coverage(raw[q].retrieved[: settings.passages], gold[q], pipeline.chunks, documents)
    grid, accuracy, answered = threshold_curve(*answer_scores(raw, gold)) if generator is None else ([], [], [])
    return {
        "summary": {**aggregate(rows), "threshold": settings.threshold if generator is None else float("nan"),
                    "n_queries": len(qids),
                    "n_unanswerable": sum(1 for q in qids if not gold[q])},
        "rows": rows, "answers": answers,
        "curve": {"threshold": list(map(float, grid)), "accuracy": list(map(float, accuracy)),
                  "answered": list(map(float, answered)),
                  "reliability": reliability_bins(*answer_scores(raw, gold)) if generator is None else {}},
    }


def with_sentence_threshold(answer: Answer, sentence_threshold: float) -> Answer:
    """The answer a higher per-sentence threshold would have given: the best sentence, then
    only the further ones scoring at least ``sentence_threshold`` (answers keep each sentence's
    score, so a dev grid of thresholds costs no re-scoring)."""
    if answer.abstained or sentence_threshold == float("-inf"):
        return answer
    kept = [s for rank, s in enumerate(answer.sentences) if rank == 0 or s.score is None or s.score >= sentence_threshold]
    return replace(answer, sentences=kept)


@dataclass
class AnswerCalibration:
    """What the dev split chose for one answer scorer: the abstention threshold, the
    per-sentence threshold (-inf: a fixed count), the passage weight, the dev metrics with them
    applied, what the abstention calibration reached, and whose best sentence score the
    threshold applies to (``abstention_scorer``; None: the citing scorer's own)."""

    threshold: float
    sentence_threshold: float
    summary: dict
    reached: dict
    passage_weight: float = 0.0
    settings_tried: int = 1
    abstention_scorer: str | None = None


PASSAGE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # in standard deviations of the dev sentence scores


def remembered(score):
    """``score`` remembered per (query, sentence): the dev grid re-answers without re-scoring.
    A scorer remembered already is returned as it is (serving_config shares one per scorer
    between the citation and the abstention trials)."""
    if hasattr(score, "seen"):
        return score
    seen: dict[tuple[str, str], float] = {}

    def remembered(query: str, sentences: list[str]) -> np.ndarray:
        missing = [s for s in dict.fromkeys(sentences) if (query, s) not in seen]
        if missing:
            seen.update(((query, s), float(v)) for s, v in zip(missing, score(query, missing)))
        return np.array([seen[(query, s)] for s in sentences], dtype=np.float64)

    remembered.seen = seen
    return remembered


def calibrate_answer_step(pipeline, labels: LabeledQueries, split: str, documents: dict[str, Document], score,
                          settings: AnswerSettings, target: AbstentionSettings | None = None,
                          sentence_candidates: int = 0, passage_weights: tuple[float, ...] = PASSAGE_WEIGHTS,
                          abstainers: dict | None = None) -> AnswerCalibration:
    """The answer step's settings for one scorer, chosen on a (dev) split in one search pass:
    the passage weight (``passage_weights``, in standard deviations of the dev sentence scores,
    so one grid serves cosines and logits), and, with ``sentence_candidates`` > 0 (a scorer with
    a per-sentence threshold: the selector), the per-sentence threshold: ``settings.sentence_threshold``
    (the selector's own, from its dev F1 on the relevant documents' sentences), that many
    quantiles of the scores of the sentences the served pipeline hands the answer step, +inf
    (the best sentence alone) and -inf (every sentence up to the cap). For each combination the
    abstention threshold meets ``target`` as :func:`choose_threshold` does; the combination with
    the best :func:`answer_quality` is kept (ties: the earlier, so no passage weight and the
    selector's own threshold first). ``abstainers`` (name -> sentence scorer) are tried as the
    abstention score too (an :class:`AbstainingScorer`: cite with ``score``, abstain on their
    best sentence score); they must beat the citing scorer's own on dev to be kept. Without
    evidence labels nothing can be calibrated."""
    if not labels.evidence:
        return AnswerCalibration(float("-inf"), settings.sentence_threshold, {}, {})
    qids = sorted(labels.qrels_for(split))
    qrels = labels.qrels_for(split)
    gold, relevant = gold_spans(labels, qids), {q: {d for d, r in qrels[q].items() if r > 0} for q in qids}
    who = getattr(pipeline, "principal", None)
    hits = {}
    for start in range(0, len(qids), 32):
        batch = qids[start: start + 32]
        for qid, result in zip(batch, pipeline.search([labels.queries[q] for q in batch])):
            hits[qid] = result.hits
    memo = remembered(score)
    span_text = span_text_of(documents)
    own = settings.sentence_threshold
    loose = replace(settings, threshold=float("-inf"),
                    sentence_threshold=float("-inf") if sentence_candidates > 0 else own)

    def answer_all(scorer, weight: float) -> dict[str, Answer]:
        return {q: extractive_answer(q, labels.queries[q], hits[q], documents, scorer, replace(loose, passage_weight=weight),
                                     who) for q in qids}

    answer_all(memo, 0.0)  # scores every candidate once
    spread = float(np.std(list(memo.seen.values()))) if memo.seen else 0.0
    scorers = {None: memo, **{name: AbstainingScorer(memo, remembered(other), name) for name, other in (abstainers or {}).items()}}
    best, tried = None, 0
    for abstainer, scorer in scorers.items():  # the citing scorer's own abstention first: it wins ties
        for weight in dict.fromkeys(w * spread for w in passage_weights):
            raw = answer_all(scorer, weight)
            grid = [own]
            if sentence_candidates > 0:
                scores = np.array([s.score for a in raw.values() for s in a.sentences[1:] if s.score is not None])
                if len(scores):
                    grid += [float(q) for q in np.unique(np.quantile(scores, np.linspace(0, 1, sentence_candidates)))]
                grid += [float("inf"), float("-inf")]
            for sentence_threshold in dict.fromkeys(grid):  # in order, without repeats
                tried += 1
                answers = {q: with_sentence_threshold(a, sentence_threshold) for q, a in raw.items()}
                threshold, reached = choose_threshold(answers, gold, relevant, span_text, target)
                rows = {q: score_answer(with_threshold(a, threshold), gold[q], relevant[q], span_text)
                        for q, a in answers.items()}
                summary = aggregate(rows)
                if best is None or answer_quality(summary) > answer_quality(best.summary) + 1e-12:
                    best = AnswerCalibration(threshold, sentence_threshold, summary, reached, weight,
                                             abstention_scorer=abstainer)
    best.settings_tried = tried
    return best


ANSWER_SELECTION = ("citation_precision", "citation_recall", "citation_f1", "abstention_accuracy")


def answer_quality(summary: dict) -> float:
    """What the dev choices of the answer step maximise: the mean of citation F1 (ALCE's, at
    sentence level: precision and recall must both be high, so citing more cannot buy recall
    with precision one for one) and abstention accuracy. Faithfulness is not in it: extractive
    answers are faithful by construction."""
    import math

    values = [summary.get(m, math.nan) for m in ("citation_f1", "abstention_accuracy")]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("-inf")
