"""``domret gpu-tune prepare|run|restore|report``: the embedding recipe search on a borrowed
GPU machine, chosen on the dev split only.

    # 1. here, on the CPU: mine every negative variant of the trial config with the graph's own
    #    code and a run's published artifacts; write the training rows, the dev task and the
    #    base weights (fp16) to a work folder
    domret gpu-tune prepare --refs .domret/scifact/refs --work .devicework

    # 2. on the GPU machine (bare: see domret_pipeline/gpu_trials.py): train each trial, keep
    #    the best on dev, write its weights as fp16 deltas from the base
    python3 -m domret_pipeline.gpu_trials run --work .devicework --out "$OUT" --budget-s 420

    # 3. here: rebuild the dev-chosen checkpoint from the deltas, check its dev score
    domret gpu-tune restore --work .devicework --deltas DIR --model OUT_DIR --check-dev

    # the trials as a Markdown table (for BENCHMARKS.md)
    domret gpu-tune report DIR/results.json [...]

Then ``domret eval --tuned-model OUT_DIR`` scores it once on the frozen test split. The trials
and mining variants are configs/gpu_tune_embedding.yaml (``--trials``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

from .. import gpu_trials
from ..gpu_trials import BASE_FP16, PART, WEIGHTS
from .common import artifact_dir, labels_and_chunks, offline


def cmd_prepare(args: argparse.Namespace) -> int:
    offline()
    from safetensors.torch import load_file, save_file

    from ..config import FineTuneConfig, MiningConfig
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.training.bi_encoder_data import build_training_rows, dev_set_from_index, train_split

    config = gpu_trials.load_trials(args.trials)
    refs = Path(args.refs)
    index_dir = artifact_dir(refs, "base_faiss_index")
    labels, chunks = labels_and_chunks(refs)
    index, encoder, manifest = open_with_encoder(index_dir)
    split = train_split(labels, chunks, index, encoder)
    by_id = {c.chunk_id: c for c in chunks}
    variants = {}
    for name, variant in config["mining"].items():
        settings = MiningConfig(**variant, fill_random=True).settings()
        mined = split.mine(settings)
        rows = build_training_rows(mined, labels.queries, by_id, manifest.with_title)
        variants[name] = {"num_negatives": settings.num_negatives, "settings": settings.__dict__,
                          "removed": dict(mined.removed), "rows": rows}
        print(f"mining {name}: {len(rows)} rows, removed {dict(mined.removed)}")
    dev = dev_set_from_index(labels, chunks, index, encoder, **config["dev"], with_title=manifest.with_title)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    payload = {"created": gpu_trials.now(), "base_encoder": manifest.encoder, "base_faiss_index": index_dir.name,
               "dev": {"queries": dev.queries, "corpus": dev.corpus, "relevant": {q: sorted(r) for q, r in dev.relevant.items()}},
               "variants": variants,
               # The graph's training defaults travel with the data: the GPU machine has no
               # Dagster, so it cannot read FineTuneConfig, their one definition.
               "training_defaults": FineTuneConfig().settings().as_dict()}
    with gzip.open(work / "data.json.gz", "wt", encoding="utf-8") as f:
        json.dump(payload, f)
    base = work / "base"
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree(manifest.encoder_path, base, ignore=shutil.ignore_patterns(WEIGHTS, "*.bin", "__pycache__", "README.md"))
    weights = load_file(str(Path(manifest.encoder_path) / WEIGHTS))
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}, str(base / BASE_FP16))
    print(f"wrote {work}: {sum(f.stat().st_size for f in work.rglob('*') if f.is_file()) / 2**20:.1f} MiB")
    return 0


def apply_deltas(weights: dict, deltas: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    parts: dict[str, dict[int, object]] = {}
    for shard in sorted(deltas.glob("delta_*.safetensors")):
        for name, delta in load_file(str(shard)).items():
            key, _, index = name.partition(PART)
            parts.setdefault(key, {})[int(index or 0)] = delta
    seen = set()
    for key, pieces in parts.items():
        if sorted(pieces) != list(range(len(pieces))):
            raise SystemExit(f"incomplete transfer: parts {sorted(pieces)} of the delta for {key}")
        delta = torch.cat([pieces[i] for i in range(len(pieces))]) if len(pieces) > 1 else pieces[0]
        if delta.shape != weights[key].shape:
            raise SystemExit(f"incomplete transfer: the delta for {key} has shape {tuple(delta.shape)}, "
                             f"the weight {tuple(weights[key].shape)}")
        weights[key] = (weights[key].float() + delta.float()).contiguous()
        seen.add(key)
    missing = {k for k, v in weights.items() if v.is_floating_point()} - seen
    if missing:
        raise SystemExit(f"incomplete transfer: no delta for {sorted(missing)[:5]}")
    return weights


def cmd_restore(args: argparse.Namespace) -> int:
    from safetensors.torch import load_file, save_file

    work, deltas, model = Path(args.work), Path(args.deltas), Path(args.model)
    if model.exists():
        raise SystemExit(f"{model} exists: pick a new folder")
    # Built in a scratch folder beside the target and moved in whole: an incomplete transfer
    # leaves nothing behind that could be mistaken for a checkpoint.
    tmp = Path(tempfile.mkdtemp(prefix="restore_", dir=model.parent if model.parent.exists() else None))
    try:
        base = gpu_trials.rounded_base(work / "base", tmp / "model")
        save_file(apply_deltas(load_file(str(base / WEIGHTS)), deltas), str(base / WEIGHTS))
        os.replace(base, model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = json.loads((deltas / "results.json").read_text())
    (model / "gpu_tuning.json").write_text(json.dumps(results, indent=1))
    if args.check_dev:
        from ..core.retrieval.encoder import load_encoder
        from ..core.training.bi_encoder import DEV_METRIC, dev_evaluator

        dev = gpu_trials.dev_set(gpu_trials.read_work(work))
        score = dev_evaluator(dev, 32)(load_encoder(str(model), 256))[DEV_METRIC]
        print(json.dumps({"restored": str(model), "trial": results["best"]["name"],
                          "dev_ndcg@10_on_gpu": round(results["best"]["dev_ndcg@10"], 4), "dev_ndcg@10_here": round(score, 4)}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The trials of one or more `run` sessions as a Markdown table (for BENCHMARKS.md)."""
    print("| session | trial | negatives (window) | lr | batch | loss directions | seed | dev nDCG@10 by epoch (0 = base) | kept | training s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in args.results:
        results = json.loads(Path(path).read_text())
        session = f"{results['date']}, {results['device']}"
        for t in results["trials"]:
            if "dev_history" not in t:
                print(f"| {session} | {t['name']} | – | – | – | – | – | {t.get('skipped') or t.get('failed')} | – | – |")
                continue
            mining = t["mining"]
            directions = "all four" if len(t.get("loss_directions", [])) == 4 else "query_to_doc"
            print(f"| {session} | {t['name']} | {t['num_negatives']} ({mining['range_min']}–{mining['range_max']}) "
                  f"| {t['learning_rate']:g} | {t['batch_size']} | {directions} | {t.get('seed', 42)} "
                  f"| {', '.join(f'{x:.4f}' for x in t['dev_history'])} "
                  f"| **{t['dev_ndcg@10']:.4f}** (epoch {t['best_epoch']:g}) | {t['train_seconds']} |")
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    gpu = commands.add_parser("gpu-tune", help="embedding recipe search on a borrowed GPU: prepare, run, restore, report")
    steps = gpu.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare", help="here: mine every variant, write rows, dev task and fp16 base to --work")
    p.add_argument("--refs", default=".domret/scifact/refs")
    p.add_argument("--work", default=".devicework")
    p.add_argument("--trials", default=gpu_trials.DEFAULT_TRIALS, help="the search's config (mining variants, dev task)")
    p.set_defaults(func=cmd_prepare)
    r = gpu_trials.add_run_arguments(steps.add_parser(
        "run", help="on the GPU machine: train the trials, keep the best on dev (bare machine: python3 -m "
        "domret_pipeline.gpu_trials run)"))
    s = steps.add_parser("restore", help="here: rebuild the dev-chosen checkpoint from the deltas")
    s.add_argument("--work", default=".devicework")
    s.add_argument("--deltas", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--check-dev", action="store_true")
    s.set_defaults(func=cmd_restore)
    t = steps.add_parser("report", help="the trials of run sessions as a Markdown table")
    t.add_argument("results", nargs="+", help="results.json of run sessions")
    t.set_defaults(func=cmd_report)
    return [p, r, s, t]
