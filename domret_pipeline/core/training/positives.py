"""Which chunks are the positives of a labeled (query, document) pair.

Rule, in order:
1. Evidence: when the labels give evidence sentences for the pair, the positives are the
   chunks whose sentence range holds one of those sentences.
2. Otherwise, a document that fits in one chunk is its own positive.
3. Otherwise, the positive is the document's chunk that the current retriever scores highest
   for the query (the best-matching chunk).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

from ..data.chunking import Chunk
from ..data.documents import Evidence


def positive_chunks(
    qrels: dict[str, dict[str, int]],
    chunks: list[Chunk],
    evidence: list[Evidence],
    score: Callable[[str, list[str]], list[float]],
) -> dict[str, list[tuple[str, str]]]:
    """Map each query to its ``(chunk_id, rule)`` positives; ``score(query_id, chunk_ids)``
    scores chunks for a query (only called for multi-chunk documents without evidence)."""
    by_doc: dict[str, list[Chunk]] = defaultdict(list)
    for chunk in chunks:
        by_doc[chunk.doc_id].append(chunk)
    evidence_of: dict[tuple[str, str], set[int]] = defaultdict(set)
    for item in evidence:
        evidence_of[(item.query_id, item.doc_id)].update(item.sentences)

    result: dict[str, list[tuple[str, str]]] = {}
    for qid, docs in qrels.items():
        chosen: list[tuple[str, str]] = []
        for doc_id, relevance in sorted(docs.items()):
            if relevance <= 0 or doc_id not in by_doc:
                continue
            candidates = by_doc[doc_id]
            sentences = evidence_of.get((qid, doc_id))
            if sentences:
                hits = [c for c in candidates if any(c.first_sentence <= s <= c.last_sentence for s in sentences)]
                if hits:
                    chosen += [(c.chunk_id, "evidence") for c in hits]
                    continue
            if len(candidates) == 1:
                chosen.append((candidates[0].chunk_id, "single_chunk"))
                continue
            scores = score(qid, [c.chunk_id for c in candidates])
            best = max(range(len(candidates)), key=lambda i: scores[i])
            chosen.append((candidates[best].chunk_id, "best_match"))
        if chosen:
            result[qid] = chosen
    return result
