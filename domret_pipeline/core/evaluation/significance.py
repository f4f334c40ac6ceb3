"""Paired significance tests on per-query metrics of two systems over the same queries."""

from __future__ import annotations

import numpy as np


def paired_test(a: dict[str, float], b: dict[str, float], permutations: int = 10_000, seed: int = 0) -> dict:
    """Compare system b against system a on the queries both were scored on.

    Returns the mean difference (b - a), wins/losses/ties, the two-sided p-value of a paired
    randomization (sign-flip) test, the usual choice in IR evaluation, and of Wilcoxon's
    signed-rank test."""
    from scipy.stats import wilcoxon

    queries = sorted(set(a) & set(b))
    if not queries:
        raise ValueError("the two systems share no query")
    diff = np.array([b[q] - a[q] for q in queries])
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(permutations, len(diff)))
    null = np.abs((signs * diff).mean(axis=1))
    p_randomization = float((np.sum(null >= observed - 1e-12) + 1) / (permutations + 1))
    nonzero = diff[diff != 0]
    p_wilcoxon = float(wilcoxon(nonzero).pvalue) if len(nonzero) >= 1 else 1.0
    return {
        "n_queries": len(queries),
        "mean_a": float(np.mean([a[q] for q in queries])),
        "mean_b": float(np.mean([b[q] for q in queries])),
        "mean_difference": float(diff.mean()),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
        "p_randomization": p_randomization,
        "p_wilcoxon": p_wilcoxon,
    }
