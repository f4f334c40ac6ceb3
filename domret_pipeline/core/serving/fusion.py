"""The score arithmetic of the served pipeline's stages: reciprocal rank fusion of first-stage
rankings, and the reranked head's order (the reranker's logits, or a z-score fusion with the
first stage). Pure functions over rankings; :mod:`.search` applies them."""

from __future__ import annotations

import numpy as np


def rrf_fuse(rankings: list[list[tuple[str, float]]], rrf_k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked lists (best first); ties broken by chunk id."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def zscore(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    return (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)


def order_head(first_scores: np.ndarray, rerank_scores: np.ndarray, fusion_weight: float | None) -> np.ndarray:
    """Final scores of the reranked head: the reranker's logits, or the z-score fusion."""
    if fusion_weight is None:
        return np.asarray(rerank_scores, dtype=np.float64)
    return zscore(first_scores) + fusion_weight * zscore(rerank_scores)


def apply_rerank(first: list[tuple[str, float]], rerank_scores: dict[str, float], candidates: int,
                 fusion_weight: float | None) -> list[tuple[str, float]]:
    """Reorder the first ``candidates`` of a first-stage ranking with reranker scores (given
    for at least those chunks); the tail keeps its order, always below the head."""
    head, tail = first[:candidates], first[candidates:]
    if not head:
        return []
    final = order_head(np.array([s for _, s in head]), np.array([rerank_scores[c] for c, _ in head]), fusion_weight)
    ordered = sorted(zip([c for c, _ in head], final), key=lambda kv: (-kv[1], kv[0]))
    floor = min(f for _, f in ordered)
    # The tail gets strictly decreasing scores below the head, so any consumer that sorts by
    # score (pytrec_eval, document max-aggregation) keeps head-before-tail.
    return [(c, float(f)) for c, f in ordered] + [(c, floor - 1.0 - i) for i, (c, _) in enumerate(tail)]
