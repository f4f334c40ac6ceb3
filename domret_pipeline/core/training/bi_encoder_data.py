"""From labels and the base index to mined negatives, training rows and a dev retrieval task.

The entry points the ``hard_negatives`` and ``embedding_checkpoint`` assets call, and the
tuning commands (``domret tune embedding``, ``domret gpu-tune prepare``) with them, so that a
trial mines and evaluates exactly as the graph does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.chunking import Chunk, passage_text
from ..data.labels import LabeledQueries
from .bi_encoder import DevSet
from .mining import MiningResult, MiningSettings, mine
from .positives import positive_chunks


@dataclass
class TrainSplit:
    """The train split's queries encoded by the mining retriever, with their positive chunks
    (README: "Positives are chunks") and the retriever's chunk vectors: what mining starts from."""

    query_ids: list[str]
    query_vectors: np.ndarray
    qrels: dict[str, dict[str, int]]
    positives: dict
    chunk_ids: list[str]
    chunk_vectors: np.ndarray
    chunk_to_doc: dict[str, str]

    def mine(self, settings: MiningSettings, bm25_hits=None, confirmed_negatives=None, cross_scorer=None) -> MiningResult:
        return mine(self.query_ids, self.query_vectors, self.chunk_ids, self.chunk_vectors, self.chunk_to_doc, self.qrels,
                    self.positives, settings, bm25_hits, confirmed_negatives, cross_scorer)


def train_split(labels: LabeledQueries, chunks: list[Chunk], index, encoder) -> TrainSplit:
    """Encode the train queries with ``encoder`` (the one that built ``index``) and pick their
    positives, scored against the index's own vectors."""
    qrels = labels.qrels_for("train")
    query_ids = sorted(qrels)
    if not query_ids:
        raise ValueError("the train split has no labeled query: nothing to mine negatives for")
    evidence = [e for e in labels.evidence if e.query_id in qrels]
    return encoded_split(query_ids, [labels.queries[q] for q in query_ids], qrels, chunks, index, encoder,
                         lambda score: positive_chunks(qrels, chunks, evidence, score))


def encoded_split(query_ids: list[str], texts: list[str], qrels: dict[str, dict[str, int]], chunks: list[Chunk],
                  index, encoder, choose_positives) -> TrainSplit:
    """Queries encoded by ``encoder`` (the one that built ``index``, at its precision) with the
    positives ``choose_positives(score)`` picks, where ``score(query_id, chunk_ids)`` reads the
    index's own vectors: the labeled split and the pseudo-queries' (core/training/pseudo_pairs.py)."""
    from ..retrieval.dense_index import all_vectors
    from ..retrieval.encoder import encode

    vectors = all_vectors(index)
    position = {c: i for i, c in enumerate(index.chunk_ids)}
    query_vectors = encode(encoder, texts)
    by_query = dict(zip(query_ids, query_vectors))
    positives = choose_positives(lambda q, ids: [float(vectors[position[c]] @ by_query[q]) for c in ids])
    return TrainSplit(query_ids, query_vectors, qrels, positives, list(index.chunk_ids), vectors,
                      {c.chunk_id: c.doc_id for c in chunks})


def dev_set_from_index(labels: LabeledQueries, chunks: list[Chunk], index, encoder, candidates_per_query: int,
                       random_chunks: int, *, with_title: bool) -> DevSet:
    """The dev task evaluated after every epoch (:func:`build_dev_set`), its distractors
    ranked by the base index and its encoder; passages rendered as that index rendered them
    (``with_title``)."""
    from ..retrieval.dense_index import all_vectors
    from ..retrieval.encoder import encode

    dev_ids = sorted(labels.qrels_for("dev"))
    dev_vectors = dict(zip(dev_ids, encode(encoder, [labels.queries[q] for q in dev_ids])))
    return build_dev_set(labels, "dev", chunks, all_vectors(index), dev_vectors, candidates_per_query, random_chunks,
                         with_title=with_title)


def full_dev_set(labels: LabeledQueries, chunks: list[Chunk], *, with_title: bool) -> DevSet:
    """The dev queries over every chunk given (pass those training may read), a chunk relevant
    when its document is: what the choice between training recipes reads
    (``core/training/recipes.py``), dearer than :func:`build_dev_set`'s subset and unbiased by it."""
    qrels = labels.qrels_for("dev")
    if not qrels:
        raise ValueError("the 'dev' split has no labeled query: cannot choose between recipes")
    by_doc: dict[str, list[str]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c.chunk_id)
    relevant = {q: {c for d, score in docs.items() if score > 0 for c in by_doc.get(d, [])} for q, docs in qrels.items()}
    return DevSet({q: labels.queries[q] for q in qrels}, {c.chunk_id: passage_text(c, with_title) for c in chunks},
                  {q: r for q, r in relevant.items() if r})


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
