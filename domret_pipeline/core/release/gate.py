"""The release gate: a challenger may replace the champion only if no gated metric is worse
than the champion's by more than its tolerance.

Gated metrics are end-to-end: retrieval nDCG@10 of the served pipeline, citation precision
and recall (sentence level), faithfulness and abstention accuracy, all on the same frozen
queries. A metric the reference does not have (NaN, e.g. no evidence labels) is not gated; a
metric the challenger lost while the reference has it fails.
"""

from __future__ import annotations

import math

GATED = ("ndcg@10", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy")


def gate(challenger: dict[str, float], reference: dict[str, float], tolerances: dict[str, float]) -> tuple[bool, list[dict]]:
    rows = []
    for metric in GATED:
        ref, new = reference.get(metric, math.nan), challenger.get(metric, math.nan)
        tolerance = float(tolerances.get(metric, 0.0))
        if ref is None or math.isnan(ref):
            rows.append({"metric": metric, "reference": ref, "challenger": new, "tolerance": tolerance, "passed": True,
                         "why": "not gated: the reference has no value"})
            continue
        present = new is not None and not math.isnan(new)
        passed = present and new >= ref - tolerance
        rows.append({"metric": metric, "reference": ref, "challenger": new, "delta": new - ref if present else None,
                     "tolerance": tolerance, "passed": passed,
                     "why": "ok" if passed else f"below the reference by more than {tolerance:g}"})
    return all(r["passed"] for r in rows), rows
