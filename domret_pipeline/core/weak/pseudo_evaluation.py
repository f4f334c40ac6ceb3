"""Held-out pseudo-queries as dev and test queries: the zero-label mode (issue 17, item 3).

With no judged query to train on, the graph still has to choose settings on dev and report
on a frozen split. Both come from the corpus: a seeded share of documents is held out, and
one pseudo-query of each (by default an inverse-cloze sentence, cut as
:mod:`.pseudo_queries` cuts them) becomes a dev or a test query whose one relevant document
is its own. They carry the slice :data:`PSEUDO_SLICE`, so the report shows them apart from
any judged query, and they are relevant documents of dev/test queries, so the
``pseudo_queries`` asset gives no training pair from them (its eval-document rule): the
held-out documents never train.

What such figures are worth is said wherever they appear (:data:`NOT_USER_RELEVANCE`): the
index holds each query's sentence verbatim, inside its own document, so they reward lexical
matching, overstate every system and rank systems only roughly; they are not user relevance.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from ..data.chunking import Chunk
from ..data.documents import Document
from ..data.labels import LabeledQueries
from ..data.splits import split_of
from .pseudo_queries import PseudoQuerySettings, generate_pseudo_queries

PSEUDO_SLICE = "pseudo_query"
PSEUDO_PREFIX = "pseudo:"
MODES = ("auto", "on", "off")
NOT_USER_RELEVANCE = (
    "Queries of the slice `pseudo_query` are held-out pseudo-queries (sentences cut from held-out documents), "
    "not user questions: the index holds each one verbatim inside its only relevant document, so their figures "
    "reward lexical matching, overstate every system and rank systems only roughly. They are not user relevance."
)


@dataclass
class PseudoEvaluation:
    """What :func:`add_pseudo_evaluation` did, for the metadata."""

    used: bool
    reason: str
    queries: dict[str, int]  # split -> pseudo-queries added
    held_out_documents: int  # documents drawn for dev or test (some may give no query)

    def as_dict(self) -> dict:
        return {"used": self.used, "reason": self.reason, "queries": self.queries,
                "held_out_documents": self.held_out_documents}


def wanted(mode: str, labels: LabeledQueries) -> tuple[bool, str]:
    """Whether held-out pseudo-queries join dev and test, and why. ``auto``: exactly when no
    train-split query has a judgement (nothing else could train or choose)."""
    if mode not in MODES:
        raise ValueError(f"pseudo_evaluation {mode!r}: one of {', '.join(MODES)}")
    judged_train = len(labels.qrels_for("train"))
    if mode == "off":
        return False, "off"
    if mode == "on":
        return True, "asked for (pseudo_evaluation: on)"
    if judged_train:
        return False, f"auto: {judged_train} judged train queries"
    return True, "auto: no judged train query (zero-label mode)"


def held_out_split(doc_id: str, fraction: float, salt: str) -> str | None:
    """dev, test or None for a document: the stable hash query splits are drawn by
    (:func:`..data.splits.split_of`), half of ``fraction`` to each split."""
    if not 0 < fraction < 1:
        raise ValueError(f"pseudo_eval_fraction must be in (0, 1), got {fraction}")
    split = split_of(doc_id, fraction / 2, fraction / 2, salt)
    return None if split == "train" else split


def add_pseudo_evaluation(labels: LabeledQueries, documents: Iterable[Document], chunks: Iterable[Chunk],
                          settings: PseudoQuerySettings, fraction: float, max_queries: int, salt: str) -> PseudoEvaluation:
    """Add, in place, one pseudo-query per held-out document to the dev and test splits (at
    most ``max_queries`` each, a seeded sample). Documents relevant to a judged train query
    are never held out: a model trained on them would be judged on them. Pass only the chunks
    training may read."""
    train_documents = {d for q in labels.ids("train") for d, s in labels.qrels.get(q, {}).items() if s > 0}
    documents = list(documents)
    split_of = {d.doc_id: held_out_split(d.doc_id, fraction, salt) for d in documents if d.doc_id not in train_documents}
    held = [d for d in documents if split_of.get(d.doc_id)]
    held_ids = {d.doc_id for d in held}
    result = generate_pseudo_queries(held, [c for c in chunks if c.doc_id in held_ids], settings, held_out=set())
    first: dict[str, object] = {}
    for pair in result.pairs:  # corpus order: the first surviving pair of each document
        first.setdefault(pair.doc_id, pair)
    added: dict[str, int] = {}
    rng = random.Random(f"{settings.seed}:pseudo-evaluation")
    for split in ("dev", "test"):
        pairs = [first[d.doc_id] for d in held if d.doc_id in first and split_of[d.doc_id] == split]
        if len(pairs) > max_queries:
            keep = set(rng.sample(range(len(pairs)), max_queries))
            pairs = [p for i, p in enumerate(pairs) if i in keep]
        for pair in pairs:
            qid = f"{PSEUDO_PREFIX}{pair.pair_id}"
            if qid in labels.queries:
                raise ValueError(f"query id {qid!r} is already in the labels: rename it (the prefix "
                                 f"{PSEUDO_PREFIX!r} is kept for pseudo-queries)")
            labels.queries[qid] = pair.query
            labels.splits[qid] = split
            labels.qrels[qid] = {pair.doc_id: 1}
            labels.slices[qid] = PSEUDO_SLICE
        added[split] = len(pairs)
    return PseudoEvaluation(True, "", added, len(held))


def is_pseudo(query_id: str) -> bool:
    return query_id.startswith(PSEUDO_PREFIX)
