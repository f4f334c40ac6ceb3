"""``domret tune embedding|reranker``: one fine-tuning trial on the dev split, reusing the
artifacts of a finished run (by default the SciFact run of ``make scifact``).

    domret tune embedding --epochs 1 --lr 2e-5 --num-negatives 1 --range 10 60
    domret tune reranker --loss mnrl --lr 5e-4 --epochs 2 --candidates 20

Both mine, train and evaluate through the same core entry points as the graph's assets, and
print one JSON line of dev figures. They never look at the test split: use them to choose
hyper-parameters.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .common import artifact_dir, labels_and_chunks, offline, stamp


def cmd_tune_embedding(args: argparse.Namespace) -> int:
    """Mine negatives for the train split as ``hard_negatives`` does, train as
    ``embedding_checkpoint`` does, print the dev nDCG@10 (on the dev candidate subset, see
    core/training/bi_encoder_data.py) of the base and the tuned model."""
    offline()
    from ..config import FineTuneConfig, MiningConfig
    from ..core.data.chunking import recorded_with_title
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.training.bi_encoder import train_encoder
    from ..core.training.bi_encoder_data import build_training_rows, dev_set_from_index, train_split

    refs = Path(args.index_ref).parent
    index_dir = artifact_dir(refs, Path(args.index_ref).stem)
    labels, chunks = labels_and_chunks(refs)
    index, encoder, manifest = open_with_encoder(index_dir)
    started = time.perf_counter()
    settings = MiningConfig(range_min=args.range[0], range_max=args.range[1], max_positive_ratio=args.ratio,
                            num_negatives=args.num_negatives, fill_random=args.fill_random).settings()
    mined = train_split(labels, chunks, index, encoder).mine(settings)
    with_title = recorded_with_title(manifest)
    rows = build_training_rows(mined, labels.queries, {c.chunk_id: c for c in chunks}, with_title)
    dev = dev_set_from_index(labels, chunks, index, encoder, args.dev_candidates, FineTuneConfig().dev_random_chunks,
                             with_title=with_title)
    mining_s = time.perf_counter() - started
    training = FineTuneConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, loss=args.loss,
                              lora=args.lora, lora_r=args.lora_r, max_seq_length=args.max_seq_length,
                              early_stopping_patience=args.patience, cached_mini_batch_size=args.cached_mini_batch,
                              train_precision=args.train_precision, seed=args.seed).settings()
    with tempfile.TemporaryDirectory() as work:
        outcome = train_encoder(manifest["encoder_path"], rows, args.num_negatives, dev, training, Path(work))
    losses = outcome.loss_history
    print(json.dumps({
        **stamp(args),
        "train_rows": len(rows), "dev_queries": len(dev.queries), "dev_corpus": len(dev.corpus),
        "mining_removed": dict(mined.removed), "queries_without_negatives": len(mined.queries_without_negatives),
        "dev_ndcg@10_base": round(outcome.base_dev_score, 4), "dev_ndcg@10_tuned": round(outcome.dev_score, 4),
        "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history,
        "train_seconds": round(outcome.seconds, 1), "mining_seconds": round(mining_s, 1),
        "train_precision": outcome.train_precision,
        "seconds_per_step": round(outcome.seconds / max(1, losses[-1]["step"] if losses else 1), 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [losses[0]["loss"], losses[-1]["loss"]] if losses else [],
    }))
    return 0


def cmd_tune_reranker(args: argparse.Namespace) -> int:
    """Train a LoRA cross-encoder as ``reranker_adapter`` does, then score the serving grid
    (dense, hybrid, reranking depths and fusion weights) on dev as ``serving_config`` does,
    and print what would serve."""
    offline()
    from ..config import RerankerConfig
    from ..core.data.chunking import recorded_with_title
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.cross_encoder import merge_adapter
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.serving.dev_choice import select_on_dev
    from ..core.training.reranker import save_adapter_and_merged, train_reranker
    from ..core.training.reranker_data import prepare

    refs = Path(args.refs)
    labels, chunks = labels_and_chunks(refs)
    index, encoder, manifest = open_with_encoder(artifact_dir(refs, "faiss_index"))
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
        merge_adapter(outcome.model)
    started = time.perf_counter()
    chosen, scored = select_on_dev(labels.qrels_for("dev"), labels.queries, chunks, index, encoder,
                                   BM25Index.load(artifact_dir(refs, "bm25_index")), outcome.model, args.grid_candidates,
                                   [None, 0.25, 0.5, 1.0, 2.0], with_title=with_title)
    losses = outcome.loss_history
    print(json.dumps({
        **stamp(args),
        "train_queries": len(examples), "train_negatives": mined.n_negatives, "dev_queries": len(dev),
        "dev_rerank_ndcg@10_first_stage": round(outcome.first_stage_dev_score, 4),
        "dev_rerank_ndcg@10_start": round(outcome.start_dev_score, 4),
        "dev_rerank_ndcg@10": round(outcome.dev_score, 4), "best_epoch": outcome.best_epoch,
        "dev_history": outcome.dev_history, "train_seconds": round(outcome.seconds, 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [losses[0]["loss"], losses[-1]["loss"]] if losses else [],
        "grid_seconds": round(time.perf_counter() - started, 1),
        "dev_grid_ndcg@10": {label: round(s["metrics"]["ndcg@10"], 4) for label, s in scored.items()},
        "chosen": chosen.label(), "reasons": chosen.reasons,
    }))
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    tune = commands.add_parser("tune", help="one fine-tuning trial on the dev split, from a finished run's artifacts")
    kinds = tune.add_subparsers(dest="kind", required=True)
    e = kinds.add_parser("embedding", help="mine, fine-tune the encoder, print dev nDCG@10 of base and tuned")
    e.add_argument("--index-ref", default=".domret/scifact/refs/base_faiss_index.json",
                   help="reference of a base FAISS index; corpus_chunks.json and labeled_queries.json sit beside it")
    e.add_argument("--epochs", type=int, default=1)
    e.add_argument("--lr", type=float, default=2e-5)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--num-negatives", type=int, default=1)
    e.add_argument("--range", type=int, nargs=2, default=(10, 100))
    e.add_argument("--ratio", type=float, default=0.95)
    e.add_argument("--loss", default="mnrl")
    e.add_argument("--fill-random", action="store_true")
    e.add_argument("--lora", action="store_true")
    e.add_argument("--lora-r", type=int, default=16)
    e.add_argument("--max-seq-length", type=int, default=256)
    e.add_argument("--dev-candidates", type=int, default=10)
    e.add_argument("--patience", type=int, default=1)
    e.add_argument("--cached-mini-batch", type=int, default=16)
    e.add_argument("--train-precision", default="fp32", help="fp32, bf16 or auto (TrainingSettings.train_precision)")
    e.add_argument("--seed", type=int, default=42)
    e.set_defaults(func=cmd_tune_embedding)
    r = kinds.add_parser("reranker", help="train a LoRA reranker, score the serving grid on dev, print what would serve")
    r.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    r.add_argument("--base-model", default="packaged:all-MiniLM-L6-v2")
    r.add_argument("--loss", default="mnrl", choices=["mnrl", "lambda", "listnet", "bce"])
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--lr", type=float, default=5e-4)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--candidates", type=int, default=20)
    r.add_argument("--num-negatives", type=int, default=3)
    r.add_argument("--in-batch-negatives", type=int, default=3)
    r.add_argument("--max-length", type=int, default=256)
    r.add_argument("--lora-r", type=int, default=16)
    r.add_argument("--patience", type=int, default=1)
    r.add_argument("--grid-candidates", type=int, nargs="+", default=[20, 50])
    r.add_argument("--save", help="keep the trained adapter and merged model in this folder")
    r.set_defaults(func=cmd_tune_reranker)
    return [e, r]
