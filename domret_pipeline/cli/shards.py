"""``domret shards encode`` and ``domret bench shards``: the corpus encoded in shards on Dask.

    domret shards encode [--encoder base|tuned] [--workers 2 | --scheduler tcp://host:8786] [--all]
    domret bench shards --config configs/scifact.yaml --workers 1 2

``shards encode`` launches one run of ``domret_encode_shards`` per *stale* shard (its chunks,
encoder, precision or rendering differ from its published partition; ``--all``: every shard) on
a Dask LocalCluster of ``--workers`` processes, or on a running scheduler, and publishes each;
then ``domret run`` with ``vectors_from: shards`` under base_faiss_index (faiss_index for the
tuned encoder) assembles the index from them.

``bench shards`` materializes the corpus of ``--config`` in a throw-away home, then for each
worker count encodes every shard from scratch (no embedding cache) on a fresh LocalCluster and
prints the wall time of the encoding (cluster start-up apart) and its ratio to the first count.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from .common import ensure_dagster_home, offline, stamp


def _chunks(refs: Path):
    from ..core.data.serialization import read_chunks
    from .common import artifact_dir

    return read_chunks(artifact_dir(refs, "corpus_chunks") / "chunks.jsonl")


def cmd_shards_encode(args: argparse.Namespace) -> int:
    ensure_dagster_home()
    offline()
    from dagster import DagsterInstance

    from ..config import IndexConfig, ShardEncodingConfig, corpus_shard_count
    from ..core.retrieval.shards import shard_names
    from ..definitions import defs
    from ..run_config import load_run_config
    from ..run_transactions import stores_from_resources
    from ..shard_runs import encode_shards, local_cluster, stale_shards, summary
    from .common import artifact_dir

    run_config = load_run_config(args.config) if args.config else {}
    stores = stores_from_resources(defs.resources, run_config)
    refs, count = Path(stores.refs_dir), corpus_shard_count()
    asset = f"{args.encoder}_chunk_embeddings"
    shard_config = ShardEncodingConfig(**((run_config.get("ops") or {}).get(asset) or {}).get("config", {}))
    if args.encoder == "base":
        model = defs.resources["embedding_model"]
        from ..core.retrieval.encoder import resolve_model_path

        encoder_path, max_len = resolve_model_path(model.model_name_or_path), model.max_seq_length
        with_title = IndexConfig().with_title if shard_config.with_title is None else shard_config.with_title
    else:
        from ..core.artifacts import read_json
        from ..core.manifests import DenseIndexManifest, read_manifest

        checkpoint = artifact_dir(refs, "embedding_checkpoint")
        encoder_path = str(checkpoint / "model")
        max_len = read_json(checkpoint / "card.json")["training"]["max_seq_length"]
        with_title = read_manifest(artifact_dir(refs, "base_faiss_index"), DenseIndexManifest).with_title
    shards = shard_names(count) if args.all else stale_shards(
        refs, asset, _chunks(refs), encoder_path, shard_config.precision, with_title, max_len, count)
    if not shards:
        print(f"every {asset} shard is current: nothing to encode")
        return 0
    print(f"encoding {len(shards)} of {count} shards of {asset}: {', '.join(shards)}")
    cluster = None if args.scheduler else local_cluster(args.workers)
    try:
        runs = encode_shards(DagsterInstance.get(), stores, asset, shards, run_config,
                             args.scheduler or cluster.scheduler_address, args.workers)
    finally:
        if cluster is not None:
            cluster.close()
    print(summary(runs))
    return 0 if all(r.success for r in runs) else 1


def cmd_bench_shards(args: argparse.Namespace) -> int:
    import dagster as dg

    offline()
    from ..config import ShardEncodingConfig, corpus_shard_count
    from ..core.retrieval.shards import shard_names
    from ..assets.common import ARTIFACT_IO
    from ..definitions import ASSETS, defs
    from ..io_manager import ArtifactRefIOManager
    from ..resources import ArtifactStore, MlflowTracker
    from ..run_config import load_run_config
    from ..run_transactions import Stores, finish_run
    from ..shard_runs import encode_shards, local_cluster, resources_run_config

    config = load_run_config(args.config)
    with tempfile.TemporaryDirectory(prefix="domret-bench-shards-") as work:
        home = Path(work)
        (home / "dagster").mkdir()
        stores = Stores(str(home / "refs"), str(home / "artifacts"), None, "unused")
        res = resources_run_config(stores.artifacts_root, stores.refs_dir)
        data_ops = {k: v for k, v in config.get("ops", {}).items() if k in ("corpus_documents", "corpus_chunks")}
        if args.limit_docs:  # the first N documents of a JSONL corpus (say so with the figures)
            source = Path(data_ops["corpus_documents"]["config"]["path"])
            lines = source.read_text(encoding="utf-8").splitlines()[: args.limit_docs]
            (home / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
            data_ops["corpus_documents"] = {"config": {**data_ops["corpus_documents"]["config"],
                                                       "path": str(home / "corpus.jsonl")}}
        with dg.DagsterInstance.local_temp(tempdir=str(home / "dagster")) as instance:
            resources = {**defs.resources}
            resources.update({"artifacts": ArtifactStore(root=stores.artifacts_root),
                              "mlflow": MlflowTracker(tracking_uri=f"sqlite:///{home}/mlflow.db",
                                                      artifact_location=str(home / "mlflow-artifacts")),
                              ARTIFACT_IO: ArtifactRefIOManager(base_dir=stores.refs_dir)})
            corpus = ("corpus_documents", "corpus_chunks")
            result = dg.materialize([a for a in ASSETS if a.key.to_user_string() in corpus],
                                    resources=resources, run_config={"ops": data_ops}, instance=instance)
            assert result.success and finish_run(stores, result.run_id).published
            n_chunks = len(_chunks(home / "refs"))
            rows, first = [], None
            shard_config = {**res, "ops": {"base_chunk_embeddings": {"config": {
                "use_embedding_cache": False, **({"precision": args.precision} if args.precision else {})}}}}
            for workers in args.workers:
                started = time.perf_counter()
                with local_cluster(workers) as cluster:
                    startup = time.perf_counter() - started
                    started = time.perf_counter()
                    runs = encode_shards(instance, stores, "base_chunk_embeddings", shard_names(corpus_shard_count()),
                                         shard_config, cluster.scheduler_address, workers)
                    seconds = time.perf_counter() - started
                if not all(r.success for r in runs):
                    print(json.dumps({"workers": workers, "failed": [r.shard for r in runs if not r.success]}))
                    return 1
                first = first or seconds
                rows.append({"workers": workers, "cluster_start_s": round(startup, 1), "encode_wall_s": round(seconds, 1),
                             "chunks_per_s": round(n_chunks / seconds, 1), "speedup_vs_first": round(first / seconds, 2),
                             "chunks_encoded": sum(r.encoded for r in runs)})
                print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({**stamp(args), "cpus": os.cpu_count(), "chunks": n_chunks, "shards": corpus_shard_count(),
                      "precision": args.precision or ShardEncodingConfig().precision, "rows": rows}))
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    shards = commands.add_parser("shards", help="encode the corpus shards on a Dask cluster")
    kinds = shards.add_subparsers(dest="kind", required=True)
    e = kinds.add_parser("encode", help="one run per stale shard on Dask, each published")
    e.add_argument("--encoder", choices=["base", "tuned"], default="base")
    e.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (and runs at once)")
    e.add_argument("--scheduler", help="a running Dask scheduler's address instead of a LocalCluster")
    e.add_argument("--config", help="run config YAML (resources, the shard asset's config)")
    e.add_argument("--all", action="store_true", help="every shard, not only the stale ones")
    e.set_defaults(func=cmd_shards_encode)
    return [e]


def add_bench_parser(kinds) -> argparse.ArgumentParser:
    b = kinds.add_parser("shards", help="corpus encoding in shards on 1, 2, ... Dask workers: wall time and ratio")
    b.add_argument("--config", required=True)
    b.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    b.add_argument("--limit-docs", type=int, help="only the first N documents of the corpus (a JSONL file)")
    b.add_argument("--precision", choices=["fp32", "bf16", "int8"],
                   help="the shards' inference precision (default: the shard asset's default, fp32)")
    b.set_defaults(func=cmd_bench_shards)
    return b
