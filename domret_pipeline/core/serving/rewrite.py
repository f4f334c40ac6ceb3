"""Query rewriting before the first stage: pseudo-relevance feedback (no model), and an
LLM's query2doc expansion through an OpenAI-compatible endpoint.

Both rewrites replace the query's dense vector (BM25 keeps reading the words as written), are
tried on dev like the other stages (:mod:`.dev_choice`) and are timed as the ``rewrite`` stage.
A rewrite is a :class:`Feedback` (``prf``) or an :class:`Expansion` (``llm``, see
:mod:`.llm_rewrite`); each has a ``key`` (its rankings in the stage outputs), a ``label`` and a
``cost`` (ties on dev go to the cheaper: no rewrite, then prf with fewer feedback chunks and a
smaller move, then the LLM, which costs a model call per query).

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

REWRITERS = ("none", "prf", "llm")


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

    def cost(self) -> tuple:
        return (1, self.k, self.weight)


@dataclass(frozen=True)
class Expansion:
    """The LLM rewriter's identity: the endpoint's ``model`` writes a passage for the query (the
    endpoint itself is the pipeline's expander, :class:`.llm_rewrite.OpenAICompatibleExpander`)."""

    model: str

    def __post_init__(self):
        if not self.model:
            raise ValueError("the llm rewrite needs the endpoint's model name")

    def key(self) -> str:
        return f"llm/{self.model}"

    def label(self) -> str:
        return f"llm ({self.model})"

    def cost(self) -> tuple:
        return (2, 0, 0.0)


Rewrite = Feedback | Expansion


def feedback_grid(rewriters: list[str], depths: list[int], weights: list[float],
                  llm_model: str | None = None) -> list[Rewrite]:
    """The rewrite settings a dev choice tries beside no rewrite (``serving_config``'s
    ``rewriters``, ``prf_depths`` and ``prf_weights``; ``llm_model``: the endpoint's model,
    which ``llm`` needs)."""
    unknown = set(rewriters) - set(REWRITERS)
    if unknown:
        raise ValueError(f"unknown rewriters {sorted(unknown)} (known: {', '.join(REWRITERS)})")
    grid: list[Rewrite] = []
    if "prf" in rewriters:
        grid += [Feedback(k, float(w)) for k in sorted(set(depths)) for w in sorted(set(weights))]
    if "llm" in rewriters:
        if not llm_model:
            raise ValueError("the llm rewriter needs an OpenAI-compatible endpoint: set generator_base_url and "
                             "generator_model")
        grid.append(Expansion(llm_model))
    return grid


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
