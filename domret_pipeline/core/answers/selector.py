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
  fixed count.

Labels without any evidence give no examples: :func:`selector_examples` says so (``reason``)
and the answer step keeps its current scorer.

Not yet in the graph (issue 14, item 1): this module and its tests exist; the asset that
trains it and the answer step that uses it (a scorer option chosen on dev) are next;
``domret tune selector`` trains it on a finished run's labels and prints its dev figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.documents import Document
from ..data.labels import LabeledQueries
from ..training.reranker import DevSample, RerankExample


@dataclass
class SelectorExamples:
    """Training rows and dev samples for the selector, or the reason there are none."""

    train: list[RerankExample] = field(default_factory=list)
    dev: list[DevSample] = field(default_factory=list)
    reason: str = ""


def _sentences(doc: Document) -> list[str]:
    return [doc.sentence_text(i) for i in range(len(doc.sentences))] if doc.sentences else [doc.text]


def selector_examples(labels: LabeledQueries, documents: dict[str, Document], max_negatives: int = 8) -> SelectorExamples:
    """Per train query with evidence: its evidence sentences as positives, up to
    ``max_negatives`` other sentences of its relevant documents as negatives (in document
    order: deterministic). Per dev query with evidence: every sentence of its relevant
    documents as candidates, the evidence ones relevant."""
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
        if split == "train" and negatives:
            out.train.append(RerankExample(query, positives, negatives[:max_negatives]))
        elif split == "dev":
            out.dev.append(DevSample(query, negatives + positives, positives))  # evidence listed last
    if not out.train:
        out.reason = "no training query has sentence evidence and another sentence of its documents to contrast"
    return out


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
    return best_t, best_f1
