"""``domret eval``: base vs fine-tuned retrieval on the frozen split, from a finished run's references.

    domret eval --refs .domret/scifact/refs [--latency-queries 100]
    domret eval --tuned-model PATH   # a checkpoint trained elsewhere

The retrieval half of the evaluation_report asset (same code: core/evaluation/retrievers.py), without
the reranker, serving and answer sections: for when only the encoder changed. With
``--tuned-model`` the tuned side is that checkpoint (a sentence-transformers folder, e.g. one
rebuilt by ``domret gpu-tune restore``): the run's chunks are encoded with it and indexed
with the base index's text, token limit and index type, instead of reading the run's tuned index.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import artifact_dir, labels_and_chunks, offline, stamp


def cmd_eval(args: argparse.Namespace) -> int:
    offline()
    from ..core.evaluation.report import to_markdown
    from ..core.evaluation.retrievers import DenseSystem, evaluate_retrieval
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.dense_index import open_with_encoder
    from ..publication import latest_ref

    refs = Path(args.refs)
    labels, chunks = labels_and_chunks(refs)
    base_ref = latest_ref(refs, "base_faiss_index")
    index, encoder, base_manifest = open_with_encoder(Path(base_ref.path))
    base = DenseSystem("dense_base", index, encoder, base_manifest.encoder, base_manifest.index_type)
    if args.tuned_model:
        tuned = _system_from_checkpoint("dense_tuned", args.tuned_model, chunks, base, base_manifest)
        tuned_label = f"checkpoint {args.tuned_model}"
    else:
        tuned_ref = latest_ref(refs, "faiss_index")
        index, encoder, manifest = open_with_encoder(Path(tuned_ref.path))
        tuned = DenseSystem("dense_tuned", index, encoder, manifest.encoder, manifest.index_type)
        tuned_label = f"faiss_index: {tuned_ref.sha256[:16]}"
    report, _, _ = evaluate_retrieval(labels, args.split, chunks, [base, tuned],
                                      BM25Index.load(artifact_dir(refs, "bm25_index")), (10, 100), args.latency_queries)
    made = stamp(args)
    print(f"date: {made['date']}\ncommand: {made['command']}")
    print(f"{tuned_label}  base_faiss_index: {base_ref.sha256[:16]}\n")
    print(to_markdown(report))
    return 0


def _system_from_checkpoint(name, path, chunks, base, base_manifest):
    """The tuned side indexed with the base index's text (title or not), token limit and
    index type, read from its manifest, so only the encoder differs."""
    from ..core.data.chunking import passage_text
    from ..core.evaluation.retrievers import DenseSystem
    from ..config import IndexConfig
    from ..core.retrieval.dense_index import DenseIndex
    from ..core.retrieval.encoder import encode, load_encoder, model_fingerprint
    from ..core.retrieval.index_build import build_sized_index

    encoder = load_encoder(path, base_manifest.max_seq_length)
    started = time.perf_counter()
    with_title = base_manifest.with_title
    vectors = encode(encoder, [passage_text(c, with_title) for c in chunks])
    print(f"encoded {len(chunks)} chunks with {path} in {time.perf_counter() - started:.0f} s "
          f"(weights sha256 {model_fingerprint(path)[:16]})", file=sys.stderr)
    # the base index's settings (a compressed index is trained and tuned as the base one was)
    settings = IndexConfig(**{k: v for k, v in base_manifest.extra.items() if k in IndexConfig.model_fields})
    built, _ = build_sized_index(vectors, base.index_type, settings.hnsw_m, settings.hnsw_ef_construction,
                                 settings.hnsw_ef_search, settings.compressed_settings())
    index = DenseIndex(built, [c.chunk_id for c in chunks])
    return DenseSystem(name, index, encoder, f"checkpoint@{Path(path).name}", base.index_type)


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    e = commands.add_parser("eval", help="base vs tuned retrieval on the frozen split, from a run's references")
    e.add_argument("--refs", default=".domret/scifact/refs")
    e.add_argument("--split", default="test")
    e.add_argument("--latency-queries", type=int, default=100)
    e.add_argument("--tuned-model", default="", help="encode the corpus with this checkpoint as the tuned side")
    e.set_defaults(func=cmd_eval)
    return [e]
