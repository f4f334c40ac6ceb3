"""Collapse and over-fitting diagnostics of an embedding space, and their plots.

- norms of the pooled embeddings before normalisation (a collapsing model shrinks or
  blows up norms, or makes them all alike);
- uniformity: the mean pairwise cosine similarity of a fixed random sample of corpus
  chunks (near 1 means everything looks alike: the space collapsed);
- similarity of each query to its positive vs to its mined negatives (the gap should grow
  with training, without both collapsing towards 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pooled_norms(model, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Norms of the embeddings before the final Normalize module (if the model has one)."""
    from sentence_transformers import SentenceTransformer

    modules = [m for m in model if type(m).__name__ != "Normalize"]
    raw = SentenceTransformer(modules=modules, device="cpu")
    vectors = raw.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
    return np.linalg.norm(vectors, axis=1)


def uniformity(vectors: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Mean cosine similarity over distinct pairs of a random sample of unit vectors."""
    rng = np.random.default_rng(seed)
    if len(vectors) > sample:
        vectors = vectors[rng.choice(len(vectors), size=sample, replace=False)]
    n = len(vectors)
    if n < 2:
        return float("nan")
    sims = vectors @ vectors.T
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


def summary(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "p05": float(np.percentile(values, 5)),
            "p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def histogram_plot(path: Path, title: str, series: dict[str, np.ndarray], xlabel: str) -> Path:
    """Overlaid histograms, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    values = [v for v in series.values() if len(v)]
    low = min(float(np.min(v)) for v in values)
    high = max(float(np.max(v)) for v in values)
    bins = np.linspace(low, high if high > low else low + 1e-3, 40)
    for label, data in series.items():
        if len(data):
            ax.hist(data, bins=bins, alpha=0.5, label=f"{label} (n={len(data)})", density=True)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def line_plot(path: Path, title: str, series: dict[str, tuple[list[float], list[float]]], xlabel: str, ylabel: str) -> Path:
    """Lines (one per series) saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_curves(directory: Path, loss_title: str, loss_history: list[dict], dev_title: str,
                    dev_series: dict[str, tuple[list[float], list[float]]]) -> dict[str, Path]:
    """The loss curve (``loss.png``, when the trainer logged a loss) and the dev curve
    (``dev.png``) of a training run, keyed as the assets show them: ``loss_curve``, ``dev_curve``."""
    curves = {}
    if loss_history:
        curves["loss_curve"] = line_plot(directory / "loss.png", loss_title, {"loss": (
            [e["step"] for e in loss_history], [e["loss"] for e in loss_history])}, "step", "loss")
    curves["dev_curve"] = line_plot(directory / "dev.png", dev_title, dev_series, "epoch", "nDCG@10")
    return curves


def report_plots(directory: Path, arrays: dict[str, dict[str, np.ndarray]], curves: dict[str, dict], split: str
                 ) -> dict[str, Path]:
    """The evaluation report's plots, titled for its HTML page: per system, its similarity to
    positives vs hard negatives; the pooled norms; the abstention curve when answers were scored."""
    plots = {}
    for name, a in arrays.items():
        plots[f"{name}: query-positive vs query-negative similarity"] = histogram_plot(
            directory / f"similarity_{name}.png", f"{name}: similarity to positives vs hard negatives",
            {"query-positive": a["positive"], "query-negative": a["negative"]}, "cosine similarity")
    lines = {name: (c["threshold"], c["accuracy"]) for name, c in curves.items() if c["threshold"]}
    if lines:
        plots["Abstention threshold curve"] = line_plot(
            directory / "abstention_curve.png", f"Abstention accuracy by threshold ({split} split)", lines,
            "evidence score threshold (answer at or above)", "abstention accuracy")
    reliability = {name: (c["reliability"]["score"], c["reliability"]["answerable_share"])
                   for name, c in curves.items() if c.get("reliability", {}).get("score")}
    if reliability:
        plots["Abstention reliability"] = line_plot(
            directory / "abstention_reliability.png", f"Share answerable by evidence score ({split} split, equal-count bins)",
            reliability, "best evidence score (bin mean)", "share of queries answerable")
    # The sample is at most a fixed size: the title says how many chunks it really held.
    sampled = max((len(a["norms"]) for a in arrays.values()), default=0)
    plots["Pooled embedding norms"] = histogram_plot(
        directory / "norms.png", f"Norms of pooled embeddings ({sampled} sampled chunks)",
        {name: a["norms"] for name, a in arrays.items()}, "L2 norm before normalisation")
    return plots
