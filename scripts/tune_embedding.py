"""One fine-tuning trial on the dev split, reusing the artifacts of a finished run.

    python scripts/tune_embedding.py --epochs 1 --lr 2e-5 --num-negatives 1 --range 10 60

Reads the corpus_chunks, labeled_queries and base FAISS index of a finished run (by default
the SciFact run of `make scifact`: the references under .domret/scifact/refs), mines negatives for the train split, trains, and prints the
dev nDCG@10 (on the dev candidate subset, see core/training_data.py) of the base and the
tuned model. It never looks at the test split: use it to choose hyper-parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index-ref", default=".domret/scifact/refs/base_faiss_index.json",
                        help="reference of a base FAISS index; corpus_chunks.json and labeled_queries.json sit beside it")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-negatives", type=int, default=1)
    parser.add_argument("--range", type=int, nargs=2, default=(10, 100))
    parser.add_argument("--ratio", type=float, default=0.95)
    parser.add_argument("--loss", default="mnrl")
    parser.add_argument("--fill-random", action="store_true")
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--dev-candidates", type=int, default=10)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--cached-mini-batch", type=int, default=16)
    parser.add_argument("--train-precision", default="fp32", help="fp32, bf16 or auto (TrainingSettings.train_precision)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from domret_pipeline.core.artifacts import ArtifactRef, read_json
    from domret_pipeline.core.dense_index import DenseIndex
    from domret_pipeline.core.encoder import encode, load_encoder
    from domret_pipeline.core.labels import LabeledQueries
    from domret_pipeline.config import FineTuneConfig, MiningConfig
    from domret_pipeline.core.chunking import recorded_with_title
    from domret_pipeline.core.mining import mine
    from domret_pipeline.core.positives import positive_chunks
    from domret_pipeline.core.serialization import read_chunks
    from domret_pipeline.core.training import train_encoder
    from domret_pipeline.core.training_data import build_dev_set, build_training_rows

    refs = Path(args.index_ref).parent
    index_ref = ArtifactRef.from_json(Path(args.index_ref).read_text())
    chunks_ref = ArtifactRef.from_json((refs / "corpus_chunks.json").read_text())
    labels_ref = ArtifactRef.from_json((refs / "labeled_queries.json").read_text())
    manifest = read_json(Path(index_ref.path) / "manifest.json")
    chunks = read_chunks(Path(chunks_ref.path) / "chunks.jsonl")
    labels = LabeledQueries.load(labels_ref.path)
    index = DenseIndex.load(Path(index_ref.path))
    vectors = index.index.reconstruct_n(0, index.index.ntotal)
    encoder = load_encoder(manifest["encoder_path"], manifest["max_seq_length"])
    train_ids = sorted(labels.qrels_for("train"))
    dev_ids = sorted(labels.qrels_for("dev"))
    qvec = encode(encoder, [labels.queries[q] for q in train_ids + dev_ids])
    qvec_by_id = dict(zip(train_ids + dev_ids, qvec))
    position = {c: i for i, c in enumerate(index.chunk_ids)}
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}

    def score(qid, chunk_ids):
        return [float(vectors[position[c]] @ qvec_by_id[qid]) for c in chunk_ids]

    started = time.perf_counter()
    train_qrels = labels.qrels_for("train")
    positives = positive_chunks(train_qrels, chunks, [e for e in labels.evidence if e.query_id in train_qrels], score)
    settings = MiningConfig(range_min=args.range[0], range_max=args.range[1], max_positive_ratio=args.ratio,
                            num_negatives=args.num_negatives, fill_random=args.fill_random).settings()
    mined = mine(train_ids, qvec[: len(train_ids)], index.chunk_ids, vectors, chunk_to_doc, train_qrels, positives, settings)
    with_title = recorded_with_title(manifest)
    rows = build_training_rows(mined, labels.queries, {c.chunk_id: c for c in chunks}, with_title)
    dev = build_dev_set(labels, "dev", chunks, vectors, qvec_by_id, args.dev_candidates, FineTuneConfig().dev_random_chunks,
                        with_title=with_title)
    mining_s = time.perf_counter() - started
    training = FineTuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, loss=args.loss,
                              lora=args.lora, lora_r=args.lora_r, max_seq_length=args.max_seq_length,
                              early_stopping_patience=args.patience, cached_mini_batch_size=args.cached_mini_batch,
                              train_precision=args.train_precision, seed=args.seed).settings()
    with tempfile.TemporaryDirectory() as work:
        outcome = train_encoder(manifest["encoder_path"], rows, args.num_negatives, dev, training, Path(work))
    result = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "command": "python scripts/tune_embedding.py " + " ".join(sys.argv[1:]),
        "train_rows": len(rows), "dev_queries": len(dev.queries), "dev_corpus": len(dev.corpus),
        "mining_removed": dict(mined.removed), "queries_without_negatives": len(mined.queries_without_negatives),
        "dev_ndcg@10_base": round(outcome.base_dev_score, 4), "dev_ndcg@10_tuned": round(outcome.dev_score, 4),
        "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history,
        "train_seconds": round(outcome.seconds, 1), "mining_seconds": round(mining_s, 1),
        "train_precision": outcome.train_precision,
        "seconds_per_step": round(outcome.seconds / max(1, outcome.loss_history[-1]["step"] if outcome.loss_history else 1), 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [outcome.loss_history[0]["loss"], outcome.loss_history[-1]["loss"]] if outcome.loss_history else [],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
