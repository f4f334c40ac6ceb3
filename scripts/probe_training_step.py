"""Time and peak memory of one fine-tuning step on this machine, before committing to a run.

    python scripts/probe_training_step.py --work .devicework --variant n3 --batch-size 64 [--loss cached_mnrl]

Trains one step (one batch of ``--batch-size`` rows) with core.training.train_encoder on the
rows that ``scripts/gpu_tune_embedding.py prepare`` wrote, against a three-query dev task (so
the dev passes cost next to nothing), and prints the step's seconds and the process's peak
resident memory. Multiply by steps per epoch to size a CPU run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", default=".devicework")
    parser.add_argument("--variant", default="n3", help="mining variant written by gpu_tune_embedding.py prepare")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loss", default="mnrl")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--freeze-layers", type=int, default=0, help="TrainingSettings.freeze_layers")
    parser.add_argument("--train-precision", default="fp32", help="fp32, bf16 or auto (TrainingSettings.train_precision)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from domret_pipeline.core.encoder import resolve_model_path
    from domret_pipeline.config import FineTuneConfig
    from domret_pipeline.core.training import DevSet, train_encoder

    with gzip.open(Path(args.work) / "data.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    variant = data["variants"][args.variant]
    rows = [tuple(r) for r in variant["rows"]][: args.batch_size]
    queries = dict(list(data["dev"]["queries"].items())[:3])
    corpus = dict(list(data["dev"]["corpus"].items())[:30])
    dev = DevSet(queries, corpus, {q: {next(iter(corpus))} for q in queries})
    settings = FineTuneConfig(epochs=1, batch_size=args.batch_size, loss=args.loss, max_seq_length=args.max_seq_length,
                              freeze_layers=args.freeze_layers, train_precision=args.train_precision).settings()
    with tempfile.TemporaryDirectory() as work:
        outcome = train_encoder(resolve_model_path(args.model), rows, variant["num_negatives"], dev, settings, Path(work))
    print(json.dumps({
        "date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "cpus": os.cpu_count(),
        "command": "python scripts/probe_training_step.py " + " ".join(sys.argv[1:]),
        "rows": len(rows), "texts_per_row": 2 + variant["num_negatives"], "loss": args.loss,
        "freeze_layers": args.freeze_layers, "train_precision": outcome.train_precision,
        "step_seconds": round(outcome.seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
