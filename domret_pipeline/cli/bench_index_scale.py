"""``domret bench index-scale``: flat, HNSW and the compressed index on synthetic vectors at scale.

    domret bench index-scale --vectors 1000000 --dim 384 [--hnsw-vectors 200000] [--threads 1]

Draws ``--vectors`` + ``--queries`` real-looking unit vectors (core.retrieval.synthetic_vectors:
topics, documents and chunks, matched to SciFact's MiniLM vectors) and holds the queries out
of the index. Each index is built as the FAISS assets build it (core.retrieval.index_build, with
the index settings' defaults, ``--factory`` overriding the compressed one) and measured:
- build seconds (training and adding; for the compressed index also the nprobe/efSearch tuning,
  which runs on held-out *corpus* vectors as in the asset, apart from the benchmark's queries);
- memory: bytes of the serialised index (what a server holds in RAM, id map aside);
- query latency p50/p95 in ms: one query per call (``single``, ``--latency-queries`` of them) and
  the whole query set in one call (``batch``, ms per query);
- recall@10 against exact search over the same vectors (ties with the 10th score count as hits).
HNSW can be measured on the first ``--hnsw-vectors`` vectors only (its build is the slow one);
a flat index is then measured at that size too, so HNSW has a baseline of its own size. Compare
speeds as ratios within one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import stamp


def _serialized_bytes(index) -> int:
    import faiss

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def _latency(index, queries: np.ndarray, n_single: int) -> dict:
    index.search(queries[:8], 10)  # warm-up, untimed
    single = []
    for row in queries[:n_single]:
        started = time.perf_counter()
        index.search(row[None, :], 10)
        single.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    index.search(queries, 10)
    batch = (time.perf_counter() - started) * 1000 / len(queries)
    return {"single_p50_ms": round(float(np.percentile(single, 50)), 3),
            "single_p95_ms": round(float(np.percentile(single, 95)), 3), "batch_ms_per_query": round(batch, 4)}


def _measure(name: str, vectors: np.ndarray, queries: np.ndarray, index_type: str, config, args, log) -> dict:
    from ..core.retrieval.index_build import RecallProbe, build_sized_index

    log(f"{name}: building over {len(vectors):,} vectors")
    started = time.perf_counter()
    index, build = build_sized_index(vectors, index_type, config.hnsw_m, config.hnsw_ef_construction,
                                     config.hnsw_ef_search, config.compressed_settings())
    wall = time.perf_counter() - started
    build.with_bytes(_serialized_bytes(index))
    log(f"{name}: built in {wall:.1f} s; measuring")
    probe = RecallProbe.for_index(vectors, 0, queries)
    row = {"index": name, "vectors": len(vectors), **{k: v for k, v in build.as_dict().items() if k not in ("n_vectors",)},
           "build_and_tune_seconds": round(wall, 2), "bench_recall_at_10": round(probe.recall(index), 4),
           "bench_queries": len(queries), **_latency(index, queries, args.latency_queries)}
    log(json.dumps(row))
    return row


def cmd_bench_index_scale(args: argparse.Namespace) -> int:
    import faiss

    from ..config import IndexConfig
    from ..core.retrieval.synthetic_vectors import synthetic_vectors

    faiss.omp_set_num_threads(args.threads)
    overrides = {"compressed_recall_target": args.recall_target} if args.recall_target is not None else {}
    if args.factory:
        overrides["compressed_factory"] = args.factory
    config = IndexConfig(**overrides)

    def log(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True, file=sys.stderr)

    started = time.perf_counter()
    drawn = synthetic_vectors(args.vectors + args.queries, args.dim, args.seed)
    held_out = np.zeros(len(drawn), dtype=bool)
    held_out[np.random.default_rng(args.seed).choice(len(drawn), args.queries, replace=False)] = True
    queries, vectors = np.ascontiguousarray(drawn[held_out]), np.ascontiguousarray(drawn[~held_out])
    del drawn
    log(f"drew {args.vectors:,} x {args.dim} vectors and {args.queries} held-out queries in {time.perf_counter() - started:.0f} s")
    rows = []
    kinds = args.indexes.split(",")
    if "flat" in kinds:
        rows.append(_measure("flat", vectors, queries, "flat", config, args, log))
    if "compressed" in kinds:
        try:
            rows.append(_measure("compressed", vectors, queries, "compressed", config, args, log))
        except ValueError as missed:  # the recall target is out of this factory's reach: say so, go on
            log(f"compressed: {missed}")
            print(f"compressed index ({config.compressed_factory}) not built: {missed}\n")
    if "hnsw" in kinds:
        n_hnsw = min(args.hnsw_vectors or args.vectors, args.vectors)
        subset = vectors[:n_hnsw]
        if n_hnsw < args.vectors:
            rows.append(_measure(f"flat@{n_hnsw:,}", subset, queries, "flat", config, args, log))
        rows.append(_measure("hnsw" if n_hnsw == args.vectors else f"hnsw@{n_hnsw:,}", subset, queries, "hnsw", config,
                             args, log))
    made = stamp(args)
    print(f"date: {made['date']}\ncommand: {made['command']}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; FAISS {faiss.__version__}, {args.threads} OpenMP "
          f"thread(s); HNSW M={config.hnsw_m} efConstruction={config.hnsw_ef_construction} "
          f"efSearch={config.hnsw_ef_search}; recall target {config.compressed_recall_target}\n")
    print("| index | vectors | factory | search | build s | build s / M | MiB | MiB / M | recall@10 | "
          "single p50 ms | single p95 ms | batch ms/query |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        search = f"{r['search_parameter']}={r['search_value']}" if r["search_parameter"] else "exact"
        print(f"| {r['index']} | {r['vectors']:,} | {r['factory']} | {search} | {r['build_and_tune_seconds']:.1f} | "
              f"{r['build_and_tune_seconds'] * 1e6 / r['vectors']:.0f} | {r['bytes'] / 2**20:.0f} | "
              f"{r['bytes_per_million_vectors'] / 2**20:.0f} | {r['bench_recall_at_10']:.3f} | {r['single_p50_ms']} | "
              f"{r['single_p95_ms']} | {r['batch_ms_per_query']} |")
    if args.project:
        _print_projection(rows, args)
    print("\n" + json.dumps({**made, "threads": args.threads, "rows": rows}))
    return 0


def _print_projection(rows: list[dict], args) -> None:
    """Wall time to encode, index memory and build time at larger corpora, extrapolated
    linearly from this run's per-million figures (each row's own size), and a cost line.
    Encoding: ``--encode-rate`` chunks/s per worker (a figure measured elsewhere: say which),
    workers in parallel with no overhead; the index is built on one machine."""
    sizes = [int(float(x)) for x in args.project.split(",")]
    workers = [int(x) for x in args.workers.split(",")]
    print(f"\nProjection (extrapolated, linear in corpus size from the rows above; encoding at "
          f"{args.encode_rate} chunks/s per worker, perfectly parallel; ${args.price_per_hour}/h per worker):\n")
    print("| chunks | workers | encode wall h | encode worker-h | encode cost $ | "
          + " | ".join(f"{r['index']} GiB | {r['index']} build h" for r in rows) + " |")
    print("|---|---|---|---|---|" + "---|---|" * len(rows))
    for size in sizes:
        for n in workers:
            hours = size / args.encode_rate / 3600
            per_row = " | ".join(f"{r['bytes_per_million_vectors'] * size / 1e6 / 2**30:.1f} | "
                                 f"{r['build_and_tune_seconds'] / r['vectors'] * size / 3600:.1f}" for r in rows)
            print(f"| {size:,} | {n} | {hours / n:.1f} | {hours:.0f} | {hours * args.price_per_hour:.0f} | {per_row} |")


def add_index_scale_parser(kinds) -> argparse.ArgumentParser:
    s = kinds.add_parser("index-scale", help="flat, HNSW and the compressed index on synthetic vectors: build time, "
                         "memory, latency, recall@10")
    s.add_argument("--vectors", type=int, default=1_000_000)
    s.add_argument("--dim", type=int, default=384)
    s.add_argument("--queries", type=int, default=1000, help="held-out query vectors (recall and batch latency)")
    s.add_argument("--latency-queries", type=int, default=300, help="queries timed one per call")
    s.add_argument("--hnsw-vectors", type=int, default=0, help="measure HNSW on this many vectors (0: all)")
    s.add_argument("--indexes", default="flat,compressed,hnsw")
    s.add_argument("--factory", help="compressed index factory (default: the index settings' compressed_factory)")
    s.add_argument("--recall-target", type=float, help="default: the index settings' compressed_recall_target")
    s.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads (on a shared machine 1 avoids "
                   "spin-waiting against other processes)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--project", help="corpus sizes to extrapolate to, e.g. 1e7,1e8")
    s.add_argument("--workers", default="1,8,32", help="encoding workers of the projection")
    s.add_argument("--encode-rate", type=float, default=48.9, help="chunks/s one worker encodes (default: bf16 on "
                   "this 2-core CPU, BENCHMARKS.md 'Encoding throughput')")
    s.add_argument("--price-per-hour", type=float, default=0.10, help="$ per worker-hour in the projection's cost line")
    s.set_defaults(func=cmd_bench_index_scale)
    return s
