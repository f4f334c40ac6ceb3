"""The GPU side of ``domret gpu-tune``: train the trials of an embedding recipe search on a
bare GPU machine, keep the best on dev, send its weights back as fp16 deltas.

The machine has no data, no model, no faiss and no network, and only torch,
sentence-transformers, transformers and datasets installed; only ~64 MiB travel each way. So
this module imports nothing but the standard library and ``domret_pipeline.core`` (no
Dagster, MLflow, faiss or pydantic), and runs without the package installed, from a copy of
the repository root::

    python3 -m domret_pipeline.gpu_trials run --work .devicework --out "$OUT" --budget-s 420

(``domret gpu-tune run`` is the same step where the package is installed.) It reads the
trial list from ``--trials`` (configs/gpu_tune_embedding.yaml) and what ``domret gpu-tune
prepare`` wrote to ``--work``: the mined training rows of each variant, the dev task and the
base weights in float16 (fp32 does not fit the transfer limit). It trains from the
fp16-rounded base (relative change < 5e-4 per weight) and writes the best trial's weights as
fp16 *deltas* from that same rounded base, so the checkpoint ``domret gpu-tune restore``
rebuilds differs from the trained one only by the rounding of each change. Nothing here
reads the test split.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_TRIALS = "configs/gpu_tune_embedding.yaml"
DEFAULT_PATIENCE = 3
# What a trial may set: TrainingSettings fields, its mining variant, and from_best (see the config).
TRIAL_KEYS = {"name", "mining", "from_best", "epochs", "learning_rate", "batch_size", "early_stopping_patience",
              "loss_directions", "seed", "freeze_layers", "train_precision"}
# What a from_best trial takes over from the best trial so far.
RECIPE_KEYS = ("mining", "epochs", "learning_rate", "batch_size", "early_stopping_patience", "loss_directions",
               "freeze_layers")
WEIGHTS = "model.safetensors"
BASE_FP16 = "model_fp16.safetensors"
SHARD_BYTES = 12 * 2**20
PART = "@@"


def now() -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


def load_trials(path: str | Path) -> dict:
    """The search's config, checked before any GPU time is spent: ``mining`` variants, ``dev``
    task settings and ``trials`` (names unique, keys known, each naming a known variant)."""
    import yaml  # a dependency of transformers and datasets: present on the bare machine too

    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    problems, names = [], set()
    for trial in config.get("trials", []):
        name = trial.get("name")
        if not name or name in names:
            problems.append(f"trial {name!r}: missing or repeated name")
        names.add(name)
        if set(trial) - TRIAL_KEYS:
            problems.append(f"trial {name!r}: unknown keys {sorted(set(trial) - TRIAL_KEYS)}")
        if not trial.get("from_best") and trial.get("mining") not in config.get("mining", {}):
            problems.append(f"trial {name!r}: mining {trial.get('mining')!r} is not a variant under 'mining'")
        if not isinstance(trial.get("learning_rate", 0.0), (int, float)):
            problems.append(f"trial {name!r}: learning_rate {trial['learning_rate']!r} is not a number (write 5.0e-5)")
    if not config.get("trials"):
        problems.append("no trials")
    if problems:
        raise SystemExit(f"{path}: " + "; ".join(problems))
    return config


def read_work(work: Path) -> dict:
    """What ``prepare`` wrote: the mining variants' rows and the dev task."""
    with gzip.open(Path(work) / "data.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def dev_set(data: dict):
    from .core.training.bi_encoder import DevSet

    dev = data["dev"]
    return DevSet(dev["queries"], dev["corpus"], {q: set(r) for q, r in dev["relevant"].items()})


def rounded_base(base: Path, into: Path) -> Path:
    """The base model folder with its fp16-rounded weights upcast to fp32 (bit-identical here and there)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, into, ignore=shutil.ignore_patterns(BASE_FP16))
    weights = load_file(str(base / BASE_FP16))
    save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}, str(into / WEIGHTS))
    config = into / "config.json"
    data = json.loads(config.read_text())
    for key in ("torch_dtype", "dtype"):
        if key in data:
            data[key] = "float32"
    config.write_text(json.dumps(data, indent=2))
    return into


def write_deltas(tuned_dir: Path, base_dir: Path, out: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file, save_file

    tuned, base = load_file(str(tuned_dir / WEIGHTS)), load_file(str(base_dir / WEIGHTS))
    # Only weights: integer buffers (position_ids) may be saved on one side and not the other.
    tuned = {k: v for k, v in tuned.items() if v.is_floating_point()}
    if set(tuned) != {k for k, v in base.items() if v.is_floating_point()}:
        raise RuntimeError(f"tuned and base weights differ in keys: {sorted(set(tuned) ^ set(base))[:5]}")
    for old in out.glob("delta_*.safetensors"):
        old.unlink()
    # A shard may not exceed the transfer's per-file limit, and the word-embedding matrix alone
    # is 23 MB in fp16: large tensors are cut by rows into parts named "<key>@@<i>".
    pieces = []
    for key in sorted(tuned):
        delta = (tuned[key].float() - base[key].float()).half().contiguous()
        row_bytes = max(1, delta[0].numel() * 2) if delta.dim() > 0 else 2
        rows_per_part = max(1, SHARD_BYTES // row_bytes)
        if delta.dim() == 0 or delta.shape[0] <= rows_per_part:
            pieces.append((key, delta))
        else:
            for i, part in enumerate(torch.split(delta, rows_per_part)):
                pieces.append((f"{key}{PART}{i}", part.contiguous()))
    shards, current, size = [], {}, 0
    for key, delta in pieces:
        if current and size + delta.numel() * 2 > SHARD_BYTES:
            shards.append(current)
            current, size = {}, 0
        current[key] = delta
        size += delta.numel() * 2
    shards.append(current)
    names = []
    for i, shard in enumerate(shards):
        name = f"delta_{i}.safetensors"
        save_file(shard, str(out / name))
        names.append(name)
    return names


def _trial_order(trials: list[dict], only: str) -> list[dict]:
    if not only:
        return trials
    by_name = {t["name"]: t for t in trials}
    unknown = [n for n in only.split(",") if n not in by_name]
    if unknown:
        raise SystemExit(f"--only names unknown trials: {', '.join(unknown)}")
    return [by_name[n] for n in only.split(",")]


def run(args: argparse.Namespace) -> int:
    import torch

    from .core.training.bi_encoder import TrainingSettings, train_encoder

    started = time.perf_counter()
    trials = load_trials(args.trials)["trials"]
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = read_work(work)
    dev = dev_set(data)
    scratch = Path(tempfile.mkdtemp(prefix="gpu_tune_"))
    base = rounded_base(work / "base", scratch / "base")
    import sentence_transformers
    import transformers

    results = {"date": now(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "sentence_transformers": sentence_transformers.__version__},
               "command": args.command_line, "trials_config": str(args.trials),
               "dev_queries": len(dev.queries), "dev_corpus": len(dev.corpus), "beat": args.beat, "trials": [], "best": None}
    print(json.dumps({k: results[k] for k in ("device", "versions", "dev_queries", "dev_corpus")}), flush=True)
    per_epoch_s = None
    for trial in _trial_order(trials, args.only):
        if trial.get("from_best"):
            if results["best"] is None:
                continue
            recipe = next(t for t in results["trials"] if t["name"] == results["best"]["name"])
            trial = {**{k: recipe[k] for k in RECIPE_KEYS if k in recipe}, **trial, "recipe_of": recipe["name"]}
            trial["mining"] = recipe["mining"]["name"]
        variant = data["variants"][trial["mining"]]
        rows = [tuple(r) for r in variant["rows"]][: args.max_rows or None]
        epochs = args.max_epochs or trial["epochs"]
        # Each row holds a query, a positive and k negatives: cost grows with 2 + k texts.
        estimate = (per_epoch_s or 0.0) * epochs * (2 + variant["num_negatives"]) / 3
        elapsed = time.perf_counter() - started
        if elapsed + estimate > args.budget_s:
            print(f"skip {trial['name']}: {elapsed:.0f}s spent, ~{estimate:.0f}s needed, budget {args.budget_s}s", flush=True)
            results["trials"].append({"name": trial["name"], "skipped": "time budget"})
            continue
        settings = TrainingSettings(**{
            **data["training_defaults"],
            **{k: trial[k] for k in ("loss_directions", "seed", "freeze_layers", "train_precision") if k in trial},
            "epochs": epochs, "learning_rate": trial["learning_rate"], "batch_size": trial["batch_size"],
            "early_stopping_patience": trial.get("early_stopping_patience", DEFAULT_PATIENCE),
            "max_seq_length": 256, "device": args.device,
        })
        try:
            outcome = train_encoder(str(base), rows, variant["num_negatives"], dev, settings, scratch / trial["name"])
        except Exception as error:  # one failed trial (say, out of memory) must not lose the others
            print(f"trial {trial['name']} failed: {error!r}", flush=True)
            results["trials"].append({"name": trial["name"], "failed": repr(error)[:500]})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        epochs_run = max(1.0, outcome.dev_history[-1]["epoch"])
        per_epoch_s = outcome.seconds / epochs_run * 3 / (2 + variant["num_negatives"])
        entry = {**trial, "epochs": epochs, "train_rows": len(rows), "num_negatives": variant["num_negatives"],
                 "mining": {"name": trial["mining"], **variant["settings"], "removed": variant["removed"]},
                 "dev_ndcg@10_base": round(outcome.base_dev_score, 4), "dev_ndcg@10": round(outcome.dev_score, 4),
                 "best_epoch": outcome.best_epoch,
                 "dev_history": [round(e["dev_cosine_ndcg@10"], 4) for e in outcome.dev_history],
                 "train_seconds": round(outcome.seconds, 1)}
        results["trials"].append(entry)
        print(json.dumps(entry | {"mining": trial["mining"]}), flush=True)
        best = results["best"]
        if outcome.dev_score > max(args.beat, best["dev_ndcg@10"] if best else float("-inf")):
            tuned = scratch / f"{trial['name']}_model"
            outcome.model.save(str(tuned))
            shards = write_deltas(tuned, base, out)
            results["best"] = {"name": trial["name"], "dev_ndcg@10": outcome.dev_score, "shards": shards,
                               "settings": settings.as_dict(), "num_negatives": variant["num_negatives"],
                               "mining": variant["settings"]}
            shutil.rmtree(tuned, ignore_errors=True)
        del outcome
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        results["seconds"] = round(time.perf_counter() - started, 1)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))  # with the trials skipped at the end
    print(f"best on dev: {results['best'] and results['best']['name']} in {time.perf_counter() - started:.0f}s", flush=True)
    return 0


def add_run_arguments(r: argparse.ArgumentParser) -> argparse.ArgumentParser:
    r.add_argument("--work", default=".devicework")
    r.add_argument("--out", required=True)
    r.add_argument("--trials", default=DEFAULT_TRIALS, help="the search's config (trials and mining variants)")
    r.add_argument("--budget-s", type=float, default=420.0, help="start no trial expected to end after this")
    r.add_argument("--device", default="auto")
    r.add_argument("--only", default="", help="comma-separated trial names, run in the order given")
    r.add_argument("--beat", type=float, default=float("-inf"),
                   help="dev nDCG@10 of an earlier session's best: weights come back only from a trial above it")
    r.add_argument("--max-rows", type=int, default=0, help="smoke runs: cap the training rows")
    r.add_argument("--max-epochs", type=int, default=0, help="smoke runs: cap the epochs")
    r.set_defaults(func=run)
    return r


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python3 -m domret_pipeline.gpu_trials", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser.add_subparsers(dest="step", required=True).add_parser("run", help="train the trials"))
    args = parser.parse_args(argv)
    args.command_line = "python3 -m domret_pipeline.gpu_trials " + " ".join(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
