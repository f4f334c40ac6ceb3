"""Choosing the inference precision by measurement: a parity check on the dev split.

Every faster path (:mod:`.precision`) is run on the same dev task as fp32 and kept only when
it loses at most ``max_loss`` nDCG@10 against fp32; its agreement with fp32 (cosine of the
embeddings, or correlation of the reranker's scores) and its wall time are recorded with it.
``auto`` then serves the fastest path that passed on the machine at hand; fp32 when none did,
with the reason. An explicitly requested path that fails the check also falls back to fp32
and says so: a setting never buys speed with unmeasured quality.

The dev tasks are small on purpose (the dev queries against their relevant chunks plus a
seeded sample of others; the reranker's own dev candidates), so the check costs a fraction
of what the faster path saves on the whole corpus.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from .precision import PRECISIONS, REQUESTS, unavailable_reason

MAX_NDCG_LOSS = 0.005


@dataclass
class PrecisionTrial:
    precision: str
    status: str  # baseline, passed, failed, unavailable, error
    reason: str = ""
    seconds: float | None = None
    speedup: float | None = None  # fp32 seconds / these seconds, same task, same process
    ndcg: float | None = None
    ndcg_loss: float | None = None
    agreement_mean: float | None = None
    agreement_min: float | None = None


@dataclass
class PrecisionChoice:
    requested: str
    precision: str
    reason: str
    max_loss: float = MAX_NDCG_LOSS
    agreement: str = ""  # what agreement_* measure
    trials: list[PrecisionTrial] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PrecisionChoice":
        trials = [PrecisionTrial(**t) for t in data.get("trials", [])]
        return cls(**{**{k: v for k, v in data.items() if k != "trials"}, "trials": trials})

    def passed(self) -> list[str]:
        """Precisions that may serve: fp32 and every path that passed the check."""
        return [t.precision for t in self.trials if t.status in ("baseline", "passed")] or [self.precision]

    def table(self) -> list[list]:
        return [[t.precision, t.status, t.ndcg, t.ndcg_loss, t.agreement_mean, t.agreement_min, t.seconds, t.speedup,
                 t.reason] for t in self.trials]


# What a trial returns: (dev nDCG@10, outputs to compare with fp32's, seconds the outputs took).
TrialFn = Callable[[str], tuple[float, np.ndarray, float]]
AgreementFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def choose_precision(requested: str, run: TrialFn, agreement: AgreementFn, agreement_name: str = "",
                     device: str = "cpu", max_loss: float = MAX_NDCG_LOSS,
                     log: Callable[[str], None] | None = None) -> PrecisionChoice:
    """Run the parity check for ``requested`` (``auto`` tries every path) and choose."""
    if requested not in REQUESTS:
        raise ValueError(f"unknown precision {requested!r} (one of {', '.join(REQUESTS)})")
    if requested == "fp32":
        return PrecisionChoice("fp32", "fp32", "fp32 requested: no parity check", max_loss, agreement_name)
    ndcg, reference, seconds = run("fp32")
    trials = [PrecisionTrial("fp32", "baseline", "", seconds, 1.0, ndcg, 0.0, 1.0, 1.0)]
    candidates = [p for p in PRECISIONS if p != "fp32" and (requested == "auto" or p == requested)]
    for precision in candidates:
        reason = unavailable_reason(precision, device)
        if reason:
            trials.append(PrecisionTrial(precision, "unavailable", reason))
            continue
        try:
            p_ndcg, outputs, p_seconds = run(precision)
        except Exception as error:  # an export or runtime that fails here must not fail the step
            trials.append(PrecisionTrial(precision, "error", f"{type(error).__name__}: {error}"[:300]))
            continue
        agree = agreement(reference, outputs)
        loss = ndcg - p_ndcg
        ok = loss <= max_loss
        trials.append(PrecisionTrial(
            precision, "passed" if ok else "failed",
            "" if ok else f"loses {loss:.4f} dev nDCG@10 against fp32 (more than {max_loss:g})",
            p_seconds, seconds / max(p_seconds, 1e-9), p_ndcg, loss, float(np.mean(agree)), float(np.min(agree))))
    passed = [t for t in trials if t.status in ("baseline", "passed")]
    best = min(passed, key=lambda t: t.seconds)
    if best.precision == "fp32":
        tried = [t for t in trials if t.precision != "fp32"]
        why = "; ".join(f"{t.precision}: {t.reason or f'not faster ({t.speedup:.2f}x)'}" for t in tried)
        reason = f"fp32: no faster path passed ({why})" if tried else "fp32: no other path to try"
    else:
        reason = (f"{best.precision}: {best.speedup:.2f}x fp32's speed on the dev task, dev nDCG@10 "
                  f"{best.ndcg:.4f} vs fp32 {ndcg:.4f} (loss {best.ndcg_loss:.4f} <= {max_loss:g})")
    if log is not None:
        log(f"precision ({requested}): {reason}")
    return PrecisionChoice(requested, best.precision, reason, max_loss, agreement_name, trials)


def cosine_rows(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``other`` with the same row of ``reference`` (both normalised)."""
    return np.sum(np.asarray(reference, np.float64) * np.asarray(other, np.float64), axis=1)


def score_correlation(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Pearson correlation of two score vectors (one value)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.std() < 1e-12 or other.std() < 1e-12:
        return np.array([1.0 if np.allclose(reference, other) else 0.0])
    return np.array([float(np.corrcoef(reference, other)[0, 1])])


@dataclass
class EncoderDevTask:
    """Dev queries against a pool of chunks: their relevant documents' chunks plus a seeded
    sample of the rest. Scored at document level (a document scores as its best chunk)."""

    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    pool_ids: list[str]
    pool_texts: list[str]
    chunk_to_doc: dict[str, str]


def encoder_dev_task(queries: dict[str, str], qrels: dict[str, dict[str, int]], chunks, with_title: bool,
                     pool_size: int, seed: int = 13) -> EncoderDevTask:
    from ..data.chunking import passage_text

    if not qrels:
        raise ValueError("the dev split has no labeled query: no parity check is possible")
    relevant_docs = {d for docs in qrels.values() for d in docs}
    must = [c for c in chunks if c.doc_id in relevant_docs]
    rest = [c for c in chunks if c.doc_id not in relevant_docs]
    random.Random(seed).shuffle(rest)
    pool = must + rest[: max(0, pool_size - len(must))]
    return EncoderDevTask({q: queries[q] for q in qrels}, qrels, [c.chunk_id for c in pool],
                          [passage_text(c, with_title) for c in pool], {c.chunk_id: c.doc_id for c in pool})


def encoder_trial(task: EncoderDevTask, load: Callable[[str], object], batch_size: int = 64) -> TrialFn:
    """A trial function: load the encoder at a precision, encode the pool and the queries,
    rank and score. The outputs compared with fp32 are the pool's embeddings; the seconds
    are those of encoding the pool (the corpus's workload)."""
    from ..evaluation.metrics import evaluate_run, mean_metrics
    from .document_ranking import aggregate_max
    from .encoder import encode

    qids = sorted(task.queries)

    def run(precision: str) -> tuple[float, np.ndarray, float]:
        model = load(precision)
        encode(model, task.pool_texts[:batch_size], batch_size)  # warm-up: first calls allocate
        started = time.perf_counter()
        pool = encode(model, task.pool_texts, batch_size)
        seconds = time.perf_counter() - started
        scores = encode(model, [task.queries[q] for q in qids], batch_size) @ pool.T
        run_ = {}
        for qid, row in zip(qids, scores):
            top = np.argsort(-row)[:100]
            run_[qid] = aggregate_max([(task.pool_ids[i], float(row[i])) for i in top], task.chunk_to_doc)
        return mean_metrics(evaluate_run(task.qrels, run_, (10,)))["ndcg@10"], pool, seconds

    return run


def reranker_trial(samples, load: Callable[[str], object], batch_size: int = 32) -> TrialFn:
    """A trial function over the reranker's dev samples (query, first-stage candidates,
    relevant passages): reranking nDCG@10 at chunk level, the scores compared with fp32's."""
    from ..evaluation.metrics import evaluate_run, mean_metrics
    from .cross_encoder import score_pairs

    rows = [s for s in samples if s.relevant]
    if not rows:
        raise ValueError("no dev query has a relevant passage: no parity check is possible")

    def run(precision: str) -> tuple[float, np.ndarray, float]:
        model = load(precision)
        score_pairs(model, rows[0].query, rows[0].candidates[:batch_size], batch_size)  # warm-up
        started = time.perf_counter()
        scores = [score_pairs(model, s.query, s.candidates, batch_size) for s in rows]
        seconds = time.perf_counter() - started
        qrels, run_ = {}, {}
        for i, (sample, row) in enumerate(zip(rows, scores)):
            qrels[str(i)] = {f"p{j}": 1 for j, text in enumerate(sample.candidates) if text in set(sample.relevant)}
            qrels[str(i)] = qrels[str(i)] or {"missing": 1}  # a positive outside the candidates counts as missed
            run_[str(i)] = {f"p{j}": float(v) for j, v in enumerate(row)}
        return mean_metrics(evaluate_run(qrels, run_, (10,)))["ndcg@10"], np.concatenate(scores), seconds

    return run
