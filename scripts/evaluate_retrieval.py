"""Base vs fine-tuned retrieval on the frozen split, from a finished run's references.

    python scripts/evaluate_retrieval.py --refs .domret/scifact/refs [--latency-queries 100]
    python scripts/evaluate_retrieval.py --tuned-model PATH   # a checkpoint trained elsewhere

The retrieval half of the evaluation_report asset (same code: core/evaluation.py), without
the reranker, serving and answer sections: for when only the encoder changed. With
``--tuned-model`` the tuned side is that checkpoint (a sentence-transformers folder, e.g. one
rebuilt by scripts/gpu_tune_embedding.py restore): the run's chunks are encoded with it and
indexed the way the faiss_index asset does, instead of reading the run's tuned index.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime, timezone
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", default=".domret/scifact/refs")
    parser.add_argument("--split", default="test")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--tuned-model", default="", help="encode the corpus with this checkpoint as the tuned side")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from domret_pipeline.core.artifacts import ArtifactRef
    from domret_pipeline.core.bm25 import BM25Index
    from domret_pipeline.core.dense_index import open_with_encoder
    from domret_pipeline.core.evaluation import DenseSystem, evaluate_retrieval
    from domret_pipeline.core.labels import LabeledQueries
    from domret_pipeline.core.report import to_markdown
    from domret_pipeline.core.serialization import read_chunks

    def ref(name: str) -> ArtifactRef:
        return ArtifactRef.from_json((Path(args.refs) / f"{name}.json").read_text())

    labels = LabeledQueries.load(ref("labeled_queries").verify())
    chunks = read_chunks(ref("corpus_chunks").verify() / "chunks.jsonl")
    systems, base_manifest = [], {}
    for name, key in (("dense_base", "base_faiss_index"), ("dense_tuned", "faiss_index")):
        if name == "dense_tuned" and args.tuned_model:
            systems.append(_system_from_checkpoint(name, args.tuned_model, chunks, systems[0], base_manifest))
            continue
        index, encoder, manifest = open_with_encoder(ref(key).verify())
        if name == "dense_base":
            base_manifest = manifest  # the tuned checkpoint is encoded the way this index was
        systems.append(DenseSystem(name, index, encoder, manifest["encoder"], manifest["index_type"]))
    report, _, _ = evaluate_retrieval(labels, args.split, chunks, systems, BM25Index.load(ref("bm25_index").verify()),
                                      (10, 100), args.latency_queries)
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("command: python scripts/evaluate_retrieval.py " + " ".join(sys.argv[1:]))
    tuned = f"checkpoint {args.tuned_model}" if args.tuned_model else f"faiss_index: {ref('faiss_index').sha256[:16]}"
    print(f"{tuned}  base_faiss_index: {ref('base_faiss_index').sha256[:16]}\n")
    print(to_markdown(report))
    return 0


def _system_from_checkpoint(name, path, chunks, base, base_manifest):
    """The tuned side built the way the faiss_index asset builds it: the base index's text
    (title or not), token limit and index type, read from its manifest."""
    import time

    from domret_pipeline.core.chunking import passage_text, recorded_with_title
    from domret_pipeline.core.dense_index import DenseIndex, build_index
    from domret_pipeline.core.encoder import encode, load_encoder, model_fingerprint
    from domret_pipeline.core.evaluation import DenseSystem

    encoder = load_encoder(path, base_manifest["max_seq_length"])
    started = time.perf_counter()
    with_title = recorded_with_title(base_manifest)
    vectors = encode(encoder, [passage_text(c, with_title) for c in chunks])
    print(f"encoded {len(chunks)} chunks with {path} in {time.perf_counter() - started:.0f} s "
          f"(weights sha256 {model_fingerprint(path)[:16]})", file=sys.stderr)
    index = DenseIndex(build_index(vectors, base.index_type), [c.chunk_id for c in chunks])
    return DenseSystem(name, index, encoder, f"checkpoint@{Path(path).name}", base.index_type)


if __name__ == "__main__":
    sys.exit(main())
