"""Query latency as users meet it (one query at a time), and the reranking latency budget.

The budget rule: a reranking configuration whose measured p95 (whole query, one at a time, on
dev queries) exceeds ``budget_ms`` is ruled out before the dev choice, with the measured
figure as the reason. Fusion weights cost nothing measurable, so configurations that differ
only in the weight share one timing: what is timed is each (first stage, query rewrite,
candidates, reranker precision, token limit).
"""

from __future__ import annotations

import time
from typing import Callable

from ..evaluation.metrics import latency_summary
from .search import SearchPipeline, ServingConfig


def time_pipeline(pipeline: SearchPipeline, queries: list[str]) -> dict[str, dict[str, float]]:
    """One query at a time, as users send them: p50/p95/p99 per stage and of the total."""
    per_stage: dict[str, list[float]] = {}
    for query in queries:
        started = time.perf_counter()
        result = pipeline.search([query])[0]
        result.timings["total"] = time.perf_counter() - started
        for stage, seconds in result.timings.items():
            per_stage.setdefault(stage, []).append(seconds)
    summary = {stage: {**latency_summary(values), "n": len(values)} for stage, values in per_stage.items()}
    if "rerank" in per_stage:
        summary["rerank"]["share_of_total"] = float(sum(per_stage["rerank"]) / sum(per_stage["total"]))
    return summary


def timing_group(config: ServingConfig) -> tuple:
    return (config.first_stage, config.rewrite_key(), config.rerank, config.candidates if config.rerank else 0,
            config.variant() if config.rerank else "")


def time_reranking(configs: list[ServingConfig], make_pipeline: Callable[[ServingConfig], SearchPipeline],
                   queries: list[str], progress=None) -> dict[str, dict[str, float]]:
    """label -> latency summary (ms) of the whole query, for every configuration; each timing
    group is timed once, after one warm-up query (the first call allocates)."""
    timed: dict[tuple, dict[str, float]] = {}
    out = {}
    for config in configs:
        group = timing_group(config)
        if group not in timed:
            pipeline = make_pipeline(config)
            if queries:
                pipeline.search(queries[:1])
            timed[group] = time_pipeline(pipeline, queries).get("total", {})
            if progress is not None:
                progress.advance()
        out[config.label()] = timed[group]
    return out


def over_budget(configs: list[ServingConfig], latency: dict[str, dict[str, float]], budget_ms: float | None) -> dict[str, str]:
    """Reranking configurations whose p95 exceeds the budget: label -> the reason."""
    if budget_ms is None:
        return {}
    out = {}
    for config in configs:
        p95 = latency.get(config.label(), {}).get("p95_ms")
        if config.rerank and p95 is not None and p95 > budget_ms:
            out[config.label()] = f"p95 {p95:.0f} ms > budget {budget_ms:g} ms"
    return out
