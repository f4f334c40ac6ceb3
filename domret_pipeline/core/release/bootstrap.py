"""Paired bootstrap confidence intervals of a difference of means (challenger − reference).

Why a bootstrap and not a t-interval: the gated metrics are bounded, often binary per query
(abstention accuracy) or piled up at 0 and 1 (nDCG@10, citation recall), and some are means
over a subset of the queries that differs between the two systems (citation precision and
faithfulness exist only where a system answered). Resampling whole queries with replacement
and recomputing each system's aggregate on the resample handles all of these the same way,
and keeps the pairing: a query is drawn for both systems at once, so what the two share
(an easy or a hard query) cancels out of the difference.

The interval is the percentile interval of the resampled differences: with a
``confidence_level`` of 0.95, its bounds are the 2.5th and 97.5th percentiles. Its lower
bound is therefore a one-sided 97.5 % bound, the convention of non-inferiority trials.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Index matrices are drawn in blocks of at most this many entries (16 MB of int64), so 10,000
# resamples of a large frozen split do not need gigabytes at once.
_BLOCK_ENTRIES = 2_000_000


@dataclass
class Interval:
    """One metric's paired difference: the observed mean difference, the interval, and what it
    was computed from."""

    mean_difference: float  # challenger − reference on the queries themselves (not resampled)
    low: float
    high: float
    n_queries: int  # paired queries resampled
    n_reference: int  # of those, where the reference has a value (the metric applies)
    n_challenger: int
    undefined_resamples: int  # resamples where a system had no query with a value (left out)

    def as_dict(self) -> dict:
        return asdict(self)


def _counts(index: np.ndarray, n: int) -> np.ndarray:
    """How many times each query was drawn in each resample (rows of ``index``): a metric's
    resampled sums are then one product with its per-query values."""
    offsets = index + (np.arange(len(index)) * n)[:, None]
    return np.bincount(offsets.ravel(), minlength=len(index) * n).reshape(len(index), n).astype(float)


def _observed(values: np.ndarray) -> float:
    defined = ~np.isnan(values)
    return float(values[defined].mean()) if defined.any() else float("nan")


def paired_bootstrap(pairs: dict[str, tuple[np.ndarray, np.ndarray]], resamples: int, confidence_level: float,
                     seed: int) -> dict[str, Interval]:
    """``pairs``: per metric, (reference, challenger) per-query values over the same queries in
    the same order, NaN where the metric does not apply. Every metric is resampled with the
    same query draws (one generator, seeded), so the intervals are deterministic for a seed
    and describe the same resamples."""
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie strictly between 0 and 1, got {confidence_level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    lengths = {len(ref) for ref, _ in pairs.values()} | {len(new) for _, new in pairs.values()}
    if len(lengths) > 1:
        raise ValueError("every metric needs the same queries for both systems")
    n = lengths.pop() if lengths else 0
    # Columns: per metric, the reference's values and the queries where it has one, then the
    # challenger's. A resample's mean is its sum of values over its count of defined queries,
    # which is what makes a mean over a subset (citation precision: answered queries only)
    # resample as the report computes it.
    columns = []
    for ref, new in pairs.values():
        for values in (np.asarray(ref, dtype=float), np.asarray(new, dtype=float)):
            columns += [np.nan_to_num(values, nan=0.0), (~np.isnan(values)).astype(float)]
    differences = {metric: np.empty(resamples) for metric in pairs}
    if n:
        rng = np.random.default_rng(seed)
        block = max(1, _BLOCK_ENTRIES // n)
        for start in range(0, resamples, block):
            counts = _counts(rng.integers(0, n, size=(min(block, resamples - start), n)), n)
            # one product per column, not one matrix product: a blocked matrix product may round
            # two equal columns differently, and an identical challenger must get exactly [0, 0]
            sums = np.stack([counts @ column for column in columns], axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                means = np.where(sums[:, 1::2] > 0, sums[:, 0::2] / sums[:, 1::2], np.nan)
            for i, metric in enumerate(pairs):
                differences[metric][start:start + len(sums)] = means[:, 2 * i + 1] - means[:, 2 * i]
    tail = (1.0 - confidence_level) / 2.0
    out = {}
    for metric, (ref, new) in pairs.items():
        ref, new = np.asarray(ref, dtype=float), np.asarray(new, dtype=float)
        drawn = differences[metric] if n else np.array([])
        kept = drawn[~np.isnan(drawn)]
        low, high = np.nan, np.nan
        if len(kept):
            low, high = float(np.quantile(kept, tail)), float(np.quantile(kept, 1.0 - tail))
        out[metric] = Interval(_observed(new) - _observed(ref), low, high, n, int((~np.isnan(ref)).sum()),
                               int((~np.isnan(new)).sum()), int(len(drawn) - len(kept)))
    return out
