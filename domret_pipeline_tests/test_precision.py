"""Inference precision: each path on the tiny models, and the parity rule that chooses."""

from __future__ import annotations

import numpy as np
import pytest

from domret_pipeline.core.retrieval.precision import PRECISIONS, unavailable_reason
from domret_pipeline.core.retrieval.precision_choice import choose_precision, cosine_rows, score_correlation

TEXTS = ["checkout-api availability objective", "forklifts at Leeds drive slowly", "OBX-3 carries the LOINC code",
         "PID-3 carries the MRN", "exceptions need the SRE lead"]


@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "fp32"])
def test_each_precision_path_encodes_close_to_fp32(tiny_encoder, precision):
    if unavailable_reason(precision):
        pytest.skip(unavailable_reason(precision))
    from domret_pipeline.core.retrieval.encoder import encode, load_encoder

    reference = encode(load_encoder(str(tiny_encoder), 128), TEXTS)
    vectors = encode(load_encoder(str(tiny_encoder), 128, precision=precision), TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == reference.shape
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)  # re-normalised in fp32
    cosines = cosine_rows(reference, vectors)
    assert cosines.min() > 0.98, cosines
    assert not np.array_equal(vectors, reference)  # the arithmetic did change


@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "fp32"])
def test_each_precision_path_scores_pairs_close_to_fp32(tiny_reranker_base, precision, tmp_path):
    if unavailable_reason(precision):
        pytest.skip(unavailable_reason(precision))
    from domret_pipeline.core.retrieval.cross_encoder import load_cross_encoder, load_reranker, score_pairs

    model = load_cross_encoder(str(tiny_reranker_base), 64)
    model.save(str(tmp_path / "ce"))
    reference = score_pairs(load_reranker(tmp_path / "ce", 64), "forklift speed", TEXTS)
    scores = score_pairs(load_reranker(tmp_path / "ce", 64, precision), "forklift speed", TEXTS)
    assert scores.dtype == np.float32 and scores.shape == reference.shape
    assert score_correlation(reference, scores)[0] > 0.95
    assert np.abs(scores - reference).max() < 0.1 * (np.abs(reference).max() + 1e-3) + 0.05


def _trial(table: dict[str, tuple[float, float]], noise: dict[str, float]):
    """A fake trial: (nDCG, seconds) per precision, outputs fp32's plus some noise."""
    base = np.eye(4)

    def run(precision):
        ndcg, seconds = table[precision]
        out = base + noise.get(precision, 0.0)
        return ndcg, out / np.linalg.norm(out, axis=1, keepdims=True), seconds

    return run


def test_auto_serves_the_fastest_path_within_the_loss(monkeypatch):
    monkeypatch.setattr("domret_pipeline.core.retrieval.precision_choice.unavailable_reason", lambda p, d="cpu": None)
    run = _trial({"fp32": (0.700, 10.0), "bf16": (0.699, 6.0), "int8": (0.697, 4.0)}, {"int8": 0.01})
    choice = choose_precision("auto", run, cosine_rows)
    assert choice.precision == "int8"
    assert [t.status for t in choice.trials] == ["baseline", "passed", "passed"]
    assert choice.trials[2].speedup == pytest.approx(2.5)
    assert choice.trials[2].ndcg_loss == pytest.approx(0.003)
    assert "int8" in choice.reason and "2.50x" in choice.reason
    assert choice.passed() == ["fp32", "bf16", "int8"]


def test_a_path_losing_more_than_the_tolerance_is_not_kept(monkeypatch):
    monkeypatch.setattr("domret_pipeline.core.retrieval.precision_choice.unavailable_reason", lambda p, d="cpu": None)
    run = _trial({"fp32": (0.700, 10.0), "bf16": (0.699, 6.0), "int8": (0.680, 4.0)}, {})
    choice = choose_precision("auto", run, cosine_rows)
    assert choice.precision == "bf16"
    assert choice.trials[2].status == "failed" and "0.0200" in choice.trials[2].reason
    # Asked for explicitly, a failing path falls back to fp32 and says why.
    explicit = choose_precision("int8", run, cosine_rows)
    assert explicit.precision == "fp32" and "int8" in explicit.reason and "0.0200" in explicit.reason


def test_fp32_is_kept_with_a_reason_when_nothing_faster_passes(monkeypatch):
    def unavailable(precision, device="cpu"):
        return "no onnxruntime" if precision == "int8" else None

    monkeypatch.setattr("domret_pipeline.core.retrieval.precision_choice.unavailable_reason", unavailable)
    run = _trial({"fp32": (0.700, 10.0), "bf16": (0.650, 6.0)}, {})
    choice = choose_precision("auto", run, cosine_rows)
    assert choice.precision == "fp32"
    assert "bf16" in choice.reason and "int8: no onnxruntime" in choice.reason
    assert {t.precision: t.status for t in choice.trials} == {"fp32": "baseline", "bf16": "failed", "int8": "unavailable"}


def test_a_path_that_errors_is_recorded_not_fatal(monkeypatch):
    monkeypatch.setattr("domret_pipeline.core.retrieval.precision_choice.unavailable_reason", lambda p, d="cpu": None)
    inner = _trial({"fp32": (0.7, 10.0), "bf16": (0.7, 5.0)}, {})

    def run(precision):
        if precision == "int8":
            raise RuntimeError("export failed")
        return inner(precision)

    choice = choose_precision("auto", run, cosine_rows)
    assert choice.precision == "bf16"
    assert any(t.status == "error" and "export failed" in t.reason for t in choice.trials)


def test_training_precision_resolves_by_the_device(monkeypatch):
    from domret_pipeline.core.retrieval import precision

    assert precision.resolve_train_precision("fp32") == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512f"})
    assert precision.resolve_train_precision("auto") == "fp32"
    with pytest.raises(ValueError, match="no native bf16"):
        precision.resolve_train_precision("bf16")
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx512_bf16"})
    assert precision.resolve_train_precision("auto") == "bf16"
