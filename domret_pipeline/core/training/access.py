"""What training may read: the training principal's view of the labels, chunks and indexes.

A model trained on a restricted document can repeat it to anyone it serves, so training reads
as a principal too (``labeled_queries.training_principal``; public documents only by
default). The rule is applied in two places, each recorded:

1. ``labeled_queries`` drops the train and dev judgements and evidence on documents the
   principal may not read (a query left without a judgement leaves its split; the frozen test
   split is never touched: evaluation has its own principal), and records the principal and
   what it dropped in its manifest (``training_access``);
2. every step that trains or chooses on dev (hard negatives, the embedding checkpoint, the
   reranker, the sentence selector, the serving dev choice, the indexes' precision parity
   check) reads that principal back from the manifest and sees only the chunks it may read,
   through :func:`readable_chunks` and :func:`readable_index`, so no restricted passage can be
   a negative, a dev distractor or a reranker candidate.

When the principal may read everything the originals are returned untouched, so a corpus that
is all public trains exactly as before access control.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.chunking import Chunk
from ..data.labels import LabeledQueries
from ..retrieval.access import GroupTable, Principal

TRAINED_SPLITS = ("train", "dev")


def restrict_labels(labels: LabeledQueries, readable_docs: set[str]) -> dict[str, int | list[str]]:
    """Remove, in place, the train and dev judgements and evidence on documents outside
    ``readable_docs``, and the train/dev queries left without a judgement. Returns the counts
    and the dropped query ids (for the manifest and the metadata)."""
    judgements, dropped = 0, []
    for qid in [q for q, split in labels.splits.items() if split in TRAINED_SPLITS]:
        judged = labels.qrels.get(qid)
        if not judged:
            continue
        kept = {d: r for d, r in judged.items() if d in readable_docs}
        judgements += len(judged) - len(kept)
        if kept:
            labels.qrels[qid] = kept
            continue
        dropped.append(qid)
        for table in (labels.queries, labels.splits, labels.qrels, labels.slices):
            table.pop(qid, None)
    before, gone = len(labels.evidence), set(dropped)
    labels.evidence = [e for e in labels.evidence if e.query_id not in gone and (
        labels.splits.get(e.query_id) not in TRAINED_SPLITS or e.doc_id in readable_docs)]
    return {"judgements_dropped": judgements, "evidence_dropped": before - len(labels.evidence),
            "queries_dropped": len(dropped), "dropped_query_ids": sorted(dropped)}


def training_principal(labeled_queries: str | Path) -> Principal:
    """The principal a labeled_queries artifact was restricted for (public for artifacts
    written before access control, which read public corpora)."""
    from ..manifests import LabeledQueriesManifest, read_manifest

    return Principal.of(read_manifest(labeled_queries, LabeledQueriesManifest).training_access["principal"])


def readable_chunks(chunks: list[Chunk], principal: Principal) -> list[Chunk]:
    """The chunks ``principal`` may read, in order (the list itself when it may read all)."""
    mask = GroupTable([c.groups for c in chunks]).mask(principal)
    return chunks if mask is None else [c for c, ok in zip(chunks, mask) if ok]


def readable_index(index, principal: Principal, chunks: list[Chunk] | None = None):
    """The dense index cut to the positions ``principal`` may read (by its stored groups, and
    when ``chunks`` are given, to those chunks as well: an index from another run, say the
    champion's, is held to this run's groups), as an exact flat index in the same order; the
    index itself when nothing is cut. Training scans it whole (mining, dev distractors), so
    exactness costs nothing there."""
    import faiss

    from ..retrieval.dense_index import DenseIndex, stored_vectors

    mask = index.visible(principal)
    if chunks is not None:
        kept = {c.chunk_id for c in chunks}
        in_chunks = np.fromiter((c in kept for c in index.chunk_ids), dtype=bool, count=len(index.chunk_ids))
        mask = in_chunks if mask is None else mask & in_chunks
        mask = None if mask.all() else mask
    if mask is None:
        return index
    positions = np.flatnonzero(mask)
    vectors = stored_vectors(index.index, positions) if len(positions) else np.zeros((0, index.index.d), np.float32)
    flat = faiss.IndexFlatIP(index.index.d)
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return DenseIndex(flat, [index.chunk_ids[p] for p in positions], GroupTable([index.groups.groups(p) for p in positions]))
