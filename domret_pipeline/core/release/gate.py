"""The release gate: a challenger may replace the champion only if, on every gated metric, we
are confident it is not worse than the champion by more than a non-inferiority margin.

Why intervals: a difference of means on a few hundred (or a few dozen) frozen queries moves
with which queries happen to be in the split. A fixed tolerance on the mean both promoted a
challenger whose loss was within noise of a real one and blocked one whose drop covered four
claims, and neither verdict said how sure it was. Here each gated metric gets a paired
bootstrap interval of (challenger − reference) over the frozen queries (:mod:`.bootstrap`),
and the metric fails when the interval's lower bound is below −margin: the data must rule out
a loss larger than the margin. An identical challenger has the interval [0, 0] and passes.

Gated metrics are end-to-end: retrieval nDCG@10 of the served pipeline, citation precision and
recall (sentence level), faithfulness and abstention accuracy, all on the same frozen queries.
A metric the reference does not have (no evidence labels) is not gated; a metric the
challenger lost while the reference has it fails.

Slices: queries may carry a ``slice`` (a topic or segment). Each slice gets the same intervals
on its own queries. A slice named in ``blocking_slices`` fails the gate on its own; the others
are shown for information (a slice of five queries has intervals too wide to decide on).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .bootstrap import paired_bootstrap

GATED = ("ndcg@10", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy")
# The per-query value each gated metric is the mean of (abstention accuracy is the mean of a
# per-query 0/1 "the abstain/answer decision was right").
PER_QUERY_KEY = {"abstention_accuracy": "abstention_correct"}
# Slack for float noise in the comparison with the margin, so a margin of 0 passes a challenger
# whose interval is [0, 0] up to rounding.
_EPS = 1e-12


@dataclass
class GateSettings:
    """The gate's knobs; their defaults live in ``EvaluationConfig`` (``gate_settings()``)."""

    margin_ndcg: float
    margin_citation_precision: float
    margin_citation_recall: float
    margin_faithfulness: float
    margin_abstention_accuracy: float
    bootstrap_resamples: int
    confidence_level: float
    bootstrap_seed: int
    blocking_slices: list[str]
    # With no champion the reference is the base model, which serves no one: nothing can
    # regress, so by default the first release is blocked only when it is shown worse than the
    # base ("not_worse"); against a champion the data must rule out a loss ("non_inferiority").
    first_release_rule: str

    def __post_init__(self):
        # checked here, when the config is read, rather than after the whole evaluation ran
        if not 0.0 < self.confidence_level < 1.0:
            raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {self.confidence_level}")
        if self.bootstrap_resamples < 1:
            raise ValueError(f"bootstrap_resamples must be at least 1, got {self.bootstrap_resamples}")

    def margins(self) -> dict[str, float]:
        return {"ndcg@10": self.margin_ndcg, "citation_precision": self.margin_citation_precision,
                "citation_recall": self.margin_citation_recall, "faithfulness": self.margin_faithfulness,
                "abstention_accuracy": self.margin_abstention_accuracy}

    def describe(self) -> dict:
        return {"method": "paired bootstrap over queries, percentile interval", "resamples": self.bootstrap_resamples,
                "confidence_level": self.confidence_level, "seed": self.bootstrap_seed, "margins": self.margins(),
                "blocking_slices": list(self.blocking_slices), "first_release_rule": self.first_release_rule}


def missing_blocking_slices(settings: GateSettings, slices_in_split: set[str]) -> list[str]:
    """Blocking slices with no query in the split: a misspelt name would otherwise block nothing."""
    return [s for s in settings.blocking_slices if s not in slices_in_split]


def _values(rows: dict[str, dict], qids: list[str], metric: str) -> np.ndarray:
    key = PER_QUERY_KEY.get(metric, metric)
    values = [rows[q].get(key) for q in qids]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _verdicts(reference: dict[str, dict], challenger: dict[str, dict], qids: list[str],
              settings: GateSettings, whole: bool = True, rule: str = "non_inferiority") -> list[dict]:
    """One row per gated metric on the queries ``qids`` (``whole``: the whole split, else a
    slice). ``rule``: ``non_inferiority`` (the lower bound must clear -margin) or ``not_worse``
    (fail only when the upper bound is below -margin)."""
    margins = settings.margins()
    pairs = {m: (_values(reference, qids, m), _values(challenger, qids, m)) for m in GATED}
    intervals = paired_bootstrap(pairs, settings.bootstrap_resamples, settings.confidence_level, settings.bootstrap_seed)
    rows = []
    for metric in GATED:
        ref_values, new_values = pairs[metric]
        interval = intervals[metric]
        margin = float(margins[metric])
        row = {"metric": metric, "margin": margin, "n_queries": len(qids),
               "reference": float(np.nanmean(ref_values)) if interval.n_reference else math.nan,
               "challenger": float(np.nanmean(new_values)) if interval.n_challenger else math.nan}
        if not qids:
            row.update(passed=False, why="no query to compare on")
        elif not interval.n_reference:
            row.update(passed=True, why="not gated: the reference has no value")
        elif not interval.n_challenger and whole:
            row.update(passed=False, why="the challenger has no value where the reference has one")
        elif not interval.n_challenger:
            # On a slice this is a challenger that abstained on every query of it (precision and
            # faithfulness exist only for answers): abstention accuracy and recall judge that.
            row.update(passed=True, why="not comparable: the challenger answered none of these queries")
        else:
            if rule == "not_worse":
                passed = interval.high >= -margin - _EPS
                why = (f"upper bound {interval.high:+.4f} ≥ -{margin:g}: not shown worse than the reference" if passed
                       else f"upper bound {interval.high:+.4f} < -{margin:g}: worse than the reference by more than the margin")
            else:
                passed = interval.low >= -margin - _EPS
                why = (f"lower bound {interval.low:+.4f} ≥ -{margin:g}" if passed else
                       f"lower bound {interval.low:+.4f} < -{margin:g}: a loss larger than the margin is not ruled out")
            row.update(delta=interval.mean_difference, ci_low=interval.low, ci_high=interval.high,
                       n_reference=interval.n_reference, n_challenger=interval.n_challenger,
                       undefined_resamples=interval.undefined_resamples, passed=passed, why=why)
        rows.append(row)
    return rows


def gate(reference: dict[str, dict], challenger: dict[str, dict], settings: GateSettings,
         slices: dict[str, str] | None = None, first_release: bool = False) -> dict:
    """The verdict of challenger against reference from their per-query rows (query id ->
    metric -> value, None where the metric does not apply to that query), on the queries both
    were scored on. ``slices``: query id -> slice for the queries that carry one.

    Returns ``passed``, the per-metric ``rows``, the per-slice verdicts (``slices``) and
    ``failures`` (one line per reason the gate failed). ``first_release``: the reference is
    the base model (no champion yet), judged by ``settings.first_release_rule``."""
    rule = settings.first_release_rule if first_release else "non_inferiority"
    qids = sorted(set(reference) & set(challenger))
    rows = _verdicts(reference, challenger, qids, settings, rule=rule)
    failures = [f"{r['metric']}: {r['why']}" for r in rows if not r["passed"]]
    members: dict[str, list[str]] = {}
    for q in qids:
        if slices and q in slices:
            members.setdefault(slices[q], []).append(q)
    by_slice = {}
    for name in sorted(members):
        slice_rows = _verdicts(reference, challenger, members[name], settings, whole=False, rule=rule)
        blocking = name in settings.blocking_slices
        passed = all(r["passed"] for r in slice_rows)
        by_slice[name] = {"n_queries": len(members[name]), "blocking": blocking, "passed": passed, "rows": slice_rows}
        if blocking and not passed:
            failures += [f"slice {name}: {r['metric']}: {r['why']}" for r in slice_rows if not r["passed"]]
    for name in missing_blocking_slices(settings, set(members)):
        failures.append(f"slice {name}: blocking, but no compared query carries it")
    return {"passed": not failures, "rows": rows, "slices": by_slice, "failures": failures, "n_queries": len(qids),
            "rule": rule, "settings": settings.describe()}
