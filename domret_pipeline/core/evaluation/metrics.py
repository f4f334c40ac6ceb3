"""Ranking metrics computed by pytrec_eval (the trec_eval implementations BEIR uses).

Per-query values are kept so that systems can be compared query by query later (paired
tests, win/loss tables). A labeled query with no retrieved document scores 0, not "missing".
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def evaluate_run(qrels: Qrels, run: Run, k_values: Iterable[int] = (10, 100), mrr_k: int = 10) -> dict[str, dict[str, float]]:
    """Per-query ``ndcg@k``, ``recall@k`` and ``mrr@mrr_k`` for every query in ``qrels``."""
    import pytrec_eval

    k_values = sorted(set(k_values))
    ks = ",".join(str(k) for k in k_values)
    judged = {q: {d: int(s) for d, s in docs.items()} for q, docs in qrels.items() if docs}
    run = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in judged}
    evaluator = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{ks}", f"recall.{ks}"})
    raw = evaluator.evaluate({q: docs for q, docs in run.items() if docs})
    # MRR@k: reciprocal rank over the top k only (trec_eval's recip_rank has no cut-off).
    top = {q: dict(sorted(docs.items(), key=lambda kv: (-kv[1], kv[0]))[:mrr_k]) for q, docs in run.items() if docs}
    rr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(top)
    per_query: dict[str, dict[str, float]] = {}
    for qid in judged:
        values = raw.get(qid, {})
        row = {}
        for k in k_values:
            row[f"ndcg@{k}"] = float(values.get(f"ndcg_cut_{k}", 0.0))
            row[f"recall@{k}"] = float(values.get(f"recall_{k}", 0.0))
        row[f"mrr@{mrr_k}"] = float(rr.get(qid, {}).get("recip_rank", 0.0))
        per_query[qid] = row
    return per_query


def mean_metrics(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    if not per_query:
        return {}
    names = next(iter(per_query.values())).keys()
    return {name: float(np.mean([row[name] for row in per_query.values()])) for name in names}


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99 and mean in milliseconds."""
    if not seconds:
        return {}
    ms = np.asarray(seconds) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }
