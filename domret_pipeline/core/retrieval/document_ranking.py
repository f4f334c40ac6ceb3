"""From chunk hits to document rankings, the unit in which BEIR-style labels are given."""

from __future__ import annotations

from typing import Callable


def aggregate_max(hits: list[tuple[str, float]], chunk_to_doc: dict[str, str]) -> dict[str, float]:
    """A document scores as its best chunk (max pooling)."""
    docs: dict[str, float] = {}
    for chunk_id, score in hits:
        doc = chunk_to_doc[chunk_id]
        if doc not in docs or score > docs[doc]:
            docs[doc] = score
    return docs


def top_documents(
    search: Callable[[int], list[list[tuple[str, float]]]],
    chunk_to_doc: dict[str, str],
    n_chunks: int,
    k_docs: int,
) -> list[dict[str, float]]:
    """Search chunks, widening until each query has ``k_docs`` distinct documents (or all chunks
    were seen), then keep the best ``k_docs`` documents per query."""
    k = min(n_chunks, max(k_docs * 2, k_docs + 10))
    while True:
        per_query = search(k)
        docs = [aggregate_max(hits, chunk_to_doc) for hits in per_query]
        # A query with fewer than k hits got every match its retriever has: widening adds nothing.
        short = any(len(d) < k_docs and len(h) >= k for d, h in zip(docs, per_query))
        if not short or k >= n_chunks:
            break
        k = min(n_chunks, k * 2)
    return [dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))[:k_docs]) for d in docs]
