"""An evidence-trained sentence selector: which retrieved sentences support the query.

The extractive answer step ranks sentences by a score trained for passage retrieval (the
bi-encoder's cosine, or the reranker's logit on whole chunks). Where the labels carry
sentence-level evidence (SciFact's ``evidence.jsonl``, or any user's spans), a cross-encoder
can be taught the task itself: for each training query, its evidence sentences are the
positives and the other sentences of its relevant documents are the hard negatives (on topic,
from the right document, yet not support). That is the reranker trainer's task on shorter
texts, so training reuses :func:`..training.reranker.train_reranker` unchanged (LoRA on the
packaged MiniLM backbone, the MNRL listwise loss, early stopping on dev).

Two choices are made on dev, never on test:
- training keeps the epoch whose dev ranking of each query's candidate sentences (evidence
  first) is best;
- :func:`choose_sentence_threshold` sets the per-sentence threshold that maximises dev F1 of
  "this sentence is evidence", so an answer cites as many sentences as clear it rather than a
  fixed count. ``serving_config`` refines it on the dev answers of the served pipeline, whose
  candidates come from retrieved passages rather than the relevant documents
  (:func:`..evaluation.answers.calibrate_answer_step`).

Negatives also come, when asked, from the query's mined negative passages (``hard_negatives``):
sentences of on-topic but wrong documents, which is what the selector must score low for the
abstention threshold to read its best score as "the corpus holds evidence".

Labels without any evidence give no examples: :func:`selector_examples` says so (``reason``)
and the answer step keeps its current scorer. :func:`fit_selector` is the one training path:
the ``sentence_selector`` asset and ``domret tune selector`` both call it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import chain, zip_longest
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..data.documents import Document
from ..data.labels import LabeledQueries
from ..training.reranker import DevSample, RerankerSettings, RerankExample


@dataclass
class SelectorExamples:
    """Training rows and dev samples for the selector, or the reason there are none."""

    train: list[RerankExample] = field(default_factory=list)
    dev: list[DevSample] = field(default_factory=list)
    reason: str = ""


def _sentences(doc: Document) -> list[str]:
    return [doc.sentence_text(i) for i in range(len(doc.sentences))] if doc.sentences else [doc.text]


def selector_examples(labels: LabeledQueries, documents: dict[str, Document], max_negatives: int = 8,
                      mined_sentences: dict[str, list[str]] | None = None,
                      unanswerable: bool = False) -> SelectorExamples:
    """Per train query with evidence: its evidence sentences as positives, up to
    ``max_negatives`` other sentences as negatives: those of its relevant documents, interleaved
    with ``mined_sentences[query id]`` (sentences of its mined negative passages) when given, in
    document order (deterministic). Per dev query with evidence: every sentence of its relevant
    documents as candidates, the evidence ones relevant.

    With ``unanswerable``, each train query whose relevant documents hold no evidence (an
    abstention case) adds a row without positives: the sentences of those documents, on topic yet
    no support, as negatives. Only a pointwise loss (``bce``) can learn from such a row; it is what
    teaches the selector an absolute score, so that its best score can decide abstention."""
    if not labels.evidence:
        return SelectorExamples(reason="the labels carry no sentence evidence: the answer step keeps its scorer")
    gold: dict[str, set[tuple[str, int]]] = {}
    for item in labels.evidence:
        gold.setdefault(item.query_id, set()).update((item.doc_id, s) for s in item.sentences)
    out = SelectorExamples()
    for qid, spans in sorted(gold.items()):
        split = labels.splits.get(qid)
        if split not in ("train", "dev"):
            continue  # the frozen test split never trains or tunes anything
        relevant_docs = sorted({d for d, r in labels.qrels.get(qid, {}).items() if r > 0} | {d for d, _ in spans})
        positives, negatives = [], []
        for doc_id in relevant_docs:
            if doc_id not in documents:
                continue
            for index, text in enumerate(_sentences(documents[doc_id])):
                (positives if (doc_id, index) in spans else negatives).append(text)
        if not positives:
            continue
        query = labels.queries[qid]
        mined = [t for t in (mined_sentences or {}).get(qid, []) if t not in positives]
        if mined and split == "train":
            # interleaved: the trainer reads the first num_negatives, so both kinds are seen
            negatives = [t for t in chain.from_iterable(zip_longest(negatives, mined)) if t is not None]
        if split == "train" and negatives:
            out.train.append(RerankExample(query, positives, negatives[:max_negatives]))
        elif split == "dev":
            out.dev.append(DevSample(query, negatives + positives, positives))  # evidence listed last
    if unanswerable:
        for qid in labels.without_evidence("train"):
            negatives = [text for doc_id in sorted(d for d, r in labels.qrels.get(qid, {}).items() if r > 0)
                         if doc_id in documents for text in _sentences(documents[doc_id])]
            if negatives:
                out.train.append(RerankExample(labels.queries[qid], [], negatives[:max_negatives]))
    if not any(e.positives for e in out.train):
        out.train = []  # rows without positives alone teach nothing to rank
        out.reason = "no training query has sentence evidence and another sentence of its documents to contrast"
    return out


def mined_negative_sentences(mined: Sequence, chunks_by_id: dict, documents: dict[str, Document]) -> dict[str, list[str]]:
    """Query id -> the sentences of its mined negative passages (``MinedQuery`` rows of a
    hard_negatives artifact), in mining order: the second kind of selector negative."""
    from .extractive import chunk_sentences

    return {m.query_id: [text for n in m.negatives if n["chunk_id"] in chunks_by_id
                         for _, text in chunk_sentences(chunks_by_id[n["chunk_id"]], documents)]
            for m in mined}


def choose_sentence_threshold(scores: Sequence[float], is_evidence: Sequence[bool]) -> tuple[float, float]:
    """The score threshold that maximises F1 of "score >= threshold means evidence" over
    dev candidate sentences: ``(threshold, dev F1)``. Ties go to the lower threshold (cite
    more); with no evidence at all, ``(inf, 0.0)``: cite nothing."""
    values = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_evidence, dtype=bool)
    if not truth.any():
        return float("inf"), 0.0
    best_t, best_f1 = float("inf"), 0.0
    for t in np.unique(values):
        chosen = values >= t
        tp = float((chosen & truth).sum())
        f1 = 2 * tp / (chosen.sum() + truth.sum()) if tp else 0.0
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t, float(best_f1)


@dataclass
class SelectorFit:
    """A trained selector with what dev said about it."""

    model: object  # the CrossEncoder, LoRA still attached (save with save_adapter_and_merged)
    outcome: object  # the trainer's RerankerOutcome
    threshold: float  # per-sentence, chosen on dev F1
    dev_f1: float
    dev_sentences: int
    train_queries: int
    dev_queries: int


def fit_selector(examples: SelectorExamples, start_model: str, settings: RerankerSettings, work_dir: Path,
                 progress_sink: Callable[[str], None] | None = None) -> SelectorFit:
    """Train the selector from ``start_model`` (a bi-encoder or cross-encoder folder, or a
    packaged name) with the reranker trainer, keeping the best dev epoch, then choose its
    per-sentence threshold on the same dev sentences."""
    from ..retrieval.cross_encoder import score_pairs
    from ..training.reranker import train_reranker

    if not examples.train or not examples.dev:
        raise ValueError(examples.reason or "no dev query with sentence evidence: the selector's threshold cannot be chosen")
    started = time.perf_counter()
    outcome = train_reranker(start_model, examples.train, examples.dev, settings, work_dir, progress_sink=progress_sink,
                             progress_label="training the sentence selector")
    scores, truth = [], []
    for sample in examples.dev:
        scores.extend(map(float, score_pairs(outcome.model, sample.query, sample.candidates)))
        truth.extend(c in sample.relevant for c in sample.candidates)
    threshold, f1 = choose_sentence_threshold(scores, truth)
    if progress_sink:
        progress_sink(f"selector: dev sentence F1 {f1:.4f} at threshold {threshold:.4f} "
                      f"({time.perf_counter() - started:.0f} s)")
    return SelectorFit(outcome.model, outcome, threshold, f1, len(scores), len(examples.train), len(examples.dev))


def abstention_separation(model, labels: LabeledQueries, documents: dict[str, Document], split: str = "dev") -> dict:
    """How well the selector's best score tells answerable queries from abstention cases when
    retrieval is perfect: per ``split`` query, the best score over every sentence of its
    relevant documents; the ROC AUC of that score (answerable high) and the abstention accuracy
    of the best threshold on it (read on the same queries: an optimistic ceiling of what the
    served answer step, which reads retrieved passages instead, can reach). Empty without both
    kinds of query."""
    from ..retrieval.cross_encoder import score_pair_list
    from .extractive import calibrate_threshold

    answerable = {e.query_id for e in labels.evidence}
    pairs, owners = [], []
    for qid in labels.ids(split):
        for doc_id in sorted(d for d, r in labels.qrels.get(qid, {}).items() if r > 0 and d in documents):
            for text in _sentences(documents[doc_id]):
                pairs.append((labels.queries[qid], text))
                owners.append(qid)
    best: dict[str, float] = {}
    for qid, score in zip(owners, score_pair_list(model, pairs, 64)):
        best[qid] = max(best.get(qid, float("-inf")), float(score))
    yes = np.array([s for q, s in best.items() if q in answerable])
    no = np.array([s for q, s in best.items() if q not in answerable])
    if not len(yes) or not len(no):
        return {}
    # AUC as the share of (answerable, unanswerable) pairs ordered right, ties counting half
    auc = float(((yes[:, None] > no[None, :]).sum() + 0.5 * (yes[:, None] == no[None, :]).sum()) / (len(yes) * len(no)))
    threshold, accuracy = calibrate_threshold(yes, no)
    return {"queries": len(best), "unanswerable": int(len(no)), "auc": auc, "best_accuracy": accuracy,
            "threshold": threshold}
