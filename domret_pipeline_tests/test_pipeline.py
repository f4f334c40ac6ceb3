"""The asset graph, materialized in process on a small corpus with a tiny random encoder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from domret_pipeline.checks import ALL_CHECKS
from domret_pipeline.core.artifacts import ArtifactRef
from domret_pipeline.core.manifests import DenseIndexManifest, HardNegativesManifest, read_manifest
from domret_pipeline.definitions import ASSETS, defs

from .conftest import make_resources, publish
from .test_ui import assert_ui_metadata

ASSET_NAMES = ["corpus_documents", "corpus_chunks", "labeled_queries", "base_faiss_index", "bm25_index",
               "hard_negatives", "embedding_checkpoint", "faiss_index", "reranker_adapter", "serving_config",
               "evaluation_report", "champion_release", "labeling_queue"]


def run_config(data: dict, reranker_base: Path, **labels_overrides) -> dict:
    # split_salt "t1" puts q3, q4 in train, q5 in dev and q1, q2, q6 in test
    labels = {"queries_path": str(data["queries"]), "qrels_path": str(data["qrels"]), "split_salt": "t1",
              "evidence_path": str(data["evidence"]), "dev_fraction": 0.3, "test_fraction": 0.3, **labels_overrides}
    return {"ops": {
        "corpus_documents": {"config": {"path": str(data["corpus"])}},
        "labeled_queries": {"config": labels},
        "corpus_chunks": {"config": {"chunk_tokens": 16, "overlap_tokens": 4}},
        "hard_negatives": {"config": {"range_min": 0, "range_max": 20, "num_negatives": 2, "max_positive_ratio": 1.0}},
        "embedding_checkpoint": {"config": {"epochs": 1, "batch_size": 2, "max_seq_length": 64, "learning_rate": 1e-3,
                                            "dev_random_chunks": 5}},
        "reranker_adapter": {"config": {"base_model": str(reranker_base), "max_length": 64, "epochs": 1, "batch_size": 2,
                                        "candidates": 6, "num_negatives": 2, "in_batch_negatives": 1, "lora_r": 4}},
        "serving_config": {"config": {"candidates": [4], "fusion_weights": [1.0], "depth": 20, "top_n": 3}},
        # Random tiny models: gate loosely here; test_release_gate_blocks_a_worse_challenger gates strictly.
        "evaluation_report": {"config": {"latency_queries": 3, **{f"margin_{m}": 1.0 for m in MARGINS}}},
    }}


MARGINS = ["ndcg", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy"]


def resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset, rows: list[dict]) -> dict:
    """Test resources whose feedback store holds ``rows`` (imported from a JSONL file) and whose
    retrain requests carry the tiny graph's run config, as a deployment's DOMRET_RETRAIN_CONFIG does."""
    import yaml

    from domret_pipeline.core.feedback.files import read_feedback_file
    from domret_pipeline.resources import FeedbackStoreResource

    feedback_file = tmp_path / "feedback.jsonl"
    feedback_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    deployment = tmp_path / "retrain.yaml"
    deployment.write_text(yaml.safe_dump(run_config(small_dataset, tiny_encoder)))
    resources = make_resources(tmp_path, tiny_encoder, mlflow_uri)
    resources["feedback"] = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db", retrain_min_labels=3,
                                                  retrain_run_config=str(deployment))
    store = resources["feedback"].store()
    store.migrate()
    assert store.add(read_feedback_file(feedback_file)).inserted == len(rows)
    return resources


def materialize(home, tiny_encoder, mlflow_uri, config, instance=None, raise_on_error=True):
    """Materialize the graph and, when the run succeeded, publish it (as `domret run` does)."""
    result = dg.materialize(
        [*ASSETS, *ALL_CHECKS], resources=make_resources(home, tiny_encoder, mlflow_uri), run_config=config,
        instance=instance, raise_on_error=raise_on_error,
    )
    if result.success:
        assert publish(home, result.run_id, mlflow_uri).published
    return result


def refs(home: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((home / "refs").glob("*.json"))}


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == set(ASSET_NAMES)
    for asset in ASSETS:
        spec = next(iter(asset.specs))
        assert spec.description and spec.code_version and spec.group_name
    assert "domret_full" in [job.name for job in repo.get_all_jobs()]


def test_definitions_import_no_torch():
    code = "import sys, domret_pipeline.definitions; print('torch' in sys.modules, 'sentence_transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_whole_graph_materializes_with_lineage_and_mlflow(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    with dg.instance_for_test() as instance:
        result = materialize(tmp_path, tiny_encoder, mlflow_uri, run_config(small_dataset, tiny_encoder), instance)
        assert result.success
        events = {
            m.asset_key.to_user_string(): m
            for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())
        }
        assert set(events) == set(ASSET_NAMES)

        # every asset carries a content-hash data version, its artifact path and its MLflow run
        for name, mat in events.items():
            meta = mat.metadata
            ref = ArtifactRef(meta["artifact_path"].value, meta["content_sha256"].value)
            ref.verify()
            assert mat.tags["dagster/data_version"] == ref.sha256[:32]
            assert "mlflow_run" in meta
        assert all(c.passed for c in result.get_asset_check_evaluations()
                   if c.severity != dg.AssetCheckSeverity.WARN)
        assert len(result.get_asset_check_evaluations()) == len(ALL_CHECKS)

        # the report covers exactly the judged queries of the frozen split, for both systems
        report_dir = Path(events["evaluation_report"].metadata["artifact_path"].value)
        report = json.loads((report_dir / "report.json").read_text())
        labels_dir = Path(events["labeled_queries"].metadata["artifact_path"].value)
        test_ids = [json.loads(l)["query_id"] for l in (labels_dir / "queries.jsonl").read_text().splitlines()
                    if json.loads(l)["split"] == "test"]
        assert report["info"]["n_queries"] == len(test_ids) > 0
        assert set(report["systems"]) == {"bm25", "dense_base", "dense_tuned"}
        assert set(report["significance"]["dense_tuned"]) == {"ndcg@10", "mrr@10", "recall@100"}
        assert "hard_negative" in report["slices"]
        assert set(report["diagnostics"]) == {"dense_base", "dense_tuned"}
        for system in ("dense_base", "dense_tuned", "bm25"):
            metrics = report["systems"][system]["metrics"]
            assert set(metrics) == {"ndcg@10", "recall@10", "ndcg@100", "recall@100", "mrr@10"}
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
        assert {"dense_base", "dense_tuned", "bm25"} == set(report["latency"])
        # serving families at their dev-chosen settings, the served one, and per-stage latency
        serving = report["serving"]
        assert set(serving["rows"]) == {"dense", "hybrid", "dense+rerank", "hybrid+rerank", "served"}
        assert all(set(r["metrics"]) == {"ndcg@10", "recall@10", "mrr@10"} for r in serving["rows"].values())
        assert serving["reasons"] and serving["reasons"][-1].startswith("rerank ")
        assert {"ann", "bm25", "fusion", "rerank", "total"} <= set(serving["latency"]["hybrid+rerank@20"]["stages"])
        assert 0 < serving["latency"]["hybrid+rerank@20"]["stages"]["rerank"]["share_of_total"] < 1
        assert "Serving configurations" in events["evaluation_report"].metadata["report"].value
        bundle = json.loads((Path(events["serving_config"].metadata["artifact_path"].value) / "serving.json").read_text())
        assert bundle["artifacts"]["reranker_adapter"]["sha256"] == events["reranker_adapter"].metadata["content_sha256"].value
        assert report["inputs"]["reranker_adapter"] == bundle["artifacts"]["reranker_adapter"]["sha256"]
        # end to end: base and challenger answered with citations; no champion yet, so the gate
        # compared the challenger with the base model, passed, and the bundle became champion v1
        release = report["release"]
        assert set(release["systems"]) == {"base", "challenger"} and release["gate"]["reference"] == "base"
        # the gate decided on per-query intervals over the frozen queries, shown in the report
        ndcg = next(r for r in release["gate"]["rows"] if r["metric"] == "ndcg@10")
        assert ndcg["n_queries"] == report["info"]["n_queries"] and ndcg["ci_low"] <= ndcg["delta"] <= ndcg["ci_high"]
        assert "Release gate by slice" in events["evaluation_report"].metadata["report"].value or not release["gate"]["slices"]
        for system in release["systems"].values():
            assert {"citation_precision", "citation_recall", "faithfulness", "abstention_accuracy",
                    "threshold"} <= set(system["metrics"])
        assert (report_dir / "answers_challenger.jsonl").is_file() and (report_dir / "abstention_curve.png").is_file()
        assert "Release gate" in events["evaluation_report"].metadata["report"].value
        assert events["champion_release"].metadata["champion_version"].text == "1"
        markdown = events["evaluation_report"].metadata["report"].value
        assert "| dense_tuned |" in markdown and "Hard-negative slice" in markdown and "Paired significance" in markdown
        assert (report_dir / "report.html").read_text().startswith("<!doctype html>")
        # the lineage of the report names the exact inputs it was computed from
        assert report["inputs"]["faiss_index"] == events["faiss_index"].metadata["content_sha256"].value
        tuned_manifest = read_manifest(events["faiss_index"].metadata["artifact_path"].value, DenseIndexManifest)
        assert tuned_manifest.role == "tuned"
        assert tuned_manifest.embedding_checkpoint == events["embedding_checkpoint"].metadata["content_sha256"].value
        assert tuned_manifest.encoder_path.startswith(events["embedding_checkpoint"].metadata["artifact_path"].value)

        assert_ui_metadata(events, report, markdown)  # plots and formatted figures (test_ui)

    # one FINISHED MLflow run per materialization, tagged with the Dagster run and asset
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.get_experiment_by_name(f"test-{tmp_path.name}")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["dagster.asset_key"] for r in runs) == sorted(ASSET_NAMES)
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["dagster.run_id"] for r in runs} == {result.run_id}
    report_run = next(r for r in runs if r.data.tags["dagster.asset_key"] == "evaluation_report")
    assert "dense_tuned.ndcg_at_10" in report_run.data.metrics
    training_run = next(r for r in runs if r.data.tags["dagster.asset_key"] == "embedding_checkpoint")
    assert "train_loss" in training_run.data.metrics and "dev_ndcg_at_10" in training_run.data.metrics
    reranker_run = next(r for r in runs if r.data.tags["dagster.asset_key"] == "reranker_adapter")
    assert "trainable_parameters" in reranker_run.data.metrics and "dev_ndcg_at_10" in reranker_run.data.metrics
    assert "reranker_adapter/adapter" in {a.path for a in client.list_artifacts(reranker_run.info.run_id, "reranker_adapter")}
    assert "embedding_checkpoint/model" in {a.path for a in client.list_artifacts(training_run.info.run_id, "embedding_checkpoint")}
    assert {a.path for a in client.list_artifacts(report_run.info.run_id, "evaluation_report")} >= {
        "evaluation_report/report.html", "evaluation_report/report.json"}


def test_release_gate_blocks_a_worse_challenger(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    """A gate no challenger can pass (it must beat the champion by a full point on every metric)
    fails its blocking check, so champion_release does not run and the champion stays."""
    from domret_pipeline.registry import Registry

    with dg.instance_for_test() as instance:
        assert materialize(tmp_path, tiny_encoder, mlflow_uri, run_config(small_dataset, tiny_encoder), instance).success
        registry = Registry(mlflow_uri, f"test-{tmp_path.name}")
        champion = registry.champion()
        strict = run_config(small_dataset, tiny_encoder)
        strict["ops"]["serving_config"]["config"]["top_n"] = 2  # a different bundle
        strict["ops"]["hard_negatives"]["config"]["retriever"] = "champion"  # mine with what serves
        # ... and check candidates with the champion's reranker (a margin that keeps them all: the
        # tiny reranker is noise; what it removes is tested in test_mining)
        strict["ops"]["hard_negatives"]["config"].update({"cross_encoder": "champion", "cross_encoder_margin": -1000.0})
        strict["ops"]["evaluation_report"]["config"].update({f"margin_{m}": -1.0 for m in MARGINS})
        result = materialize(tmp_path, tiny_encoder, mlflow_uri, strict, instance, raise_on_error=False)
        gate = next(c for c in result.get_asset_check_evaluations() if c.check_name == "release_gate")
        assert not gate.passed and gate.metadata["reference"].text == "champion"
        materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                        for e in result.get_asset_materialization_events()}
        assert "evaluation_report" in materialized and "champion_release" not in materialized
        assert registry.champion().version == champion.version
        mined = next(e.event_specific_data.materialization for e in result.get_asset_materialization_events()
                     if e.event_specific_data.materialization.asset_key.to_user_string() == "hard_negatives")
        manifest = read_manifest(mined.metadata["artifact_path"].value, HardNegativesManifest)
        assert manifest.mined_with["retriever"] == "champion" and manifest.mined_with["version"] == champion.version
        champion_bundle = json.loads((Path(ArtifactRef(**champion.serving_config).path) / "serving.json").read_text())
        assert manifest.cross_checked_with == {"source": "champion", "version": champion.version,
                                               "reranker_adapter": champion_bundle["artifacts"]["reranker_adapter"]["sha256"]}
        assert manifest.cross_checked > 0 and mined.metadata["cross_checked_candidates"].value == manifest.cross_checked
        assert all("cross_score" in n for line in (Path(mined.metadata["artifact_path"].value) / "mined.jsonl").open()
                   for n in json.loads(line)["negatives"] if n["source"] != "random")


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


def test_external_frozen_test_set_replaces_hashed_split(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    root = small_dataset["root"]
    (root / "frozen_queries.jsonl").write_text(json.dumps({"_id": "f1", "text": "Lyon forklift speed"}) + "\n")
    (root / "frozen_qrels.tsv").write_text("f1\tfl-b\t1\n")
    config = run_config(small_dataset, tiny_encoder, frozen_test_queries_path=str(root / "frozen_queries.jsonl"),
                        frozen_test_qrels_path=str(root / "frozen_qrels.tsv"))
    result = materialize(tmp_path, tiny_encoder, mlflow_uri, config)
    report_ref = ArtifactRef.from_json((tmp_path / "refs" / "evaluation_report.json").read_text())
    report = json.loads(Path(report_ref.path, "report.json").read_text())
    assert result.success and report["info"]["n_queries"] == 1


def test_cli_runs_the_job_and_prints_the_report(tmp_path, tiny_encoder, small_dataset):
    import yaml

    config = run_config(small_dataset, tiny_encoder)
    config["resources"] = {"embedding_model": {"config": {"model_name_or_path": str(tiny_encoder), "max_seq_length": 128}}}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "DOMRET_HOME": str(tmp_path / "domret")}
    (tmp_path / "dagster").mkdir()
    cli = [sys.executable, "-m", "domret_pipeline.cli"]
    run = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| dense_tuned |" in run.stdout and "| bm25 |" in run.stdout
    report = subprocess.run([*cli, "report", "--json"], capture_output=True, text=True, env=env, check=True)
    assert json.loads(report.stdout)["info"]["split"] == "test"
    # domret search serves the latest bundle, and the bundle of a named run
    found = subprocess.run([*cli, "search", "Leeds forklift speed", "who approves exceptions", "--json", "--top-n", "2"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    results = json.loads(found.stdout)["results"]
    assert [r["query"] for r in results] == ["Leeds forklift speed", "who approves exceptions"]
    hit = results[0]["hits"][0]
    assert hit["rank"] == 1 and hit["doc_id"] and hit["end"] > hit["start"] and "final" in hit["scores"]
    assert "total" in results[0]["timings"]
    run_id = run.stdout.split()[1]
    named = subprocess.run([*cli, "search", "Leeds forklift speed", "--run", run_id], capture_output=True, text=True, env=env,
                           timeout=300)
    assert named.returncode == 0 and "1. " in named.stdout, named.stderr[-3000:]
    missing = subprocess.run([*cli, "search", "x", "--run", "no-such-run"], capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and "no-such-run" in missing.stderr

    # a bad corpus makes the CLI fail with the file and line, and the old report stays
    config["ops"]["corpus_documents"]["config"]["path"] = str(tmp_path / "missing.jsonl")
    config_path.write_text(yaml.safe_dump(config))
    failed = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert failed.returncode == 1 and "corpus not found" in failed.stderr
    again = subprocess.run([*cli, "report", "--json"], capture_output=True, text=True, env=env, check=True)
    assert json.loads(again.stdout) == json.loads(report.stdout)

    # a second run with another bundle becomes champion v2; search follows the champion, and
    # one rollback brings v1 back
    def served_top_n():
        out = subprocess.run([*cli, "search", "forklift", "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)["serving"]["top_n"]

    assert served_top_n() == 3
    config["ops"]["corpus_documents"]["config"]["path"] = str(small_dataset["corpus"])
    config["ops"]["serving_config"]["config"]["top_n"] = 2
    config_path.write_text(yaml.safe_dump(config))
    second = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert served_top_n() == 2
    listing = subprocess.run([*cli, "promote"], capture_output=True, text=True, env=env, check=True).stdout
    assert "v1" in listing and "v2" in listing and "champion: v2" in listing
    back = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert back.returncode == 0 and "champion: v1" in back.stdout
    assert served_top_n() == 3
    again = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "no previous champion" in again.stderr
    # a challenger the gate rejects: the CLI says why, and the champion stays
    config["ops"]["serving_config"]["config"]["top_n"] = 4
    config["ops"]["evaluation_report"]["config"].update({f"margin_{m}": -1.0 for m in MARGINS})
    config_path.write_text(yaml.safe_dump(config))
    blocked = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert blocked.returncode == 1 and "Release gate against the champion: FAILED" in blocked.stderr, blocked.stderr[-2000:]
    assert served_top_n() == 3


def test_cli_selection_resolves_downstream_and_rejects_unknown_assets():
    import pytest

    from domret_pipeline.cli.common import asset_selection

    names = lambda spec: sorted(k.to_user_string() for k in asset_selection(defs, spec))  # noqa: E731
    assert names("reranker_adapter+") == ["champion_release", "evaluation_report", "labeling_queue", "reranker_adapter",
                                          "serving_config"]
    assert names("hard_negatives, faiss_index") == ["faiss_index", "hard_negatives"]
    with pytest.raises(SystemExit, match="unknown asset 'nope'"):
        asset_selection(defs, "nope+")


def test_feedback_loop_end_to_end(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    """Import feedback, tick the sensor, execute the run it requests, and find a new model
    version that names the feedback ids it learned from."""
    from domret_pipeline.registry import Registry
    from domret_pipeline.sensors import feedback_sensor

    resources = resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset, [
        {"query": "Leeds forklift speed", "doc_id": "fl-a", "label": "relevant", "user": "ana"},
        {"query": "speed limit for forklifts in Leeds aisles", "chunk_id": "fl-a#0", "label": "relevant"},
        {"query": "Leeds forklift speed", "doc_id": "fl-b", "label": "not_relevant"},
    ])

    with dg.instance_for_test() as instance:
        request = feedback_sensor(dg.build_sensor_context(instance=instance, resources={"feedback": resources["feedback"]}))
        assert isinstance(request, dg.RunRequest) and request.run_key == "feedback-1-3"
        result = dg.materialize([*ASSETS, *ALL_CHECKS], resources=resources, run_config=request.run_config,
                                instance=instance, tags=request.tags)
        assert result.success and publish(tmp_path, result.run_id, mlflow_uri).published
        events = {m.asset_key.to_user_string(): m for m in
                  (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    labels_meta = events["labeled_queries"].metadata
    assert labels_meta["feedback_labels_used"].value == 3 and labels_meta["feedback_new_judgements"].value == 2
    mined = events["hard_negatives"].metadata
    assert mined["negative_sources"].value.count("feedback") == 1
    version = Registry(mlflow_uri, f"test-{tmp_path.name}").champion()
    assert version.tags["domret.feedback_ids"] == "1-3" and version.tags["domret.feedback_labels"] == "3"
    assert version.tags["domret.labeled_queries"] == events["labeled_queries"].metadata["content_sha256"].value
    queue = [json.loads(l) for l in (Path(events["labeling_queue"].metadata["artifact_path"].value) / "queue.jsonl")
             .read_text().splitlines()]
    assert queue and all({"query", "reasons", "disagreement", "margin", "abstained"} <= set(r) for r in queue)


def test_a_rebuild_reads_the_embedding_cache_and_records_the_precision(tmp_path, tiny_encoder, tiny_reranker_base,
                                                                        mlflow_uri, small_dataset):
    """Re-materializing the base index over unchanged chunks and encoder encodes nothing; the
    manifest and the metadata carry the precision chosen by the parity check."""
    home = tmp_path / "home"
    config = run_config(small_dataset, tiny_reranker_base)
    selected = [a for a in ASSETS if a.key.to_user_string() in
                ("corpus_documents", "corpus_chunks", "labeled_queries", "base_faiss_index")]
    resources = make_resources(home, tiny_encoder, mlflow_uri)
    ops = {k: v for k, v in config["ops"].items() if k in ("corpus_documents", "corpus_chunks", "labeled_queries")}
    events = []
    for _ in range(2):
        result = dg.materialize(selected, resources=resources, run_config={"ops": ops})
        events.append(next(e for e in result.get_asset_materialization_events()
                           if e.asset_key.to_user_string() == "base_faiss_index").materialization.metadata)
    first, second = events
    n = first["vectors"].value
    assert first["chunks_encoded"].value == n and first["embedding_cache_hits"].value == 0
    assert second["chunks_encoded"].value == 0 and second["embedding_cache_hits"].value == n
    manifest = read_manifest(second["artifact_path"].value, DenseIndexManifest)
    assert manifest.precision == second["precision"].value
    assert manifest.precision_choice["requested"] == "auto"
    assert "reused" not in first["precision_reason"].value and "reused" in second["precision_reason"].value
    assert manifest.precision_choice["trials"][0]["precision"] == "fp32"
    # The same index, byte for byte (the manifests differ in the measured timings and cache counts).
    index_bytes = [(Path(e["artifact_path"].value) / "index.faiss").read_bytes() for e in events]
    assert index_bytes[0] == index_bytes[1]
