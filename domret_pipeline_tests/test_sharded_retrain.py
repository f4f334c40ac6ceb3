"""A retrain at scale (issue 16, item 4): with the tuned index built from shards, feedback starts
a chain of three stages, each requested by a sensor once the stage before succeeded and was
published. The daemon's part (launching each request) is played here: every request is run
as it is asked for (its assets, partition, run config and tags), in process (the Dask executor
has its own test, test_embedding_shards.py)."""

import json
from pathlib import Path

import dagster as dg
import numpy as np
import yaml

from domret_pipeline.checks import ALL_CHECKS
from domret_pipeline.config import corpus_shard_count
from domret_pipeline.core.retrieval.dense_index import DenseIndex, all_vectors
from domret_pipeline.core.retrieval.shards import shard_names
from domret_pipeline.core.manifests import DenseIndexManifest, read_manifest
from domret_pipeline.definitions import ASSETS, SHARD_ASSETS, defs
from domret_pipeline.resources import FeedbackStoreResource
from domret_pipeline.sensors import feedback_sensor
from domret_pipeline.sharded_retrain import CHAIN_TAG, SCHEDULER_ENV, STAGE_TAG, sharded_retrain_sensor

from .conftest import make_resources, publish
from .graph_helpers import run_config
from .test_retrain_schedule import FEEDBACK

BASE = ("corpus_documents", "corpus_chunks", "labeled_queries", "base_faiss_index", "bm25_index")


def _ref(home: Path, asset: str) -> dict:
    return json.loads((home / "refs" / f"{asset}.json").read_text())


def test_feedback_on_a_sharded_deployment_retrains_in_three_stages_each_after_the_last_is_published(
        tmp_path, tiny_encoder, small_dataset, mlflow_uri, monkeypatch):
    from domret_pipeline.core.feedback.files import read_feedback_file

    home = tmp_path / "home"
    config = run_config(small_dataset, tiny_encoder)
    config["ops"]["faiss_index"] = {"config": {"vectors_from": "shards"}}
    deployment = tmp_path / "retrain.yaml"
    deployment.write_text(yaml.safe_dump(config))
    resources = make_resources(home, tiny_encoder, mlflow_uri)
    feedback = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db", retrain_min_labels=3,
                                     retrain_run_config=str(deployment))
    resources["feedback"] = feedback
    store = feedback.store()
    store.migrate()
    (tmp_path / "feedback.jsonl").write_text("".join(json.dumps(r) + "\n" for r in FEEDBACK))
    store.add(read_feedback_file(tmp_path / "feedback.jsonl"))

    def launch(request: dg.RunRequest):
        """What the daemon does with a request (in process: no execution config)."""
        result = dg.materialize([*ASSETS, *SHARD_ASSETS, *ALL_CHECKS], selection=request.asset_selection, resources=resources,
                                run_config={k: v for k, v in request.run_config.items() if k != "execution"},
                                instance=instance, tags=request.tags, partition_key=request.partition_key)
        assert result.success
        return result

    def chain_tick():
        context = dg.build_sensor_context(instance=instance, resources=resources, repository_def=defs.get_repository_def())
        return sharded_retrain_sensor(context)

    with dg.instance_for_test() as instance:
        first = dg.materialize([a for a in ASSETS if a.key.to_user_string() in BASE], resources=resources,
                               run_config={"ops": {k: v for k, v in config["ops"].items() if k in BASE}}, instance=instance)
        assert publish(home, first.run_id, mlflow_uri).published
        assert "no sharded retrain started" in chain_tick().skip_message

        # without a Dask scheduler the chain cannot run: say so, keep the labels for later
        monkeypatch.delenv(SCHEDULER_ENV, raising=False)
        context = dg.build_sensor_context(instance=instance, resources={"feedback": feedback})
        skipped = feedback_sensor(context)
        assert SCHEDULER_ENV in skipped.skip_message and context.cursor is None
        monkeypatch.setenv(SCHEDULER_ENV, "tcp://dask-scheduler.test:8786")

        # 1. the feedback starts the chain: labels, negatives, checkpoint; nothing else
        context = dg.build_sensor_context(instance=instance, resources={"feedback": feedback})
        request = feedback_sensor(context)
        chain = request.tags[CHAIN_TAG]
        assert (chain, request.run_key) == ("feedback-1-3", "feedback-1-3-checkpoint")
        assert (request.job_name, request.tags[STAGE_TAG], request.tags[CHAIN_TAG]) == ("domret_retrain", "checkpoint", chain)
        assert {k.to_user_string() for k in request.asset_selection} == {"labeled_queries", "pseudo_queries",
                                                                          "hard_negatives", "embedding_checkpoint"}
        assert set(request.run_config["ops"]) == {"labeled_queries", "hard_negatives", "embedding_checkpoint"}
        assert request.run_config["ops"]["labeled_queries"]["config"]["use_feedback"] is True
        checkpoint_run = launch(request)
        assert "embedding_checkpoint" not in {p.stem for p in (home / "refs").glob("*.json")}  # not published yet

        # 2. once it succeeded, the sensor publishes it and asks for every tuned shard on Dask
        shard_requests = chain_tick()
        shards = shard_names(corpus_shard_count())
        assert [r.partition_key for r in shard_requests] == shards
        assert all(r.job_name == "domret_encode_shards" and r.tags[STAGE_TAG] == "shards" and r.tags[CHAIN_TAG] == chain
                   and r.run_config["execution"]["config"]["address"] == "tcp://dask-scheduler.test:8786"
                   for r in shard_requests)
        checkpoint = _ref(home, "embedding_checkpoint")
        assert checkpoint["sha256"] == checkpoint_run.output_for_node("embedding_checkpoint").sha256
        assert [r.run_key for r in chain_tick()] == [r.run_key for r in shard_requests]  # asked again: same keys
        for shard_request in shard_requests[:-1]:
            launch(shard_request)
        assert f"{len(shards) - 1} of {len(shards)} shard runs done" in chain_tick().skip_message

        # 3. all shards done: the index from the shards and everything after it, through the gate
        launch(shard_requests[-1])
        index_request = chain_tick()
        selected = {k.to_user_string() for k in index_request.asset_selection}
        assert {"faiss_index", "reranker_adapter", "serving_config", "evaluation_report"} <= selected
        assert not selected & {"embedding_checkpoint", "labeled_queries", "tuned_chunk_embeddings"}
        assert index_request.run_config["ops"]["faiss_index"]["config"]["vectors_from"] == "shards"
        index_run = launch(index_request)
        assert publish(home, index_run.run_id, mlflow_uri).published
        assert "nothing left to launch" in chain_tick().skip_message

    # the index was assembled from the new checkpoint's shards: it matches encoding in process
    served = DenseIndex.load(Path(_ref(home, "faiss_index")["path"]))
    manifest = read_manifest(_ref(home, "faiss_index")["path"], DenseIndexManifest)
    assert manifest.embedding_checkpoint == checkpoint["sha256"] and manifest.extra["vectors_from"] == "shards"
    with dg.instance_for_test() as instance:
        in_process = dg.materialize(ASSETS, selection=["faiss_index"], resources=resources, instance=instance,
                                    run_config={"ops": {"faiss_index": {"config": {"precision": "fp32",
                                                                                   "use_embedding_cache": False}}}})
    encoded = DenseIndex.load(Path(in_process.output_for_node("faiss_index").path))
    assert served.chunk_ids == encoded.chunk_ids
    np.testing.assert_allclose(all_vectors(served), all_vectors(encoded), atol=1e-5)


def test_the_chain_stops_with_the_reason_when_a_stage_fails(tmp_path, tiny_encoder, mlflow_uri):
    @dg.asset
    def step(context) -> None:
        if context.run.tags.get("fail"):
            raise RuntimeError("worker lost")

    resources = make_resources(tmp_path / "home", tiny_encoder, mlflow_uri)
    resources["feedback"] = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db")

    def run(chain: str, stage: str, **tags):
        return dg.materialize([step], instance=instance, raise_on_error=False,
                              tags={CHAIN_TAG: chain, STAGE_TAG: stage, **tags})

    def chain_tick():
        context = dg.build_sensor_context(instance=instance, resources=resources, repository_def=defs.get_repository_def())
        return sharded_retrain_sensor(context)

    with dg.instance_for_test() as instance:
        failed = run("feedback-1-3", "checkpoint", fail="1")
        tick = chain_tick()
        assert isinstance(tick, dg.SkipReason) and "chain feedback-1-3 stopped" in tick.skip_message
        assert failed.run_id in tick.skip_message
        # the next chain's checkpoint succeeded, one of its shard runs failed
        assert run("feedback-4-6", "checkpoint").success and run("feedback-4-6", "shards").success
        failed = run("feedback-4-6", "shards", fail="1")
        tick = chain_tick()
        assert isinstance(tick, dg.SkipReason) and "chain feedback-4-6 stopped" in tick.skip_message
        assert failed.run_id in tick.skip_message and "domret shards encode --encoder tuned" in tick.skip_message
