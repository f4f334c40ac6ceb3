"""Deriving a serving configuration's ranking from what the stages produced.

:meth:`.search.SearchPipeline.run_stages` runs the stages once for many queries (possibly
several first stages, query rewrites and reranker variants at once) into a
:class:`StageOutputs`; :func:`final_order` gives any one configuration's ranking from it. ``search``
orders its results with the same function, so every evaluation scores what is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..retrieval.access import Principal
from .fusion import apply_rerank, rrf_fuse

if TYPE_CHECKING:
    import numpy as np

    from .search import ServingConfig

_PRIMARY = {"dense": "dense", "hybrid": "rrf", "bm25": "bm25"}  # the score that orders each first stage


@dataclass
class Candidate:
    chunk_id: str
    scores: dict[str, float]  # dense, bm25, rrf, rerank, final: whichever stages ran


@dataclass
class StageOutputs:
    """What each stage produced for a batch of queries, aligned with ``queries``: the stage
    rankings (best first, ``depth`` deep; None for a stage that did not run) and the
    reranker's logits per variant for the heads it scored. :func:`final_ranking` derives any
    configuration's ranking from them."""

    queries: list[str]
    depth: int
    rrf_k: int
    dense: list[list[tuple[str, float]]] | None = None
    lexical: list[list[tuple[str, float]]] | None = None  # BM25
    hybrid: list[list[tuple[str, float]]] | None = None  # RRF of dense and BM25
    rerank: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # variant -> per query: chunk -> logit
    query_vectors: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage for the batch
    principal: Principal | None = None  # who the stages ran as (None: the pipeline's principal)
    # rewrite key (see ServingConfig.rewrite_key) -> first stage ("dense", "hybrid") -> rankings
    # of the rewritten queries; "none" is the fields above
    rewritten: dict[str, dict[str, list[list[tuple[str, float]]]]] = field(default_factory=dict)

    def first(self, first_stage: str, rewrite: str = "none") -> list[list[tuple[str, float]]]:
        if rewrite != "none":
            rankings = self.rewritten.get(rewrite, {}).get(first_stage)
            if rankings is None:
                raise ValueError(f"the {first_stage} first stage did not run with the rewrite {rewrite} for these queries")
            return rankings
        rankings = {"dense": self.dense, "hybrid": self.hybrid, "bm25": self.lexical}[first_stage]
        if rankings is None:
            raise ValueError(f"the {first_stage} first stage did not run for these queries")
        return rankings


def first_stage_ranking(stages: StageOutputs, position: int, config: ServingConfig, depth: int) -> list[tuple[str, float]]:
    """The configuration's first-stage ranking, ``depth`` deep. Stages run deeper (for a grid
    whose configurations differ in depth) are cut to the prefix the configuration would have
    retrieved, and hybrid is then fused from those prefixes."""
    if depth > stages.depth:
        raise ValueError(f"the stages ran {stages.depth} chunks deep, the configuration ranks {depth}")
    rewrite = config.rewrite_key()
    if config.first_stage == "hybrid" and (depth < stages.depth or config.rrf_k != stages.rrf_k):
        dense = stages.first("dense", rewrite)[position][:depth]
        return rrf_fuse([dense, stages.lexical[position][:depth]], config.rrf_k)[:depth]
    return stages.first(config.first_stage, rewrite)[position][:depth]


def final_order(stages: StageOutputs, position: int, config: ServingConfig,
                depth: int | None = None) -> list[tuple[str, float]]:
    """The ranking ``config`` gives the query at ``position`` as (chunk id, final score), best
    first, ``depth`` chunks deep (the configuration's own retrieval depth by default): what
    ``search`` serves (before its ``top_n`` cut) and what every evaluation scores."""
    first = first_stage_ranking(stages, position, config, depth or config.retrieval_depth())
    if not config.rerank:
        return first
    if config.variant() not in stages.rerank:
        raise ValueError(f"the reranker variant {config.variant()} did not run for these queries")
    logits = stages.rerank[config.variant()][position]
    missing = [c for c, _ in first[: config.candidates] if c not in logits]
    if missing:  # a head deeper than the reranked one would silently mix in unscored chunks
        raise ValueError(f"{len(missing)} chunks of the top {config.candidates} were not scored by the reranker")
    return apply_rerank(first, logits, config.candidates, config.fusion_weight)


def final_ranking(stages: StageOutputs, position: int, config: ServingConfig,
                  depth: int | None = None) -> list[Candidate]:
    """:func:`final_order` with every score of the stages the configuration runs."""
    depth = depth or config.retrieval_depth()
    first = dict(first_stage_ranking(stages, position, config, depth))
    primary = _PRIMARY[config.first_stage]
    extra = []
    if config.first_stage == "hybrid":
        extra = [("dense", dict(stages.first("dense", config.rewrite_key())[position])),
                 ("bm25", dict(stages.lexical[position]))]
    logits = stages.rerank[config.variant()][position] if config.rerank else {}
    out = []
    for rank, (chunk_id, final) in enumerate(final_order(stages, position, config, depth)):
        scores = {primary: first[chunk_id]}
        scores.update({name: values[chunk_id] for name, values in extra if chunk_id in values})
        if config.rerank and rank < config.candidates:  # apply_rerank keeps the reranked head first
            scores["rerank"] = logits[chunk_id]
        scores["final"] = final
        out.append(Candidate(chunk_id, scores))
    return out
