"""The release gate decides on paired bootstrap intervals of challenger − reference over the
frozen queries: an identical challenger passes with [0, 0], a clearly worse one fails with its
interval in the report, per-query noise around an equal mean passes, a slice blocks only when
listed, and the same seed gives the same verdict."""

import numpy as np
import pytest

from domret_pipeline.config import EvaluationConfig
from domret_pipeline.core.evaluation.report import to_markdown
from domret_pipeline.core.release.bootstrap import paired_bootstrap
from domret_pipeline.core.release.comparison import gate_summary
from domret_pipeline.core.release.gate import GATED, gate


def settings(**changes):
    return EvaluationConfig(**changes).gate_settings()


def rows_from(rng: np.random.Generator, n: int, answer_rate: float = 0.8) -> dict[str, dict]:
    """Per-query rows as evaluate_release builds them: nDCG@10, the 0/1 abstention decision,
    and citation metrics that are None where they do not apply (an abstention has no precision
    or faithfulness)."""
    rows = {}
    for i in range(n):
        answered = rng.random() < answer_rate
        rows[f"q{i:03d}"] = {
            "ndcg@10": float(rng.choice([0.0, 0.5, 0.63, 1.0])),
            "abstention_correct": float(rng.random() < 0.8),
            "citation_precision": float(rng.choice([0.0, 0.5, 1.0])) if answered else None,
            "citation_recall": float(rng.choice([0.0, 0.5, 1.0])),
            "faithfulness": 1.0 if answered else None,
        }
    return rows


def by_metric(result: dict) -> dict[str, dict]:
    return {r["metric"]: r for r in result["rows"]}


def test_an_identical_challenger_passes_with_the_interval_zero_zero():
    reference = rows_from(np.random.default_rng(1), 120)
    challenger = {q: dict(r) for q, r in reference.items()}
    result = gate(reference, challenger, settings(**{f"margin_{m}": 0.0 for m in
                                                     ("ndcg", "citation_precision", "citation_recall",
                                                      "faithfulness", "abstention_accuracy")}))
    assert result["passed"] and result["failures"] == []
    for metric in GATED:  # even a margin of 0 passes: there is no loss to rule out
        row = by_metric(result)[metric]
        assert (row["delta"], row["ci_low"], row["ci_high"]) == (0.0, 0.0, 0.0), metric
        assert row["n_queries"] == 120 and row["passed"]


def test_a_clearly_worse_challenger_fails_and_the_report_carries_its_interval():
    rng = np.random.default_rng(2)
    reference = rows_from(rng, 150)
    challenger = {q: dict(r) for q, r in reference.items()}
    for i, q in enumerate(sorted(challenger)):  # a third of the relevant documents fall out of the top 10
        if i % 3 == 0:
            challenger[q]["ndcg@10"] = 0.0
    result = gate(reference, challenger, settings())
    ndcg = by_metric(result)["ndcg@10"]
    assert not result["passed"] and not ndcg["passed"]
    assert ndcg["ci_low"] < -0.02 and ndcg["ci_low"] <= ndcg["delta"] <= ndcg["ci_high"] < 0
    assert ndcg["margin"] == 0.02 and ndcg["n_queries"] == 150
    assert all(r["passed"] for r in result["rows"] if r["metric"] != "ndcg@10")  # untouched metrics pass
    assert result["failures"] == [f"ndcg@10: {ndcg['why']}"]

    section = {"gate": {"reference": "champion", **result}}
    summary = gate_summary(section)
    assert summary.startswith("Release gate against the champion: FAILED")
    interval = f"[{ndcg['ci_low']:+.4f}, {ndcg['ci_high']:+.4f}]"
    assert interval in summary and "margin 0.02" in summary and "n=150" in summary

    report = {"info": {"split": "test", "n_queries": 150, "n_documents": 1, "n_chunks": 1, "encoders": {}},
              "systems": {}, "release": {"systems": {}, "has_evidence": True, **section}}
    markdown = to_markdown(report)
    assert "### Release gate: challenger vs champion" in markdown and "FAILED" in markdown
    gate_line = next(line for line in markdown.splitlines() if line.startswith("| ndcg@10 |"))
    assert interval in gate_line and "FAIL" in gate_line and "| 150 |" in gate_line


def test_a_noisy_but_equal_challenger_passes():
    """Per-query differences that cancel: as many queries won as lost, on 400 queries. The
    interval straddles 0 and stays above the margins."""
    rng = np.random.default_rng(3)
    reference = rows_from(rng, 400)
    challenger = {q: dict(r) for q, r in reference.items()}
    qids = sorted(challenger)
    flips = rng.permutation(len(qids))[:40]  # 10 % of the abstention decisions flip, 20 each way
    wrong = [q for q in qids if reference[q]["abstention_correct"] == 0.0]
    right = [q for q in qids if reference[q]["abstention_correct"] == 1.0]
    for q in wrong[:20]:
        challenger[q]["abstention_correct"] = 1.0
    for q in right[:20]:
        challenger[q]["abstention_correct"] = 0.0
    for i in flips:  # nDCG@10 noise with mean zero: +-0.1 in pairs
        q = qids[i]
        challenger[q]["ndcg@10"] = reference[q]["ndcg@10"] + (0.1 if reference[q]["ndcg@10"] < 0.9 else -0.1)
    down = [qids[i] for i in flips if challenger[qids[i]]["ndcg@10"] < reference[qids[i]]["ndcg@10"]]
    up = [qids[i] for i in flips if challenger[qids[i]]["ndcg@10"] > reference[qids[i]]["ndcg@10"]]
    for q in up[len(down):]:  # balance the wins against the losses exactly
        challenger[q]["ndcg@10"] = reference[q]["ndcg@10"]
    result = gate(reference, challenger, settings())
    for metric in ("ndcg@10", "abstention_accuracy"):
        row = by_metric(result)[metric]
        assert row["delta"] == pytest.approx(0.0, abs=1e-12)
        assert row["ci_low"] < 0 < row["ci_high"], (metric, row)  # not identical: a real interval
    assert result["passed"], result["failures"]


def test_a_slice_blocks_only_when_it_is_listed():
    rng = np.random.default_rng(4)
    reference = rows_from(rng, 200)
    challenger = {q: dict(r) for q, r in reference.items()}
    slices = {q: ("billing" if i < 30 else "shipping") for i, q in enumerate(sorted(reference))}
    for q, name in slices.items():  # worse on every billing query, better on the rest
        if name == "billing":
            challenger[q]["abstention_correct"] = 0.0
        else:
            challenger[q]["abstention_correct"] = 1.0

    informational = gate(reference, challenger, settings(), slices)
    assert informational["passed"], informational["failures"]
    billing = informational["slices"]["billing"]
    assert billing["n_queries"] == 30 and not billing["blocking"] and not billing["passed"]
    assert informational["slices"]["shipping"]["passed"]
    assert "informational: 1 of 2 slices" in gate_summary({"gate": {"reference": "base", **informational}})

    blocked = gate(reference, challenger, settings(blocking_slices=["billing"]), slices)
    assert not blocked["passed"] and blocked["slices"]["billing"]["blocking"]
    assert blocked["failures"] and all(f.startswith("slice billing: abstention_accuracy") for f in blocked["failures"])
    assert all(r["passed"] for r in blocked["rows"])  # the whole split alone would pass
    assert "slice billing (blocking, n=30): FAIL on abstention_accuracy" in gate_summary(
        {"gate": {"reference": "base", **blocked}})

    assert gate(reference, challenger, settings(blocking_slices=["shipping"]), slices)["passed"]
    # a misspelt blocking slice blocks nothing silently: it fails the gate and says why
    typo = gate(reference, challenger, settings(blocking_slices=["biling"]), slices)
    assert not typo["passed"] and typo["failures"] == ["slice biling: blocking, but no compared query carries it"]


def test_a_slice_where_the_challenger_abstains_everywhere_is_judged_by_abstention_not_precision():
    reference = {f"q{i}": {"ndcg@10": 1.0, "abstention_correct": 0.0, "citation_precision": 0.0,
                           "citation_recall": None, "faithfulness": 1.0} for i in range(6)}
    challenger = {q: {**r, "abstention_correct": 1.0, "citation_precision": None, "faithfulness": None}
                  for q, r in reference.items()}
    result = gate(reference, challenger, settings(blocking_slices=["unanswerable"]),
                  dict.fromkeys(reference, "unanswerable"))
    rows = by_metric(result["slices"]["unanswerable"])
    assert rows["citation_precision"]["passed"] and rows["citation_precision"]["why"].startswith("not comparable")
    # on the whole split, a challenger with no precision at all where the reference has one fails
    assert not by_metric(result)["citation_precision"]["passed"]


def test_the_same_seed_gives_the_same_intervals():
    rng = np.random.default_rng(5)
    reference, challenger = rows_from(rng, 80), rows_from(rng, 80)
    first = gate(reference, challenger, settings(bootstrap_seed=7))
    again = gate(reference, challenger, settings(bootstrap_seed=7))
    assert first == again
    other = gate(reference, challenger, settings(bootstrap_seed=8))
    assert [r["delta"] for r in other["rows"]] == [r["delta"] for r in first["rows"]]  # the data, not the draws
    assert [r["ci_low"] for r in other["rows"]] != [r["ci_low"] for r in first["rows"]]


def test_a_mean_over_answered_queries_resamples_as_the_report_averages():
    """Citation precision exists only where a system answered: the observed difference is
    that of the two systems' means over their own answered queries."""
    reference = np.array([1.0, np.nan, 0.0, 1.0])  # mean 2/3 over 3 answers
    challenger = np.array([np.nan, np.nan, 1.0, 1.0])  # mean 1 over 2 answers
    interval = paired_bootstrap({"p": (reference, challenger)}, 2000, 0.95, 0)["p"]
    assert interval.mean_difference == pytest.approx(1 - 2 / 3)
    assert (interval.n_reference, interval.n_challenger, interval.n_queries) == (3, 2, 4)
    assert interval.undefined_resamples > 0  # resamples that drew neither answered query: left out
    assert -1.0 <= interval.low <= interval.high <= 1.0


def test_gate_settings_come_from_the_config_and_bad_ones_fail_early():
    defaults = EvaluationConfig().gate_settings()
    assert defaults.margins() == {"ndcg@10": 0.02, "citation_precision": 0.05, "citation_recall": 0.05,
                                  "faithfulness": 0.05, "abstention_accuracy": 0.05}
    assert (defaults.bootstrap_resamples, defaults.confidence_level, defaults.blocking_slices) == (10_000, 0.95, [])
    assert EvaluationConfig(blocking_slices=["oncall"]).gate_settings().blocking_slices == ["oncall"]
    with pytest.raises(ValueError, match="confidence_level"):
        EvaluationConfig(confidence_level=95).gate_settings()
    with pytest.raises(ValueError, match="bootstrap_resamples"):
        EvaluationConfig(bootstrap_resamples=0).gate_settings()


def test_a_run_config_with_the_old_tolerance_keys_is_told_their_new_names(tmp_path, monkeypatch, capsys):
    from domret_pipeline.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("DOMRET_HOME", str(tmp_path / "domret"))
    (tmp_path / "dagster").mkdir()
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  evaluation_report:\n    config:\n      tolerance_ndcg: 0.01\n", encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"domret: {config}:4: ops.evaluation_report.config.tolerance_ndcg: unknown key "
                      "(renamed to margin_ndcg; see the README's release gate section)")


def test_a_first_release_is_blocked_only_when_shown_worse_than_the_base():
    """With no champion the reference is the base model. A challenger whose citation recall is
    noisy around an equal mean on 40 queries cannot be shown non-inferior (its interval is far
    wider than the margin) but is not shown worse either: the first-release rule passes it,
    the champion rule does not. A challenger clearly worse than the base fails both."""
    rng = np.random.default_rng(5)
    reference = rows_from(rng, 40)
    noisy = {q: dict(r) for q, r in reference.items()}
    flips = sorted(noisy)[:8]
    for i, q in enumerate(flips):  # four queries lose their recall, four gain it: equal means
        noisy[q]["citation_recall"] = 0.0 if i % 2 == 0 else 1.0
        reference[q]["citation_recall"] = 1.0 if i % 2 == 0 else 0.0
    first = gate(reference, noisy, settings(), first_release=True)
    strict = gate(reference, noisy, settings(), first_release=False)
    recall_first, recall_strict = by_metric(first)["citation_recall"], by_metric(strict)["citation_recall"]
    assert recall_first["ci_low"] < -0.05 < recall_first["ci_high"]  # the data rule out neither
    assert recall_first["passed"] and not recall_strict["passed"]
    assert first["rule"] == "not_worse" and strict["rule"] == "non_inferiority"
    worse = {q: {**r, "ndcg@10": 0.0} for q, r in reference.items()}  # every relevant document lost
    assert not gate(reference, worse, settings(), first_release=True)["passed"]
    assert not gate(reference, noisy, settings(first_release_rule="non_inferiority"), first_release=True)["passed"]


def test_the_report_says_which_rule_decided():
    reference = rows_from(np.random.default_rng(7), 30)
    for first_release, words in ((True, "upper bound is below −margin"), (False, "lower bound is below −margin")):
        result = {"reference": "base", **gate(reference, reference, settings(), first_release=first_release)}
        release = {"systems": {}, "gate": result}
        assert words in to_markdown({"info": {"split": "test", "n_queries": 30, "n_documents": 1, "n_chunks": 1,
                                              "encoders": {}}, "systems": {}, "release": release})
        assert ("first release" in gate_summary({"gate": result})) == first_release
