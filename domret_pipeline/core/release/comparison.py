"""The decision part of the evaluation report: base, champion and challenger end to end on the
same frozen queries (retrieval, citations, abstention), their per-query wins and losses (the
shadow comparison), and the release gate's verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..answers.extractive import AnswerSettings
from ..data.labels import LabeledQueries
from ..evaluation.answers import evaluate_answers
from ..evaluation.significance import paired_test
from ..serving.dev_choice import pipeline_metrics
from ..serving.search import SearchPipeline
from .gate import GateSettings, gate


@dataclass
class EndToEndSystem:
    """One system as users meet it: a search pipeline and its answer step."""

    name: str
    pipeline: SearchPipeline
    documents: dict
    scorer: object  # (query, sentences) -> scores
    answer: AnswerSettings
    label: str = ""
    generator: object | None = None  # an OpenAI-compatible generator instead of the extractive step


def shadow(per_query_a: dict[str, dict], per_query_b: dict[str, dict], metric: str, queries: dict[str, str],
           top: int = 10) -> dict:
    """Per-query wins and losses of b (challenger) against a (champion) on one metric."""
    shared = sorted(q for q in per_query_a if q in per_query_b and per_query_a[q].get(metric) is not None
                    and per_query_b[q].get(metric) is not None)
    diffs = {q: per_query_b[q][metric] - per_query_a[q][metric] for q in shared}
    changed = sorted((q for q in shared if abs(diffs[q]) > 1e-12), key=lambda q: -abs(diffs[q]))
    return {
        "metric": metric, "wins": sum(d > 1e-12 for d in diffs.values()), "losses": sum(d < -1e-12 for d in diffs.values()),
        "ties": sum(abs(d) <= 1e-12 for d in diffs.values()),
        "largest": [{"query_id": q, "query": queries[q][:120], "champion": per_query_a[q][metric],
                     "challenger": per_query_b[q][metric]} for q in changed[:top]],
    }


ANSWER_STEP_METRICS = ("citation_precision", "citation_recall", "citation_precision_doc", "citation_recall_doc",
                       "faithfulness", "abstention_correct")


def answer_step_comparison(before: dict[str, dict], after: dict[str, dict]) -> dict:
    """Paired tests of one answer step against another on the same searches (per-query rows):
    for each metric, on the queries where it applies to both (an abstention has no precision)."""
    out = {}
    for metric in ANSWER_STEP_METRICS:
        shared = [q for q in before if q in after and before[q].get(metric) is not None and after[q].get(metric) is not None]
        if shared:
            out[metric] = paired_test({q: before[q][metric] for q in shared}, {q: after[q][metric] for q in shared})
    return out


def evaluate_release(labels: LabeledQueries, split: str, systems: dict[str, EndToEndSystem],
                     settings: GateSettings, retrieval: dict[str, dict] | None = None) -> tuple[dict, dict]:
    """``systems``: ``base``, ``challenger`` and, when one exists, ``champion``; and
    ``challenger_encoder`` where the challenger's answers are not scored by the bi-encoder: the
    same searches answered with bi-encoder sentence scores, the "before" of the answer scorer
    (``section["answer_step"]``: paired tests, not gated). Retrieval
    metrics are those of each system's served pipeline; ``retrieval`` gives some already
    computed by the same pipeline (the challenger's, from the serving section), so a reranker
    does not score the same candidates twice. The gate reads the per-query rows (not the
    means): its intervals resample queries. Returns the report section and the per-query rows
    (for the per-query file)."""
    qrels = labels.qrels_for(split)
    with_evidence = bool(labels.evidence)
    section: dict = {"systems": {}, "shadow": {}, "has_evidence": with_evidence}
    per_query: dict[str, dict] = {}
    curves = {}
    for name, system in systems.items():
        scored = (retrieval or {}).get(name) or pipeline_metrics(system.pipeline, qrels, labels.queries)
        summary = {"ndcg@10": float(np.mean([r["ndcg@10"] for r in scored.values()])),
                   "mrr@10": float(np.mean([r["mrr@10"] for r in scored.values()]))}
        rows = {q: dict(r) for q, r in scored.items()}
        if with_evidence:
            answers = evaluate_answers(system.pipeline, labels, split, system.documents, system.scorer, system.answer,
                                       system.generator)
            summary.update({k: v for k, v in answers["summary"].items()})
            for q, r in answers["rows"].items():
                rows[q].update(r)
            curves[name] = answers["curve"]
            section.setdefault("answers", {})[name] = {
                q: {"abstained": a.abstained, "evidence_score": a.evidence_score, "retrieved": a.retrieved[:10],
                    "cited": sorted([list(s) for s in a.cited()]), "sentences": [s.text for s in a.sentences]}
                for q, a in answers["answers"].items()
            }
        section["systems"][name] = {"label": system.label or system.pipeline.config.label(), "metrics": summary}
        per_query[name] = rows
    reference = "champion" if "champion" in systems else "base"
    section["gate"] = {"reference": reference, **gate(per_query[reference], per_query["challenger"], settings,
                                                     {q: s for q, s in labels.slices.items() if q in qrels},
                                                     first_release=reference == "base")}
    for metric in ("ndcg@10", "citation_recall"):
        if all(metric in r for r in per_query[reference].values()):
            section["shadow"][metric] = shadow(per_query[reference], per_query["challenger"], metric, labels.queries)
    qids = sorted(qrels)
    section["significance"] = {
        metric: paired_test({q: per_query[reference][q][metric] for q in qids}, {q: per_query["challenger"][q][metric] for q in qids})
        for metric in ("ndcg@10",)
    }
    if "challenger_encoder" in per_query and with_evidence:
        section["answer_step"] = {"before": "challenger_encoder", "after": "challenger",
                                  "tests": answer_step_comparison(per_query["challenger_encoder"], per_query["challenger"])}
    section["curves"] = curves
    return section, per_query


def _number(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def interval_text(row: dict) -> str:
    """``+0.0123 [-0.0101, +0.0350]``: the mean difference and its interval; ``n/a`` for a metric
    that was not compared (the row's ``why`` says why)."""
    if row.get("ci_low") is None:
        return "n/a"
    return f"{row['delta']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def gate_summary(section: dict) -> str:
    """The gate's verdict in a few lines (Dagster metadata, and what ``domret run`` prints when
    the gate blocks): per metric the means, the difference with its interval, the margin and
    the number of queries; then the slices that block, and the informational ones whose
    interval crossed the margin."""
    gate_ = section["gate"]
    settings = gate_.get("settings", {})
    level = f"{settings.get('confidence_level', 0.95):.0%}"
    reference = gate_["reference"]
    lines = [f"Release gate against the {reference}: {'PASSED' if gate_['passed'] else 'FAILED'} "
             f"({level} paired bootstrap intervals of challenger − {reference} over {gate_.get('n_queries', '?')} "
             f"queries, {settings.get('resamples', '?')} resamples; "
             + ("first release: a metric fails only when its upper bound is below −margin)"
                if gate_.get("rule") == "not_worse" else "a metric fails when its lower bound is below −margin)")]
    for row in gate_["rows"]:
        # .get: `domret run` may fall back to a report written before the gate had intervals
        margin = row.get("margin", row.get("tolerance", math.nan))
        lines.append(f"- {row['metric']}: {_number(row['reference'])} → {_number(row['challenger'])}, "
                     f"difference {interval_text(row)}, margin {margin:g}, n={row.get('n_queries', '?')}: "
                     f"{'pass' if row['passed'] else 'FAIL'} ({row['why']})")
    slices = gate_.get("slices", {})
    for name, verdict in slices.items():
        if verdict["blocking"]:
            failed = [r for r in verdict["rows"] if not r["passed"]]
            lines.append(f"- slice {name} (blocking, n={verdict['n_queries']}): "
                         + ("pass" if not failed else "FAIL on " + ", ".join(
                             f"{r['metric']} {interval_text(r)}" for r in failed)))
    informational = [name for name, v in slices.items() if not v["blocking"] and not v["passed"]]
    if informational:
        lines.append(f"- informational: {len(informational)} of {len(slices)} slices have an interval below the "
                     f"margin ({', '.join(informational)}); they do not block")
    for failure in gate_.get("failures", []):
        if "no compared query carries it" in failure:
            lines.append(f"- {failure}")
    return "\n".join(lines)
