"""Retrieval evaluation on one frozen split: BM25 and one or more dense retrievers, side by
side, with paired significance tests, slices and embedding-space diagnostics. Each ranks
through :class:`.serving.search.SearchPipeline` (its ``bm25`` or ``dense`` first stage), the
code that serves."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.chunking import Chunk
from ..data.labels import LabeledQueries
from ..retrieval.bm25 import BM25Index
from ..retrieval.dense_index import DenseIndex, all_vectors
from ..retrieval.document_ranking import top_documents
from ..serving.search import SearchPipeline, ServingConfig
from .metrics import evaluate_run, mean_metrics
from .significance import paired_test
from ..weak.pseudo_evaluation import PSEUDO_SLICE

HARD_NEGATIVE_SLICE = "hard_negative"


@dataclass
class DenseSystem:
    name: str
    index: DenseIndex
    encoder: object  # SentenceTransformer
    encoder_name: str
    index_type: str


def _first_relevant_rank(docs: dict[str, float], relevant: dict[str, int]) -> int | None:
    for rank, doc in enumerate(docs, start=1):  # docs are ordered best first
        if relevant.get(doc, 0) > 0:
            return rank
    return None


def evaluate_retrieval(
    labels: LabeledQueries,
    split: str,
    chunks: list[Chunk],
    dense: list[DenseSystem],
    bm25: BM25Index,
    k_values: tuple[int, ...] = (10, 100),
    latency_queries: int = 100,
    batch_size: int = 64,
    significance_metrics: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100"),
    principal=None,
) -> tuple[dict, dict[str, dict[str, dict[str, float]]], dict]:
    """Returns (report, per-query metrics per system, raw arrays for plots).

    The first dense system is the baseline: significance tests compare every other dense
    system with it, and the *hard-negative slice* is the queries where it ranked a
    non-relevant chunk's document above every relevant document (its first hit is not at rank 1).
    Every system ranks as ``principal`` (None: public only); the embedding diagnostics read the
    vectors themselves, and are aggregates."""
    qrels = labels.qrels_for(split)
    qids = sorted(qrels)
    if not qids:
        raise ValueError(f"the {split!r} split has no labeled query to evaluate")
    texts = [labels.queries[q] for q in qids]
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    k_docs, n_chunks = max(k_values), len(chunks)

    # BM25 and each dense retriever rank through the served pipeline's code (first stage only);
    # query vectors are encoded once: widening and the diagnostics reuse them.
    latency_depth = min(k_docs * 2, n_chunks)
    pipelines = {"bm25": SearchPipeline(chunks, None, None, ServingConfig("bm25", depth=latency_depth), bm25,
                                        batch_size=batch_size, principal=principal)}
    query_vectors = {}
    for system in dense:
        pipelines[system.name] = SearchPipeline(chunks, system.index, system.encoder,
                                                ServingConfig("dense", depth=latency_depth), batch_size=batch_size,
                                                principal=principal)
        query_vectors[system.name] = pipelines[system.name].encode_queries(texts)
    runs = {name: top_documents(lambda k, p=pipeline, v=query_vectors.get(name): p.rankings(texts, k, v),
                                chunk_to_doc, n_chunks, k_docs)
            for name, pipeline in pipelines.items()}

    per_query = {name: evaluate_run(qrels, dict(zip(qids, docs)), k_values) for name, docs in runs.items()}
    systems = {name: {"metrics": mean_metrics(pq), "n_queries": len(pq)} for name, pq in per_query.items()}

    baseline = dense[0].name
    significance = {}
    for system in dense[1:]:
        significance[system.name] = {
            m: paired_test({q: per_query[baseline][q][m] for q in qids}, {q: per_query[system.name][q][m] for q in qids})
            for m in significance_metrics
        }

    slices: dict[str, list[str]] = {}
    base_docs = dict(zip(qids, runs[baseline]))
    hard = [q for q in qids if (_first_relevant_rank(base_docs[q], qrels[q]) or 10**9) > 1]
    slices[HARD_NEGATIVE_SLICE] = hard
    for q in qids:
        if q in labels.slices:
            slices.setdefault(f"slice:{labels.slices[q]}", []).append(q)
    slice_table = {
        name: {"n_queries": len(ids), "systems": {s: mean_metrics({q: per_query[s][q] for q in ids}) for s in runs}}
        for name, ids in slices.items() if ids
    }

    diagnostics, arrays = _diagnostics(qids, qrels, chunks, dense, query_vectors, chunk_to_doc)

    latency = {}
    if latency_queries > 0:  # one query at a time, as a user would send them
        from ..serving.latency import time_pipeline

        latency = {name: time_pipeline(pipelines[name], texts[:latency_queries])["total"]
                   for name in [s.name for s in dense] + ["bm25"]}

    report = {
        "info": {
            "split": split, "n_queries": len(qids), "n_documents": len(set(chunk_to_doc.values())), "n_chunks": n_chunks,
            "encoders": {s.name: s.encoder_name for s in dense}, "index_types": {s.name: s.index_type for s in dense},
            "baseline": baseline, "k_values": list(k_values),
            "n_without_evidence": len([q for q in labels.without_evidence(split) if q in qrels]),
            "n_pseudo_queries": sum(1 for q in qids if labels.slices.get(q) == PSEUDO_SLICE),
        },
        "systems": systems,
        "significance": significance,
        "slices": slice_table,
        "diagnostics": diagnostics,
        "latency": latency,
    }
    return report, per_query, arrays


def _diagnostics(qids, qrels, chunks, dense, query_vectors, chunk_to_doc) -> tuple[dict, dict]:
    """Per dense system: similarity of each query to its best relevant chunk vs to the
    baseline's best non-relevant chunk (a fixed hard negative), corpus uniformity, and the
    norms of pooled embeddings of a fixed chunk sample."""
    from ..data.chunking import passage_text
    from .diagnostics import pooled_norms, summary, uniformity

    rng = np.random.default_rng(0)
    sample = rng.choice(len(chunks), size=min(300, len(chunks)), replace=False)
    sample_texts = [passage_text(chunks[i]) for i in sorted(sample)]
    base = dense[0]
    base_vectors = all_vectors(base.index)
    base_q = query_vectors[base.name]
    hard_negative: dict[str, int] = {}
    for row, q in enumerate(qids):
        order = np.argsort(-(base_vectors @ base_q[row]))
        found = next((int(i) for i in order if qrels[q].get(chunk_to_doc[base.index.chunk_ids[i]], 0) <= 0), None)
        if found is not None:  # None only when every chunk is relevant to the query
            hard_negative[q] = found

    chunks_of_doc: dict[str, list[str]] = {}
    for chunk in chunks:
        chunks_of_doc.setdefault(chunk.doc_id, []).append(chunk.chunk_id)
    report, arrays = {}, {}
    for system in dense:
        vectors = base_vectors if system is base else all_vectors(system.index)
        position = {c: i for i, c in enumerate(system.index.chunk_ids)}
        qv = query_vectors[system.name]
        pos, neg = [], []
        for row, q in enumerate(qids):
            scores = vectors @ qv[row]
            relevant = [position[c] for d, rel in qrels[q].items() if rel > 0 for c in chunks_of_doc.get(d, [])]
            if relevant:
                pos.append(float(scores[relevant].max()))
            if q in hard_negative:
                neg.append(float(scores[position[base.index.chunk_ids[hard_negative[q]]]]))
        norms = pooled_norms(system.encoder, sample_texts)
        arrays[system.name] = {"positive": np.array(pos), "negative": np.array(neg), "norms": norms}
        report[system.name] = {
            "uniformity": uniformity(vectors, 2000),
            "query_positive": summary(np.array(pos)),
            "query_hard_negative": summary(np.array(neg)),
            "positive_minus_negative": float(np.mean(pos) - np.mean(neg)) if pos else float("nan"),
            "pooled_norm": summary(norms),
        }
    return report, arrays
