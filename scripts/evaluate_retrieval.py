"""Base vs fine-tuned retrieval on the frozen split, from a finished run's references.

    python scripts/evaluate_retrieval.py --refs .domret/scifact/refs [--latency-queries 100]

The retrieval half of the evaluation_report asset (same code: core/evaluation.py), without
the reranker, serving and answer sections: for when only the encoder changed.
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

    systems = []
    for name, key in (("dense_base", "base_faiss_index"), ("dense_tuned", "faiss_index")):
        index, encoder, manifest = open_with_encoder(ref(key).verify())
        systems.append(DenseSystem(name, index, encoder, manifest["encoder"], manifest["index_type"]))
    labels = LabeledQueries.load(ref("labeled_queries").verify())
    chunks = read_chunks(ref("corpus_chunks").verify() / "chunks.jsonl")
    report, _, _ = evaluate_retrieval(labels, args.split, chunks, systems, BM25Index.load(ref("bm25_index").verify()),
                                      (10, 100), args.latency_queries)
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("command: python scripts/evaluate_retrieval.py " + " ".join(sys.argv[1:]))
    print(f"faiss_index: {ref('faiss_index').sha256[:16]}  base_faiss_index: {ref('base_faiss_index').sha256[:16]}\n")
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
