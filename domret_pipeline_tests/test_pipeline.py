"""The asset graph, materialized in process on a small corpus with a tiny random encoder: the
definitions, the whole graph with its lineage and MLflow runs, the release gate, an external
frozen test set, the feedback loop and the embedding cache on a rebuild. Failed and
quarantined runs are in test_pipeline_failures, the `domret` command in test_pipeline_cli."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg

from domret_pipeline.checks import ALL_CHECKS
from domret_pipeline.core.artifacts import ArtifactRef
from domret_pipeline.core.manifests import DenseIndexManifest, HardNegativesManifest, read_manifest
from domret_pipeline.definitions import ASSETS, SHARD_ASSETS, defs

from .conftest import make_resources, publish
from .graph_helpers import ASSET_NAMES, MARGINS, materialize, resources_with_feedback, run_config
from .test_ui import assert_ui_metadata


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == set(ASSET_NAMES) | {
        "base_chunk_embeddings", "tuned_chunk_embeddings"}
    for asset in [*ASSETS, *SHARD_ASSETS]:
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
        assert set(serving["rows"]) == {"dense", "hybrid", "dense+rerank", "hybrid+rerank", "dense+prf", "hybrid+prf",
                                        "dense+prf+rerank", "hybrid+prf+rerank", "served"}
        assert all(set(r["metrics"]) == {"ndcg@10", "recall@10", "mrr@10"} for r in serving["rows"].values())
        assert any(r.startswith("rerank ") for r in serving["reasons"]) and serving["reasons"][-1].startswith("rewrite ")
        # the query rewrite's latency is in the table, whether dev switched it on or off
        rewrite_setup = "served" if "+prf" in serving["served"] else "served+prf"
        assert "rewrite" in serving["latency"][rewrite_setup]["stages"]
        assert {"ann", "bm25", "fusion", "rerank", "total"} <= set(serving["latency"]["hybrid+rerank@20"]["stages"])
        assert 0 < serving["latency"]["hybrid+rerank@20"]["stages"]["rerank"]["share_of_total"] < 1
        assert "Serving configurations" in events["evaluation_report"].metadata["report"].value
        # the dev choices behind the served models, as their cards record them (labels only by default)
        assert "| embedding checkpoint | labels |" in events["evaluation_report"].metadata["report"].value
        assert "| reranker pretraining | none |" in events["evaluation_report"].metadata["report"].value
        bundle = json.loads((Path(events["serving_config"].metadata["artifact_path"].value) / "serving.json").read_text())
        assert bundle["artifacts"]["reranker_adapter"]["sha256"] == events["reranker_adapter"].metadata["content_sha256"].value
        assert report["inputs"]["reranker_adapter"] == bundle["artifacts"]["reranker_adapter"]["sha256"]
        # the small dataset's only evidence is a test query's: no selector, and the answer step says so
        assert events["sentence_selector"].metadata["trained"].value is False
        assert "selector" not in bundle["answer"]["scorers_tried"]
        assert any(r.startswith("sentence selector not tried: ") for r in bundle["answer"]["reasons"])
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
            # the answer step cites only sentences of the chunks it read: coverage bounds recall
            assert system["metrics"]["citation_recall"] <= system["metrics"]["span_coverage"] <= 1.0
        assert (report_dir / "answers_challenger.jsonl").is_file() and (report_dir / "abstention_curve.png").is_file()
        assert "Release gate" in events["evaluation_report"].metadata["report"].value
        # prompt injection, measured on a planted copy of the corpus: counted, never followed extractively
        injection = report["injection"]["paths"]["extractive"]["total"]
        assert injection["probes"] == report["injection"]["n_probes"] == 6 * 4 and injection["followed"] == 0
        assert "### Injection probe" in events["evaluation_report"].metadata["report"].value
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
    assert "dense_tuned.ndcg_at_10" in report_run.data.metrics and "injection.extractive.followed" in report_run.data.metrics
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
