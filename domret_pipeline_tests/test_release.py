"""The release gate and the registry's champion / rollback aliases."""

import math

from domret_pipeline.core.release.gate import gate
from domret_pipeline.registry import Registry

CHAMPION = {"ndcg@10": 0.70, "citation_precision": 0.50, "citation_recall": 0.40, "faithfulness": 1.0,
            "abstention_accuracy": 0.60}
TOLERANCE = {m: 0.01 for m in CHAMPION}


def test_gate_blocks_a_degraded_challenger_and_passes_a_better_one():
    degraded = {**CHAMPION, "citation_recall": 0.35}
    passed, rows = gate(degraded, CHAMPION, TOLERANCE)
    assert not passed and [r["metric"] for r in rows if not r["passed"]] == ["citation_recall"]
    better = {**CHAMPION, "ndcg@10": 0.72, "faithfulness": 0.995}  # within tolerance on faithfulness
    assert gate(better, CHAMPION, TOLERANCE)[0]
    assert not gate({**CHAMPION, "faithfulness": math.nan}, CHAMPION, TOLERANCE)[0]  # lost a metric
    assert gate({**CHAMPION, "faithfulness": math.nan}, {**CHAMPION, "faithfulness": math.nan}, TOLERANCE)[0]


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
