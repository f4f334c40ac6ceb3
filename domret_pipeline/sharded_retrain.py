"""A retrain at scale, launched by the daemon as a chain of three stages.

When the deployment's retrain run config builds the tuned index from shards
(``faiss_index: {config: {vectors_from: shards}}``), one in-process retrain cannot do it: the
new checkpoint's shards are encoded by the shard job on the Dask cluster, between training and
the index. The feedback sensor and the weekly schedule then start a chain instead of one run:

1. ``checkpoint``: ``domret_retrain`` on the assets up to the new embedding checkpoint
   (labels with the feedback, negatives, the checkpoint);
2. ``shards``: one ``domret_encode_shards`` run per corpus shard of ``tuned_chunk_embeddings``
   (a new checkpoint makes every tuned shard stale; inside a shard the embedding cache keys on
   the encoder, so nothing is skipped wrongly), each step on a Dask worker;
3. ``index``: ``domret_retrain`` on ``faiss_index`` and everything downstream (reranker,
   selector, serving bundle, report and release gate), the index assembled from the shards.

:func:`sharded_retrain_sensor` moves a chain on: it reads the chain's runs from the instance by
their tags (no cursor to lose), publishes the finished stage's runs itself before launching the
next (publication is idempotent, so racing the ``domret_publish`` sensor is harmless, and the
next stage reads what the last one wrote, not the previous references), and stops with a
reason on a failed run. Run keys are per chain and stage, so a re-evaluated tick never launches
a stage twice.
"""

from __future__ import annotations

import os

import dagster as dg

from .io_manager import ArtifactRefIOManager
from .jobs import PIPELINE_ASSETS, encode_shards_job, retrain_job
from .resources import ArtifactStore, FeedbackStoreResource, MlflowTracker

CHAIN_TAG = "domret/retrain-chain"  # the chain's id: the feedback run key, or the schedule tick's
STAGE_TAG = "domret/retrain-stage"  # checkpoint | shards | index
SCHEDULER_ENV = "DOMRET_DASK_SCHEDULER"  # the Dask scheduler the shard runs' steps go to
# pseudo_queries: new labels change the held-out documents, and hard_negatives mines its pairs
CHECKPOINT_STAGE = ("labeled_queries", "pseudo_queries", "hard_negatives", "embedding_checkpoint")
INDEX_STAGE = dg.AssetSelection.assets("faiss_index").downstream()
SHARD_ASSET = "tuned_chunk_embeddings"


def is_sharded(run_config: dict) -> bool:
    """Whether a retrain run config builds the tuned index from shards."""
    index = ((run_config.get("ops") or {}).get("faiss_index") or {}).get("config") or {}
    return index.get("vectors_from") == "shards"


def stage_request(run_config: dict, keys, chain: str, stage: str, tags: dict | None = None,
                  job_name: str | None = None) -> dg.RunRequest:
    """A run of ``retrain_job`` (or ``job_name``) on the asset ``keys``, its config restricted to them."""
    from .run_config import selected_run_config

    keys = sorted(keys, key=lambda k: k.to_user_string())
    config = selected_run_config({**run_config, "ops": dict(run_config.get("ops") or {})}, keys)
    return dg.RunRequest(run_key=f"{chain}-{stage}", run_config=config, asset_selection=keys, job_name=job_name,
                         tags={**(tags or {}), CHAIN_TAG: chain, STAGE_TAG: stage})


def checkpoint_request(run_config: dict, chain: str, tags: dict) -> dg.RunRequest | dg.SkipReason:
    """The chain's first run (what the feedback sensor and the schedule request when sharded);
    a skip when no Dask scheduler is configured, since the second stage could not run."""
    if not os.environ.get(SCHEDULER_ENV):
        return dg.SkipReason(f"the retrain config builds faiss_index from shards, but {SCHEDULER_ENV} names no Dask "
                             "scheduler for the shard runs: set it (e.g. tcp://dask-scheduler:8786)")
    return stage_request(run_config, [dg.AssetKey(n) for n in CHECKPOINT_STAGE], chain, "checkpoint", tags,
                         job_name=retrain_job.name)


def _runs(instance, chain: str, stage: str) -> list:
    return list(instance.get_runs(filters=dg.RunsFilter(tags={CHAIN_TAG: chain, STAGE_TAG: stage})))


def _failed(runs) -> list:
    return [r for r in runs if r.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)]


def _done(runs) -> bool:
    return all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


@dg.sensor(
    name="domret_sharded_retrain",
    jobs=[retrain_job, encode_shards_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,  # idle unless a chain was started: one tag query a tick
    description="Moves a sharded retrain on: new checkpoint -> its corpus shards on Dask -> the index from the "
                "shards and everything downstream, each stage launched when the one before succeeded and was published.",
)
def sharded_retrain_sensor(context: dg.SensorEvaluationContext, artifact_io_manager: ArtifactRefIOManager,
                           artifacts: ArtifactStore, mlflow: MlflowTracker, feedback: FeedbackStoreResource):
    from .config import corpus_shard_count
    from .core.retrieval.shards import shard_names
    from .run_transactions import _stores, finish_run
    from .sensors import retrain_run_config

    latest = list(context.instance.get_runs(filters=dg.RunsFilter(tags={STAGE_TAG: "checkpoint"}), limit=1))
    if not latest:
        return dg.SkipReason("no sharded retrain started")
    first = latest[0]
    chain = first.tags[CHAIN_TAG]
    carried = {k: v for k, v in first.tags.items() if k.startswith("domret/") and k not in (CHAIN_TAG, STAGE_TAG)}
    index_runs = _runs(context.instance, chain, "index")
    if index_runs:
        return dg.SkipReason(f"chain {chain}: index stage launched ({index_runs[0].run_id}, "
                             f"{index_runs[0].status.value}); nothing left to launch")
    if _failed([first]):
        return dg.SkipReason(f"chain {chain} stopped: its checkpoint run {first.run_id} {first.status.value}")
    if not _done([first]):
        return dg.SkipReason(f"chain {chain}: waiting for its checkpoint run {first.run_id} ({first.status.value})")

    shards = shard_names(corpus_shard_count())
    shard_runs = _runs(context.instance, chain, "shards")
    deployment = retrain_run_config(feedback, None)  # the deployment's YAML, as the first stage had it

    def publish(run):  # into the stores the run wrote to (its run config may override them)
        return finish_run(_stores(artifact_io_manager, artifacts, mlflow, run.run_config), run.run_id)

    if not shard_runs:
        outcome = publish(first)  # the shards must read this checkpoint, published
        if not outcome.published:
            return dg.SkipReason(f"chain {chain} stopped: its checkpoint run was not published: {outcome.message()}")
        shard_config = {"execution": {"config": {"address": os.environ.get(SCHEDULER_ENV, "")}},
                        **({"resources": deployment["resources"]} if deployment.get("resources") else {})}
        if (deployment.get("ops") or {}).get(SHARD_ASSET):
            shard_config["ops"] = {SHARD_ASSET: deployment["ops"][SHARD_ASSET]}
        return [dg.RunRequest(run_key=f"{chain}-shards-{shard}", partition_key=shard, job_name=encode_shards_job.name,
                              asset_selection=[dg.AssetKey(SHARD_ASSET)], run_config=shard_config,
                              tags={**carried, CHAIN_TAG: chain, STAGE_TAG: "shards"}) for shard in shards]
    failed = _failed(shard_runs)
    if failed:
        names = ", ".join(r.tags.get("dagster/partition", r.run_id) for r in failed)
        return dg.SkipReason(f"chain {chain} stopped: shard run(s) {names} failed; re-encode them with `domret shards "
                             "encode --encoder tuned`, then `domret run --job domret_retrain --select 'faiss_index+'`")
    if len(shard_runs) < len(shards) or not _done(shard_runs):
        finished = sum(r.status == dg.DagsterRunStatus.SUCCESS for r in shard_runs)
        return dg.SkipReason(f"chain {chain}: {finished} of {len(shards)} shard runs done")
    for run in shard_runs:  # each shard published (idempotent) before the index reads them
        outcome = publish(run)
        if not outcome.published:
            return dg.SkipReason(f"chain {chain} stopped: shard run {run.run_id} was not published: {outcome.message()}")
    graph = context.repository_def.asset_graph
    keys = INDEX_STAGE.resolve(graph) & PIPELINE_ASSETS.resolve(graph)
    return stage_request(deployment, keys, chain, "index", carried, job_name=retrain_job.name)
