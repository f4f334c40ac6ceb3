"""Inference precision on a materialized run: encoding throughput and retrieval quality of each
path, and the reranker's served latency at top-k per precision and token limit.

    DOMRET_HOME=.domret/scifact domret bench precision --refs .domret/scifact/refs

Encoding: the whole corpus's chunks are encoded by plain sentence-transformers fp32 (the
reference) and by each precision path of the project (``core.retrieval.precision``), in one process,
one after another, each after a warm-up batch; throughput is reported as a ratio to the
reference, measured in the same run (the machine is shared: read the ratios, not the times).
Each path's index is scored on the dev and test splits of the run's labels (nDCG@10,
document level, pytrec_eval).

Reranking: ``dense+rerank@k`` through the served pipeline (``SearchPipeline``), one query at a
time over test queries, for each (precision, max_length); the cross-encoder is the run's
trained reranker when ``--reranker`` names its merged folder, else the base model with a
fresh head (latency does not depend on the weights' values; its quality figures then mean
nothing and are not printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

from .common import artifact_dir, labels_and_chunks, offline


def cmd_bench_precision(args: argparse.Namespace) -> int:
    offline()
    import numpy as np
    import torch

    from ..core.data.chunking import passage_text
    from ..core.evaluation.metrics import evaluate_run, mean_metrics
    from ..core.manifests import DenseIndexManifest, read_manifest
    from ..core.retrieval.dense_index import DenseIndex, build_index, open_with_encoder
    from ..core.retrieval.document_ranking import aggregate_max
    from ..core.retrieval.encoder import encode, load_encoder
    from ..core.retrieval.precision_choice import cosine_rows
    from ..core.serving.latency import time_pipeline
    from ..core.serving.search import SearchPipeline, ServingConfig
    from ..core.retrieval.cross_encoder import load_cross_encoder, load_reranker

    refs = Path(args.refs)
    base_index_dir = artifact_dir(refs, "base_faiss_index")
    manifest = read_manifest(base_index_dir, DenseIndexManifest)
    labels, chunks = labels_and_chunks(refs)
    texts = [passage_text(c, manifest.with_title) for c in chunks]
    chunk_ids = [c.chunk_id for c in chunks]
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    path, max_len = manifest.encoder_path, manifest.max_seq_length
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); {len(texts)} chunks, batch {args.batch_size}, "
          f"max_seq_length {max_len}")
    print(f"command: {args.command_line}")

    def scores_for(vectors, model, split):
        qids = labels.ids(split)
        qrels = labels.qrels_for(split)
        index = DenseIndex(build_index(vectors, "flat"), chunk_ids)
        hits = index.search(encode(model, [labels.queries[q] for q in qids], args.batch_size), 100)
        run = {q: aggregate_max(h, chunk_to_doc) for q, h in zip(qids, hits)}
        return mean_metrics(evaluate_run(qrels, run, (10,)))["ndcg@10"], len(qrels)

    if not args.skip_encoding:
        from sentence_transformers import SentenceTransformer

        rows = []
        plain = SentenceTransformer(path, device="cpu")
        plain.max_seq_length = max_len
        plain.encode(texts[: args.batch_size], batch_size=args.batch_size)
        started = time.perf_counter()
        reference = plain.encode(texts, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        ref_seconds = time.perf_counter() - started
        print(f"plain sentence-transformers fp32: {ref_seconds:.1f} s ({len(texts) / ref_seconds:.1f} chunks/s)", flush=True)
        reference = np.asarray(reference, dtype=np.float32)
        dev, _ = scores_for(reference, plain, "dev")
        test, _ = scores_for(reference, plain, "test")
        rows.append(["sentence-transformers fp32 (reference)", ref_seconds, 1.0, 1.0, 1.0, dev, test])
        del plain
        # The project's fp32 path is sentence-transformers unchanged (plus a float32 re-norm):
        # pass --precisions fp32,bf16,int8 to time it as well.
        for precision in args.precisions.split(","):
            model = load_encoder(path, max_len, precision=precision)
            encode(model, texts[: args.batch_size], args.batch_size)
            started = time.perf_counter()
            vectors = encode(model, texts, args.batch_size)
            seconds = time.perf_counter() - started
            cos = cosine_rows(reference, vectors)
            dev, n_dev = scores_for(vectors, model, "dev")
            test, n_test = scores_for(vectors, model, "test")
            rows.append([precision, seconds, ref_seconds / seconds, float(cos.mean()), float(cos.min()), dev, test])
            print(f"{precision}: {seconds:.1f} s, {ref_seconds / seconds:.2f}x, cosine mean {cos.mean():.5f} min "
                  f"{cos.min():.5f}, dev nDCG@10 {dev:.4f} ({n_dev} q), test {test:.4f} ({n_test} q)", flush=True)
        print("\n| path | seconds | speed vs ST fp32 | cosine mean | cosine min | dev nDCG@10 | test nDCG@10 |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.2f}x | {r[3]:.5f} | {r[4]:.5f} | {r[5]:.4f} | {r[6]:.4f} |")

    if args.throughput_sample:
        # Interleaved rounds: every path sees the same load on a shared machine; best of rounds.
        from sentence_transformers import SentenceTransformer

        sample = texts[: args.throughput_sample]
        plain = SentenceTransformer(path, device="cpu")
        plain.max_seq_length = max_len
        paths = {"sentence-transformers fp32": lambda: plain.encode(sample, batch_size=args.batch_size,
                                                                     normalize_embeddings=True)}
        models = {p: load_encoder(path, max_len, precision=p) for p in ["fp32", *args.precisions.split(",")] if p}
        for name, model in models.items():
            paths[name] = (lambda m: lambda: encode(m, sample, args.batch_size))(model)
        for fn in paths.values():
            fn()  # warm-up
        best = {name: float("inf") for name in paths}
        for _ in range(args.rounds):
            for name, fn in paths.items():
                started = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - started)
        base = best["sentence-transformers fp32"]
        print(f"\nthroughput: {len(sample)} chunks, best of {args.rounds} interleaved rounds")
        print("| path | best seconds | chunks/s | speed vs ST fp32 |")
        print("|---|---|---|---|")
        for name, seconds in best.items():
            print(f"| {name} | {seconds:.1f} | {len(sample) / seconds:.1f} | {base / seconds:.2f}x |", flush=True)
    if args.skip_rerank:
        return 0

    # Reranking latency through the served pipeline, over the base index.
    index, encoder, _ = open_with_encoder(base_index_dir)
    qids = labels.ids("test")[: args.latency_queries]
    queries = [labels.queries[q] for q in qids]
    print(f"\nrerank latency: dense+rerank@{args.rerank_candidates}, {len(queries)} test queries one at a time, "
          f"cross-encoder {'trained: ' + args.reranker if args.reranker else 'base model + fresh head (latency only)'}")
    print("| precision | max_length | rerank p50 ms | p95 | p99 | query total p50 ms | p95 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    if not args.reranker:
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="bench-ce-"))
        load_cross_encoder(path, 256).save(str(folder))
    else:
        folder = Path(args.reranker)
    for length in [int(n) for n in args.rerank_lengths.split(",")]:
        for precision in args.rerank_precisions.split(","):
            reranker = load_reranker(folder, length, precision)
            config = ServingConfig("dense", True, args.rerank_candidates, None, rerank_precision=precision,
                                   rerank_max_length=length)
            pipeline = SearchPipeline(chunks, index, encoder, config, reranker=reranker,
                                      with_title=manifest.with_title)
            pipeline.search(queries[:1])
            stages = time_pipeline(pipeline, queries)
            r, t = stages["rerank"], stages["total"]
            print(f"| {precision} | {length} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | "
                  f"{t['p50_ms']:.0f} | {t['p95_ms']:.0f} | {t['p99_ms']:.0f} |", flush=True)
    print(json.dumps({"done": True}))
    return 0



def add_precision_parser(kinds) -> argparse.ArgumentParser:
    p = kinds.add_parser("precision", help="throughput, quality and reranking latency of each inference precision")
    p.add_argument("--refs", required=True, help="a run's reference folder (e.g. .domret/scifact/refs)")
    p.add_argument("--precisions", default="bf16,int8", help="paths compared with plain sentence-transformers fp32")
    p.add_argument("--rerank-precisions", default="fp32,bf16,int8")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--reranker", default=None, help="a merged cross-encoder folder (default: base + fresh head)")
    p.add_argument("--rerank-candidates", type=int, default=20)
    p.add_argument("--rerank-lengths", default="256,128")
    p.add_argument("--latency-queries", type=int, default=60)
    p.add_argument("--skip-encoding", action="store_true", help="skip the whole-corpus quality pass")
    p.add_argument("--skip-rerank", action="store_true")
    p.add_argument("--throughput-sample", type=int, default=0,
                        help="also time every path on this many chunks, interleaved over --rounds rounds (robust ratios)")
    p.add_argument("--rounds", type=int, default=3)
    p.set_defaults(func=cmd_bench_precision)
    return p
