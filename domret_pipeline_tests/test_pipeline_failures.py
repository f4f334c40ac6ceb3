"""The tiny graph when its input is bad: a failed run changes no published reference and marks
its MLflow run FAILED; bad rows set aside (quarantine) are reported in the asset's metadata."""

import dagster as dg

from domret_pipeline.core.artifacts import ArtifactRef
from domret_pipeline.definitions import ASSETS

from .conftest import make_resources
from .graph_helpers import materialize, refs, run_config


def test_failed_run_leaves_last_good_artifacts(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    with dg.instance_for_test() as instance:
        assert materialize(tmp_path, tiny_encoder, mlflow_uri, run_config(small_dataset, tiny_encoder), instance).success
        before = refs(tmp_path)
        bad = small_dataset["root"] / "bad.jsonl"
        bad.write_text(small_dataset["corpus"].read_text() + '{"_id": "x", "text": "broken\n')
        config = run_config(small_dataset, tiny_encoder)
        config["ops"]["corpus_documents"]["config"]["path"] = str(bad)
        result = materialize(tmp_path, tiny_encoder, mlflow_uri, config, instance, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        assert f"{bad}:7" in str(failure.event_specific_data.error.to_string())
    assert refs(tmp_path) == before
    for text in before.values():
        ArtifactRef.from_json(text).verify()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(f"test-{tmp_path.name}").experiment_id])
    assert [r.info.status for r in runs if r.data.tags["dagster.run_id"] == result.run_id] == ["FAILED"]


def test_quarantine_is_reported_in_metadata(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    corpus = small_dataset["corpus"]
    corpus.write_text(corpus.read_text() + '{"_id": "slo-a", "text": "duplicate id"}\n{"_id": "e", "text": ""}\n')
    config = run_config(small_dataset, tiny_encoder)
    config["ops"]["corpus_documents"]["config"]["on_bad_rows"] = "quarantine"
    result = dg.materialize(
        [a for a in ASSETS if next(iter(a.specs)).key.to_user_string() == "corpus_documents"],
        resources=make_resources(tmp_path, tiny_encoder, mlflow_uri),
        run_config={"ops": {"corpus_documents": config["ops"]["corpus_documents"]}},
    )
    meta = result.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    assert meta["documents"].value == 6 and meta["quarantined_rows"].value == 2
    table = meta["quarantine"].value
    assert f"{corpus}" in table and "| 7 |" in table and "| 8 |" in table and "empty text" in table
