"""One reranker trial on the dev split, reusing the artifacts of a finished run.

    python scripts/tune_reranker.py --loss mnrl --lr 5e-4 --epochs 2 --candidates 20

Reads the fine-tuned FAISS index, BM25 index, corpus_chunks and labeled_queries of a finished
run (by default the SciFact run of `make scifact`: the references under .domret/scifact/refs),
trains a LoRA cross-encoder exactly as the reranker_adapter asset does, then scores the
serving grid (dense, hybrid, reranking depths and fusion weights) on the dev split and prints
what would serve. It never looks at the test split: use it to choose the recipe.
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
    parser.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    parser.add_argument("--base-model", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--loss", default="mnrl", choices=["mnrl", "lambda", "listnet", "bce"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--candidates", type=int, default=20)
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument("--in-batch-negatives", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--grid-candidates", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--save", help="keep the trained adapter and merged model in this folder")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from domret_pipeline.core.artifacts import ArtifactRef
    from domret_pipeline.core.bm25 import BM25Index
    from domret_pipeline.core.dense_index import open_with_encoder
    from domret_pipeline.core.labels import LabeledQueries
    from domret_pipeline.config import RerankerConfig
    from domret_pipeline.core.chunking import recorded_with_title
    from domret_pipeline.core.reranker import save_adapter_and_merged, train_reranker
    from domret_pipeline.core.reranker_data import prepare
    from domret_pipeline.core.serialization import read_chunks
    from domret_pipeline.core.serving import select_on_dev

    refs = Path(args.refs)

    def ref(name: str) -> Path:
        return ArtifactRef.from_json((refs / f"{name}.json").read_text()).verify()

    labels = LabeledQueries.load(ref("labeled_queries"))
    chunks = read_chunks(ref("corpus_chunks") / "chunks.jsonl")
    index, encoder, manifest = open_with_encoder(ref("faiss_index"))
    with_title = recorded_with_title(manifest)
    examples, dev, mined = prepare(labels, chunks, index, encoder, args.candidates, args.num_negatives, None, with_title)
    settings = RerankerConfig(max_length=args.max_length, loss=args.loss, num_negatives=args.num_negatives,
                              in_batch_negatives=args.in_batch_negatives, epochs=args.epochs, learning_rate=args.lr,
                              batch_size=args.batch_size, early_stopping_patience=args.patience, lora_r=args.lora_r,
                              lora_alpha=2 * args.lora_r).settings()
    with tempfile.TemporaryDirectory() as work:
        outcome = train_reranker(args.base_model, examples, dev, settings, Path(work))
    if args.save:
        save_adapter_and_merged(outcome.model, Path(args.save) / "adapter", Path(args.save) / "merged")
    else:
        from domret_pipeline.core.reranker import merge_adapter

        merge_adapter(outcome.model)
    started = time.perf_counter()
    chosen, scored = select_on_dev(labels.qrels_for("dev"), labels.queries, chunks, index, encoder,
                                   BM25Index.load(ref("bm25_index")), outcome.model, args.grid_candidates,
                                   [None, 0.25, 0.5, 1.0, 2.0], with_title=with_title)
    result = {
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "command": "python scripts/tune_reranker.py " + " ".join(sys.argv[1:]),
        "train_queries": len(examples), "train_negatives": mined.n_negatives, "dev_queries": len(dev),
        "dev_rerank_ndcg@10_first_stage": round(outcome.first_stage_dev_score, 4),
        "dev_rerank_ndcg@10_start": round(outcome.start_dev_score, 4),
        "dev_rerank_ndcg@10": round(outcome.dev_score, 4), "best_epoch": outcome.best_epoch,
        "dev_history": outcome.dev_history, "train_seconds": round(outcome.seconds, 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [outcome.loss_history[0]["loss"], outcome.loss_history[-1]["loss"]] if outcome.loss_history else [],
        "grid_seconds": round(time.perf_counter() - started, 1),
        "dev_grid_ndcg@10": {label: round(s["metrics"]["ndcg@10"], 4) for label, s in scored.items()},
        "chosen": chosen.label(), "reasons": chosen.reasons,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
