"""Retrieval evaluation of the dense retriever and BM25 on one frozen split."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .bm25 import BM25Index
from .chunking import Chunk
from .dense_index import DenseIndex
from .encoder import encode
from .labels import LabeledQueries
from .metrics import evaluate_run, latency_summary, mean_metrics
from .retrieval import top_documents


@dataclass
class Retrievers:
    dense: DenseIndex
    encoder: object  # SentenceTransformer
    bm25: BM25Index
    encoder_name: str
    index_type: str


def evaluate_retrieval(
    labels: LabeledQueries,
    split: str,
    chunks: list[Chunk],
    retrievers: Retrievers,
    k_values: tuple[int, ...] = (10, 100),
    latency_queries: int = 100,
    batch_size: int = 64,
) -> tuple[dict, dict[str, dict[str, dict[str, float]]]]:
    """Returns the report (a JSON-able dict) and per-query metrics per system."""
    qrels = labels.qrels_for(split)
    qids = sorted(qrels)
    if not qids:
        raise ValueError(f"the {split!r} split has no labeled query to evaluate")
    texts = [labels.queries[q] for q in qids]
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    k_docs = max(k_values)
    n_chunks = len(chunks)

    query_vectors = encode(retrievers.encoder, texts, batch_size)
    dense_docs = top_documents(lambda k: retrievers.dense.search(query_vectors, k), chunk_to_doc, n_chunks, k_docs)
    bm25_docs = top_documents(lambda k: retrievers.bm25.search(texts, k), chunk_to_doc, n_chunks, k_docs)

    per_query = {}
    systems = {}
    for name, docs in (("bm25", bm25_docs), ("dense", dense_docs)):
        run = dict(zip(qids, docs))
        pq = evaluate_run(qrels, run, k_values)
        per_query[name] = pq
        systems[name] = {"metrics": mean_metrics(pq), "n_queries": len(pq)}

    latency = {}
    if latency_queries > 0:
        timed = texts[:latency_queries]
        dense_times, bm25_times = [], []
        for text in timed:  # one query at a time, as a user would send them
            started = time.perf_counter()
            vector = encode(retrievers.encoder, [text], 1)
            retrievers.dense.search(vector, min(k_docs * 2, n_chunks))
            dense_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            retrievers.bm25.search([text], min(k_docs * 2, n_chunks))
            bm25_times.append(time.perf_counter() - started)
        latency = {
            "dense": {**latency_summary(dense_times), "n": len(timed)},
            "bm25": {**latency_summary(bm25_times), "n": len(timed)},
        }

    report = {
        "info": {
            "split": split,
            "n_queries": len(qids),
            "n_documents": len(set(chunk_to_doc.values())),
            "n_chunks": n_chunks,
            "encoder": retrievers.encoder_name,
            "index_type": retrievers.index_type,
            "k_values": list(k_values),
            "n_without_evidence": len([q for q in labels.without_evidence(split) if q in qrels]),
        },
        "systems": systems,
        "latency": latency,
    }
    return report, per_query
