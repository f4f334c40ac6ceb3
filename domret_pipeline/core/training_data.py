"""From mined negatives and labels to training rows and a dev retrieval task."""

from __future__ import annotations

import numpy as np

from .chunking import Chunk, passage_text
from .labels import LabeledQueries
from .mining import MiningResult
from .training import DevSet


def build_training_rows(
    mined: MiningResult, queries: dict[str, str], chunks_by_id: dict[str, Chunk], with_title: bool
) -> list[tuple[str, str, list[str]]]:
    """One row per (query, positive chunk) with the query's negatives; queries without any
    negative are left out (they are counted in the mining metadata). ``with_title``: render
    passages as the index the model will serve does (the base index's manifest says how)."""
    rows = []
    for item in mined.queries:
        negatives = [passage_text(chunks_by_id[n["chunk_id"]], with_title) for n in item.negatives]
        if not negatives:
            continue
        for chunk_id, _, _ in item.positives:
            rows.append((queries[item.query_id], passage_text(chunks_by_id[chunk_id], with_title), negatives))
    return rows


def build_dev_set(
    labels: LabeledQueries,
    split: str,
    chunks: list[Chunk],
    chunk_vectors: np.ndarray,
    query_vectors: dict[str, np.ndarray],
    candidates_per_query: int,
    random_chunks: int,
    seed: int = 0,
    *,
    with_title: bool,
) -> DevSet:
    """A dev retrieval task small enough to evaluate after every epoch on CPU.

    Corpus: every chunk of the relevant documents of the dev queries, the base retriever's top
    ``candidates_per_query`` chunks for each (the hard distractors), and ``random_chunks``
    chunks drawn with a fixed seed. A chunk is relevant when its document is. Figures on it
    rank systems against each other; they are not comparable with full-corpus figures."""
    qrels = labels.qrels_for(split)
    if not qrels:
        raise ValueError(f"the {split!r} split has no labeled query: cannot evaluate during training")
    relevant_docs = {d for docs in qrels.values() for d in docs}
    keep = {i for i, c in enumerate(chunks) if c.doc_id in relevant_docs}
    for qid in qrels:
        scores = chunk_vectors @ query_vectors[qid]
        keep.update(np.argsort(-scores)[:candidates_per_query].tolist())
    rng = np.random.default_rng(seed)
    keep.update(rng.choice(len(chunks), size=min(random_chunks, len(chunks)), replace=False).tolist())
    corpus = {chunks[i].chunk_id: passage_text(chunks[i], with_title) for i in sorted(keep)}
    relevant = {
        qid: {c.chunk_id for c in chunks if c.doc_id in docs and c.chunk_id in corpus and docs[c.doc_id] > 0}
        for qid, docs in qrels.items()
    }
    return DevSet({q: labels.queries[q] for q in qrels}, corpus, {q: r for q, r in relevant.items() if r})
