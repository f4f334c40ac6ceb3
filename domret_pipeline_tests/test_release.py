"""The release gate and the registry's champion / rollback aliases."""

import math

from domret_pipeline.config import EvaluationConfig
from domret_pipeline.core.release.gate import gate
from domret_pipeline.registry import Registry

CHAMPION = {"ndcg@10": 0.70, "citation_precision": 0.50, "citation_recall": 0.40, "faithfulness": 1.0,
            "abstention_accuracy": 0.60}
SETTINGS = EvaluationConfig(**{f"margin_{m}": 0.01 for m in ("ndcg", "citation_precision", "citation_recall",
                                                             "faithfulness", "abstention_accuracy")}).gate_settings()


def per_query(means: dict[str, float], n: int = 100) -> dict[str, dict]:
    """Rows whose per-query values are the means themselves: no spread, so each interval is the
    difference of the means (what the summary-based gate compared before the intervals)."""
    keys = {"abstention_accuracy": "abstention_correct"}
    return {f"q{i}": {keys.get(m, m): (None if v != v else v) for m, v in means.items()} for i in range(n)}


def test_gate_blocks_a_degraded_challenger_and_passes_a_better_one():
    degraded = {**CHAMPION, "citation_recall": 0.35}
    result = gate(per_query(CHAMPION), per_query(degraded), SETTINGS)
    assert not result["passed"] and [r["metric"] for r in result["rows"] if not r["passed"]] == ["citation_recall"]
    better = {**CHAMPION, "ndcg@10": 0.72, "faithfulness": 0.995}  # within the margin on faithfulness
    assert gate(per_query(CHAMPION), per_query(better), SETTINGS)["passed"]
    lost = {**CHAMPION, "faithfulness": math.nan}
    assert not gate(per_query(CHAMPION), per_query(lost), SETTINGS)["passed"]  # lost a metric
    assert gate(per_query(lost), per_query(lost), SETTINGS)["passed"]  # the reference has none: not gated


def test_promote_and_rollback_move_the_champion_alias(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("release", artifact_location=str(tmp_path / "art"))).info.run_id
    registry = Registry(uri)
    assert registry.champion() is None and registry.versions() == []
    v1 = registry.register(run, {"path": "/a", "sha256": "1"}, None, CHAMPION)
    v2 = registry.register(run, {"path": "/b", "sha256": "2"}, {"path": "/r", "sha256": "r"}, CHAMPION)
    assert registry.promote(v1.version).serving_config["path"] == "/a"
    assert registry.promote(v2.version).serving_config["path"] == "/b"
    assert registry.get("previous_champion").version == v1.version
    assert registry.rollback().version == v1.version  # one command back
    assert registry.get("previous_champion") is None
    assert [v.version for v in registry.versions()] == [v1.version, v2.version]  # nothing deleted
    try:
        registry.rollback()
        raise AssertionError("a second rollback has nowhere to go")
    except LookupError as error:
        assert "no previous champion" in str(error)
