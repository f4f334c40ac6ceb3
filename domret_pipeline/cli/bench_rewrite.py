"""``domret bench rewrite``: what query rewriting by pseudo-relevance feedback does on a
published serving bundle (SciFact's by default), opened read-only.

Quality: the dev split's dense and hybrid first stages, as written and with each prf setting
of the grid (``--depths`` x ``--weights``), scored through the served pipeline's stages as
``serving_config`` scores them, and the choice its rule makes on dev (``choose``, with
``min_gain``). The frozen test split is then scored once, for the configurations without a
rewrite and the rewrite dev chose for each first stage: nothing is chosen on it.

Latency: the served pipeline one query at a time (``--latency-queries`` dev queries), each
first stage with and without the dev-chosen rewrite, alternating query by query so a noisy
machine slows them alike; the figures to compare are the ratios in the same run.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .common import offline, stamp


def _summary(seconds: list[float]) -> dict:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def cmd_bench_rewrite(args: argparse.Namespace) -> int:
    offline()
    from ..core.data.labels import LabeledQueries
    from ..core.evaluation.metrics import mean_metrics
    from ..core.serving.bundle import open_bundle
    from ..core.serving.dev_choice import (
        cheaper_first, choose, collect_rankings, evaluate_config, grid, rewritten, same_stages,
    )
    from ..core.serving.rewrite import feedback_grid
    from ..core.serving.search import SearchPipeline
    from ..core.training.access import training_principal
    from .common import artifact_dir

    opened = open_bundle(artifact_dir(Path(args.refs), "serving_config"), rerank=False, load_all=True)
    labels_path = Path(opened.bundle["artifacts"]["labeled_queries"]["path"])
    labels = LabeledQueries.load(labels_path)
    principal = training_principal(labels_path)  # who serving_config's dev choice searches as
    served = opened.pipeline.config
    feedbacks = feedback_grid(["prf"], args.depths, args.weights)
    configs = grid([], [], False, served.depth, served.rrf_k, rewrites=feedbacks)
    chunk_to_doc = {c.chunk_id: c.doc_id for c in opened.chunks}
    parts = (opened.chunks, opened.index, opened.encoder, opened.bm25, None)

    def scores_on(split: str, subset, who) -> tuple[dict, float]:
        qrels = labels.qrels_for(split)
        started = time.perf_counter()
        rankings = collect_rankings(sorted(qrels), labels.queries, *parts, 0, served.depth, served.rrf_k,
                                    opened.pipeline.with_title, principal=who,
                                    rewrites=list(dict.fromkeys(c.query_rewrite() for c in subset if c.rewrite != "none")))
        seconds = time.perf_counter() - started
        return {c.label(): mean_metrics(evaluate_config(qrels, rankings, c, chunk_to_doc)) for c in subset}, seconds

    dev, dev_seconds = scores_on("dev", configs, principal)
    chosen = choose({label: m["ndcg@10"] for label, m in dev.items()}, configs, args.min_gain)
    # The best rewrite of each first stage on dev (what the rule would weigh were that stage chosen).
    best = {}
    for first in ("dense", "hybrid"):
        plain = next(c for c in configs if c.label() == first)
        twins = [c for c in configs if c.rewrite != "none" and same_stages(c, plain)]
        best[first] = max(twins, key=lambda c: (dev[c.label()]["ndcg@10"], *cheaper_first(c)))
    frozen = [c for c in configs if c.rewrite == "none"] + list(best.values())
    test, _ = scores_on("test", frozen, None)  # the frozen split, as the report runs it (public)

    timed_queries = [labels.queries[q] for q in sorted(labels.qrels_for("dev"))][: args.latency_queries]
    setups = {name: c for first in ("dense", "hybrid")
              for name, c in ((first, rewritten(best[first], None)), (best[first].label(), best[first]))}
    pipelines = {name: SearchPipeline(opened.chunks, opened.index, opened.encoder, replace(c, top_n=10), opened.bm25,
                                      None, opened.pipeline.with_title, principal=principal) for name, c in setups.items()}
    for pipeline in pipelines.values():  # warm-up, untimed
        pipeline.search(timed_queries[:3])
    stages: dict[str, dict[str, list[float]]] = {name: {} for name in pipelines}
    for query in timed_queries:
        for name, pipeline in pipelines.items():
            started = time.perf_counter()
            result = pipeline.search([query])[0]
            result.timings["total"] = time.perf_counter() - started
            for stage, seconds in result.timings.items():
                stages[name].setdefault(stage, []).append(seconds)
    latency = {name: {stage: _summary(values) for stage, values in per.items()} for name, per in stages.items()}
    for first in ("dense", "hybrid"):
        base = np.median(stages[first]["total"])
        latency[best[first].label()]["total"]["ratio_p50"] = round(float(np.median(stages[best[first].label()]["total"]) / base), 3)

    def rounded(metrics: dict) -> dict:
        return {k: round(v, 4) for k, v in metrics.items()}

    print(json.dumps({
        **stamp(args), "bundle": str(opened.folder), "dev_queries": len(labels.qrels_for("dev")),
        "test_queries": len(labels.qrels_for("test")), "dev_grid_seconds": round(dev_seconds, 1),
        "dev": {label: rounded(m) for label, m in sorted(dev.items(), key=lambda kv: -kv[1]["ndcg@10"])},
        "chosen_on_dev": chosen.label(), "reasons": chosen.reasons,
        "best_rewrite_on_dev": {first: c.label() for first, c in best.items()},
        "test": {label: rounded(m) for label, m in test.items()},
        "latency_queries": len(timed_queries), "latency": latency,
    }, indent=1))
    return 0


def add_rewrite_parser(kinds) -> argparse.ArgumentParser:
    p = kinds.add_parser("rewrite", help="dev and frozen-split nDCG@10 and latency of prf query rewriting on a bundle")
    p.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 3, 5, 10], help="prf feedback chunks tried on dev")
    p.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0], help="prf weights tried on dev")
    p.add_argument("--min-gain", type=float, default=0.0, help="as serving_config's min_gain")
    p.add_argument("--latency-queries", type=int, default=100)
    p.set_defaults(func=cmd_bench_rewrite)
    return p
