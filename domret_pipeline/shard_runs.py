"""Launch the shard partitions' runs on a Dask cluster, and find the shards that need one.

In a team deployment the Dagster daemon launches the partition runs (a backfill over the stale
shards from the UI, or `dagster job backfill -j domret_encode_shards`) and each run's step goes
to the Dask scheduler named in the run config. :func:`encode_shards` does the same
from one process for `domret shards encode`, the tests and the benchmark: one run per shard,
up to ``parallel`` at a time (each waits on its Dask worker), each published when it succeeds,
as the ``domret_publish`` sensor publishes a daemon-launched run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .run_transactions import Stores, finish_run

SHARD_JOB = "domret_encode_shards"


def shard_job():
    """The shard job, rebuilt by name in each Dask worker (``dagster.reconstructable`` target)."""
    from .definitions import defs

    return defs.resolve_job_def(SHARD_JOB)


@dataclass
class ShardRun:
    shard: str
    run_id: str
    success: bool
    chunks: int = 0
    encoded: int = 0
    published: str = ""


def published_input_hashes(refs_dir: str | Path, asset: str) -> dict[str, str]:
    """``{shard: input hash}`` of the published partitions of ``asset``."""
    from .core.artifacts import ArtifactRef
    from .core.retrieval.shards import read_manifest

    out = {}
    for path in sorted(Path(refs_dir, asset).glob("shard-*.json")):
        ref = ArtifactRef.from_json(path.read_text(encoding="utf-8"))
        if Path(ref.path).is_dir():
            out[path.stem] = read_manifest(ref.path).input_sha256
    return out


def stale_shards(refs_dir: str | Path, asset: str, chunks, encoder_path: str, precision: str, with_title: bool,
                 max_seq_length: int, count: int) -> list[str]:
    """The shards whose chunks, encoder, precision or rendering differ from what their published
    partition was encoded from (or that have none): the only ones worth a run."""
    from .core.data.chunking import passage_text
    from .core.retrieval.encoder import model_fingerprint
    from .core.retrieval.shards import chunks_of_shard, shard_input_hash, shard_names, stale

    fingerprint = model_fingerprint(encoder_path)
    current = []
    for shard in shard_names(count):
        mine = chunks_of_shard(chunks, shard, count)
        current.append((shard, shard_input_hash(fingerprint, precision, with_title, max_seq_length,
                                                [c.chunk_id for c in mine], [passage_text(c, with_title) for c in mine])))
    return stale(current, published_input_hashes(refs_dir, asset))


def _run_shard(instance_ref, shard: str, asset: str, run_config: dict) -> tuple[str, bool, int, int]:
    """One shard's run, in its own process (see :func:`encode_shards`): (run id, success, chunks,
    chunks encoded)."""
    import dagster as dg
    from dagster._core.instance import DagsterInstance

    with DagsterInstance.from_ref(instance_ref) as instance:
        result = dg.execute_job(dg.reconstructable(shard_job), instance, run_config=run_config,
                                tags={"dagster/partition": shard}, asset_selection=[dg.AssetKey(asset)])
        chunks = encoded = 0
        for event in result.get_asset_materialization_events():
            meta = event.event_specific_data.materialization.metadata
            chunks, encoded = meta["chunks"].value, meta["chunks_encoded"].value
        return result.run_id, result.success, chunks, encoded


def encode_shards(instance, stores: Stores, asset: str, shards: list[str], run_config: dict, scheduler: str,
                  parallel: int) -> list[ShardRun]:
    """One run of the shard job per shard (``dagster/partition`` tag), its step on the Dask
    cluster at ``scheduler``; each successful run is published, one at a time, here.

    Each run is launched from its own process, not a thread: Dagster builds every run's log
    manager with ``logging.config.dictConfig``, which takes the logging module's lock and then
    every handler's, while another run's thread may hold a handler's lock and wait for the
    module's: two runs in threads of one process deadlocked (seen with ``domret shards encode``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    run_config = {**run_config, "execution": {"config": {"address": scheduler}}}
    ref = instance.get_ref()
    runs = []
    with ProcessPoolExecutor(max(1, parallel), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [(shard, pool.submit(_run_shard, ref, shard, asset, run_config)) for shard in shards]
        for shard, future in futures:
            run_id, success, chunks, encoded = future.result()
            run = ShardRun(shard, run_id, success, chunks, encoded)
            if success:
                run.published = finish_run(stores, run_id).message()
            runs.append(run)
    return runs


def local_cluster(workers: int):
    """A Dask LocalCluster of ``workers`` single-threaded processes (the local mode of the
    executor; torch in each worker uses one thread, so workers do not fight over cores)."""
    import signal
    import threading

    from distributed import LocalCluster

    # Worker processes inherit an ignored SIGTERM (a launcher's, e.g. a background job's), and so
    # do the `tail -F` processes Dagster's compute-log capture starts for each step and stops with
    # SIGTERM: ignored, each step then waits 2 x 30 s for them (seen in CI: a minute a shard).
    # The workers start with SIGTERM's default action.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL) if main_thread else None
    try:
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    finally:
        if previous is not None:  # None: a handler not set from Python, which cannot be put back from here
            signal.signal(signal.SIGTERM, previous)


def resources_run_config(artifacts_root: str, refs_dir: str, model: str | None = None, **model_fields) -> dict:
    """Run config pointing a shard run's resources at these stores (a run's step rebuilds the
    definitions in a Dask worker, so the stores travel in the run config, not as objects)."""
    resources = {"artifacts": {"config": {"root": artifacts_root}},
                 "artifact_io_manager": {"config": {"base_dir": refs_dir}}}
    if model:
        resources["embedding_model"] = {"config": {"model_name_or_path": model, **model_fields}}
    return {"resources": resources}


def summary(runs: list[ShardRun]) -> str:
    return json.dumps([run.__dict__ for run in runs], indent=1)
