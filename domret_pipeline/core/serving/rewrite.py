"""Query rewriting before the first stage, without a model: pseudo-relevance feedback.

``prf`` is dense Rocchio. The query's vector moves toward the mean of the vectors of its top
``k`` dense hits, then is renormalised (the index scores by inner product of unit vectors):

    q' = (q + weight * mean(top-k chunk vectors)) / ||q + weight * mean(top-k chunk vectors)||

Rocchio's alpha is fixed at 1: after the renormalisation only the ratio weight/alpha changes
the ranking. The rewritten vector then replaces the query's in every first stage that reads
it: the dense search, and the dense half of hybrid (BM25 reads the query's words, which PRF
does not change).

The feedback always comes from the plain dense ranking, whichever first stage serves: the
rewrite is of the query, made once before the first stage, and a ranking's top ``k`` is the
same whatever depth it was retrieved to, so a grid of configurations that differ in depth or
in the fusion constant shares one rewritten vector per query (and its figures stay those of
``search``).

The chunk vectors are those the index stores (:func:`..retrieval.dense_index.stored_vectors`):
no chunk is re-encoded. Only chunks the principal may read feed the feedback: the dense stage
already returns only those, and the caller passes the access check again here.

An LLM rewriter through the OpenAI-compatible endpoint is not built yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

REWRITERS = ("none", "prf")


@dataclass(frozen=True)
class Feedback:
    """The PRF rewriter's parameters: ``k`` feedback chunks, moved toward with ``weight``."""

    k: int
    weight: float

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"prf needs at least one feedback chunk, not k={self.k}")
        if not self.weight > 0:
            raise ValueError(f"the prf weight must be above 0 (0 rewrites nothing), not {self.weight}")

    def key(self) -> str:
        return f"prf/{self.k}/{self.weight:g}"

    def label(self) -> str:
        return f"prf@{self.k} (b={self.weight:g})"


def feedback_grid(rewriters: list[str], depths: list[int], weights: list[float]) -> list[Feedback]:
    """The rewrite settings a dev choice tries beside no rewrite (``serving_config``'s
    ``rewriters``, ``prf_depths`` and ``prf_weights``)."""
    unknown = set(rewriters) - set(REWRITERS)
    if unknown:
        raise ValueError(f"unknown rewriters {sorted(unknown)} (known: {', '.join(REWRITERS)})")
    if "prf" not in rewriters:
        return []
    return [Feedback(k, float(w)) for k in sorted(set(depths)) for w in sorted(set(weights))]


def rocchio(query_vectors: np.ndarray, feedback: list[np.ndarray], weight: float) -> np.ndarray:
    """Each query vector moved toward the mean of its feedback vectors (rows), renormalised; a
    query without feedback (nothing readable came back) keeps its vector."""
    out = np.array(query_vectors, dtype=np.float32, copy=True)
    for row, vectors in enumerate(feedback):
        if len(vectors) == 0:
            continue
        moved = out[row].astype(np.float64) + weight * np.asarray(vectors, dtype=np.float64).mean(axis=0)
        norm = np.linalg.norm(moved)
        if norm > 1e-12:
            out[row] = (moved / norm).astype(np.float32)
    return out


def prf_query_vectors(index, query_vectors: np.ndarray, rankings: list[list[tuple[str, float]]], feedback: Feedback,
                      readable: Callable[[str], bool] | None = None) -> np.ndarray:
    """The rewritten query vectors: each moved toward its top ``feedback.k`` chunks of
    ``rankings`` (best first) that ``readable`` allows (None: all), read from ``index`` (a
    :class:`..retrieval.dense_index.DenseIndex`)."""
    if not hasattr(index, "vectors"):
        raise ValueError(f"prf reads the feedback chunks' vectors from the index; {type(index).__name__} stores none")
    heads = [[c for c, _ in ranking if readable is None or readable(c)][: feedback.k] for ranking in rankings]
    wanted = list(dict.fromkeys(c for head in heads for c in head))
    stored = dict(zip(wanted, index.vectors(wanted))) if wanted else {}
    return rocchio(query_vectors, [np.array([stored[c] for c in head]) for head in heads], feedback.weight)
