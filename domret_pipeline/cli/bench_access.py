"""``domret bench access``: what access control and the audit trail cost a query.

On a published serving bundle (SciFact's by default), documents are assigned at random (seeded)
to the public group with probability ``s`` (the *selectivity*: the share a request without a
principal may read) and to a restricted group otherwise. Each frozen test query is then
searched one at a time:
- ``unrestricted``: the same corpus with every document public (the path taken when a
  principal may read everything: no mask, the ranking of a corpus without access control);
- ``s = …``: as a request without a principal, so the dense stage filters inside FAISS, BM25
  through its weight mask, and every stage is re-checked.
After an untimed warm-up, rounds alternate between the variants, so a noisy machine slows
them alike; the figures to
compare are the ratios to ``unrestricted`` in the same run. The dense index is the bundle's own
(flat below ``exact_max_vectors``) and an HNSW index built from its vectors.

The audit trail: the bundle's ``Service.search`` with an audit writer on a throw-away SQLite
store against the same service without one, alternating.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .common import offline, stamp


def _percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}


def _with_groups(opened, index, share: float, seed: int):
    """A pipeline over ``index`` whose documents are public with probability ``share``."""
    from ..core.retrieval.access import GroupTable
    from ..core.serving.search import SearchPipeline

    rng = np.random.default_rng(seed)
    docs = sorted({c.doc_id for c in opened.chunks})
    public = {d: bool(rng.random() < share) for d in docs}
    chunks = [replace(c, groups=("public",) if public[c.doc_id] else ("restricted",)) for c in opened.chunks]
    by_id = {c.chunk_id: c for c in chunks}
    dense = replace(index, groups=GroupTable([by_id[i].groups for i in index.chunk_ids]))
    bm25 = opened.bm25
    if bm25 is not None and getattr(bm25, "groups", None) is not None:
        bm25 = replace(bm25, groups=GroupTable([by_id[i].groups for i in bm25.chunk_ids]))
    return SearchPipeline(chunks, dense, opened.encoder, opened.pipeline.config, bm25, None,
                          opened.pipeline.with_title), sum(public.values()) / len(docs)


def cmd_bench_access(args: argparse.Namespace) -> int:
    offline()
    from ..core.data.labels import LabeledQueries
    from ..core.retrieval.dense_index import build_index
    from ..core.serving.bundle import open_bundle
    from .common import artifact_dir

    refs = Path(args.refs)
    opened = open_bundle(artifact_dir(refs, "serving_config"), rerank=False, load_all=True)
    labels = LabeledQueries.load(Path(opened.bundle["artifacts"]["labeled_queries"]["path"]))
    queries = [labels.queries[q] for q in sorted(labels.qrels_for("test"))][: args.queries]
    flat = opened.index
    vectors = flat.index.reconstruct_n(0, flat.index.ntotal)
    indexes = {"flat": flat, "hnsw": replace(flat, index=build_index(np.asarray(vectors, dtype=np.float32), "hnsw"))}
    rows = []
    for kind, index in indexes.items():
        for first_stage in ("dense", "hybrid"):
            variants = {}
            for share in [1.0, *args.selectivities]:
                pipeline, visible = _with_groups(opened, index, share, args.seed)
                pipeline.config = replace(pipeline.config, first_stage=first_stage, rerank=False)
                variants["unrestricted" if share == 1.0 else f"s={share:g}"] = (pipeline, visible)
            timings = {name: [] for name in variants}
            hits = {name: [] for name in variants}
            for pipeline, _ in variants.values():  # warm-up, untimed: first calls build masks and caches
                pipeline.search(queries[:3])
            for _ in range(args.rounds):
                for name, (pipeline, _) in variants.items():
                    for query in queries:
                        started = time.perf_counter()
                        result = pipeline.search([query])[0]
                        timings[name].append((time.perf_counter() - started) * 1000)
                        hits[name].append(len(result.hits))
            base = np.median(timings["unrestricted"])
            for name, (pipeline, visible) in variants.items():
                rows.append({"index": kind, "first_stage": first_stage, "variant": name,
                             "visible_documents": round(visible, 4), **_percentiles(timings[name]),
                             "ratio_p50": round(float(np.median(timings[name]) / base), 3),
                             "mean_hits": round(float(np.mean(hits[name])), 2)})
    audit = _bench_audit(opened, queries, args.rounds)
    print(json.dumps({**stamp(args), "queries": len(queries), "rounds": args.rounds,
                      "chunks": len(opened.chunks), "access": rows, "audit": audit}, indent=1))
    return 0


def _bench_audit(opened, queries: list[str], rounds: int) -> dict:
    """Service.search with and without an audit writer (SQLite in a temporary folder)."""
    from ..core.audit.store import AuditSettings
    from ..core.audit.writer import AuditWriter
    from ..core.serving.service import Service

    with tempfile.TemporaryDirectory() as folder:
        writer = AuditWriter(AuditSettings(f"sqlite:///{folder}/audit.db"))
        services = {"no audit": Service(opened), "audit (SQLite)": Service(opened, audit=writer)}
        timings = {name: [] for name in services}
        for service in services.values():  # warm-up, untimed: the store opens and migrates on first write
            for query in queries[:3]:
                service.search(query)
        for _ in range(rounds):
            for name, service in services.items():
                for query in queries:
                    started = time.perf_counter()
                    service.search(query)
                    timings[name].append((time.perf_counter() - started) * 1000)
        writer.close()
        failures = writer.failures
    base = np.median(timings["no audit"])
    return {name: {**_percentiles(ms), "ratio_p50": round(float(np.median(ms) / base), 3)} for name, ms in timings.items()} | {
        "write_failures": failures}


def add_access_parser(kinds) -> argparse.ArgumentParser:
    p = kinds.add_parser("access", help="latency of searching as a principal (ACL filtering) and of the audit trail")
    p.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    p.add_argument("--selectivities", type=float, nargs="+", default=[0.5, 0.1, 0.01],
                   help="shares of documents a request without a principal may read")
    p.add_argument("--queries", type=int, default=100, help="frozen test queries timed per variant and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_bench_access)
    return p
