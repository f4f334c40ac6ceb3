"""Embedding recipe search on a borrowed GPU, chosen on the dev split only.

Three steps, because the GPU machine is bare (no data, no model, no faiss, no internet) and
only ~64 MiB travel each way:

    # 1. here, on the CPU: mine every negative variant with the graph's own code and artifacts,
    #    write the training rows, the dev task and the base weights (fp16) to a work folder
    python scripts/gpu_tune_embedding.py prepare --work .devicework

    # 2. on the GPU machine: train each trial with core.training.train_encoder (device cuda),
    #    keep the best on dev, write its weights as fp16 deltas from the base
    python scripts/gpu_tune_embedding.py run --work .devicework --out "$OUT" --budget-s 420

    # 3. here: rebuild the dev-chosen checkpoint from the deltas, check its dev score
    python scripts/gpu_tune_embedding.py restore --work .devicework --deltas DIR --model OUT_DIR

    # the trials as a Markdown table
    python scripts/gpu_tune_embedding.py report DIR/results.json [...]

Then `scripts/evaluate_retrieval.py --tuned-model OUT_DIR` scores it once on the frozen test
split. The base weights travel as float16 (fp32 does not fit the transfer limit), so the GPU
trains from the fp16-rounded base (relative change < 5e-4 per weight); the trained weights
come back as fp16 *deltas* from that same rounded base, so the rebuilt checkpoint differs
from the trained one only by the rounding of each change (about 5e-4 of the change). Both are stated next to the figures in BENCHMARKS.md.
Nothing here reads the test split.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

# Mining variants: (name, num_negatives, range_min, range_max, max_positive_ratio). fill_random
# as in the graph's SciFact config.
MINING_VARIANTS = [
    ("n1", 1, 10, 100, 0.95),
    ("n3", 3, 10, 100, 0.95),
    ("n5", 5, 10, 100, 0.95),
    ("n3_far", 3, 30, 100, 0.95),
]

# Trials in order of priority: the budget may cut the tail. "ref" is the recipe the graph used
# before this search (configs/scifact.yaml's six-epoch recipe).
ALL_DIRECTIONS = ["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"]
TRIALS = [
    {"name": "ref", "mining": "n1", "epochs": 6, "learning_rate": 5e-5, "batch_size": 32, "early_stopping_patience": 2},
    {"name": "n1_e12", "mining": "n1", "epochs": 12, "learning_rate": 5e-5, "batch_size": 32},
    {"name": "n3_e12", "mining": "n3", "epochs": 12, "learning_rate": 5e-5, "batch_size": 32},
    {"name": "n1_lr1e-4", "mining": "n1", "epochs": 12, "learning_rate": 1e-4, "batch_size": 32},
    {"name": "n1_gte", "mining": "n1", "epochs": 12, "learning_rate": 5e-5, "batch_size": 32,
     "loss_directions": ALL_DIRECTIONS},
    {"name": "n3_lr1e-4_b64", "mining": "n3", "epochs": 12, "learning_rate": 1e-4, "batch_size": 64},
    {"name": "n3_far", "mining": "n3_far", "epochs": 12, "learning_rate": 5e-5, "batch_size": 32},
    {"name": "n1_lr2e-4", "mining": "n1", "epochs": 12, "learning_rate": 2e-4, "batch_size": 32},
    {"name": "n5_e12", "mining": "n5", "epochs": 12, "learning_rate": 5e-5, "batch_size": 32},
    {"name": "n3_gte_lr1e-4", "mining": "n3", "epochs": 12, "learning_rate": 1e-4, "batch_size": 32,
     "loss_directions": ALL_DIRECTIONS},
    # The best recipe so far again with other seeds: how much of a dev gap is seed noise.
    {"name": "best_seed7", "from_best": True, "seed": 7},
    {"name": "best_seed13", "from_best": True, "seed": 13},
    # Second GPU session: the first session's choice (n3_lr1e-4_b64) with other seeds.
    {"name": "n3_lr1e-4_b64_seed7", "mining": "n3", "epochs": 12, "learning_rate": 1e-4, "batch_size": 64, "seed": 7},
    {"name": "n3_lr1e-4_b64_seed13", "mining": "n3", "epochs": 12, "learning_rate": 1e-4, "batch_size": 64, "seed": 13},
    # Third GPU session (issue 11): recipes a 2-core CPU can afford. Short schedules (the
    # learning rate decays to zero over fewer epochs) and frozen lower layers (a cheaper
    # backward pass), all on the chosen mining (n3) and batch (64).
    {"name": "cpu_e4_lr2e-4", "mining": "n3", "epochs": 4, "learning_rate": 2e-4, "batch_size": 64},
    {"name": "cpu_e4_lr1e-4", "mining": "n3", "epochs": 4, "learning_rate": 1e-4, "batch_size": 64},
    {"name": "cpu_e3_lr2e-4", "mining": "n3", "epochs": 3, "learning_rate": 2e-4, "batch_size": 64},
    {"name": "cpu_e4_lr2e-4_f3", "mining": "n3", "epochs": 4, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 3},
    {"name": "cpu_e6_lr1e-4", "mining": "n3", "epochs": 6, "learning_rate": 1e-4, "batch_size": 64},
    {"name": "cpu_e4_lr2e-4_f2", "mining": "n3", "epochs": 4, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 2},
    {"name": "cpu_e3_lr3e-4", "mining": "n3", "epochs": 3, "learning_rate": 3e-4, "batch_size": 64},
    {"name": "cpu_e6_lr2e-4", "mining": "n3", "epochs": 6, "learning_rate": 2e-4, "batch_size": 64},
    {"name": "cpu_e12_lr1e-4_f3", "mining": "n3", "epochs": 12, "learning_rate": 1e-4, "batch_size": 64, "freeze_layers": 3},
    {"name": "cpu_e4_lr2e-4_seed7", "mining": "n3", "epochs": 4, "learning_rate": 2e-4, "batch_size": 64, "seed": 7},
    {"name": "cpu_e4_lr2e-4_seed13", "mining": "n3", "epochs": 4, "learning_rate": 2e-4, "batch_size": 64, "seed": 13},
    {"name": "cpu_e6_lr2e-4_seed7", "mining": "n3", "epochs": 6, "learning_rate": 2e-4, "batch_size": 64, "seed": 7},
    {"name": "cpu_e6_lr2e-4_seed13", "mining": "n3", "epochs": 6, "learning_rate": 2e-4, "batch_size": 64, "seed": 13},
    {"name": "cpu_e5_lr2e-4", "mining": "n3", "epochs": 5, "learning_rate": 2e-4, "batch_size": 64},
    {"name": "cpu_e6_lr3e-4", "mining": "n3", "epochs": 6, "learning_rate": 3e-4, "batch_size": 64},
    {"name": "cpu_e6_lr2e-4_f2", "mining": "n3", "epochs": 6, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 2},
    {"name": "cpu_e8_lr2e-4_f3", "mining": "n3", "epochs": 8, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 3},
    # The fourth session's best with other seeds, and in bf16 mixed precision (same seed).
    {"name": "cpu_e8_lr2e-4_f3_bf16", "mining": "n3", "epochs": 8, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 3,
     "train_precision": "bf16"},
    {"name": "cpu_e8_lr2e-4_f3_seed7", "mining": "n3", "epochs": 8, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 3, "seed": 7},
    {"name": "cpu_e8_lr2e-4_f3_seed13", "mining": "n3", "epochs": 8, "learning_rate": 2e-4, "batch_size": 64, "freeze_layers": 3, "seed": 13},
]
RECIPE_KEYS = ("mining", "epochs", "learning_rate", "batch_size", "early_stopping_patience", "loss_directions",
               "freeze_layers")
DEFAULT_PATIENCE = 3
WEIGHTS = "model.safetensors"
SHARD_BYTES = 12 * 2**20
PART = "@@"


def _now() -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"


def prepare(args) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from safetensors.torch import load_file, save_file

    from domret_pipeline.core.artifacts import ArtifactRef, read_json
    from domret_pipeline.core.dense_index import DenseIndex
    from domret_pipeline.core.encoder import encode, load_encoder
    from domret_pipeline.core.labels import LabeledQueries
    from domret_pipeline.config import FineTuneConfig, MiningConfig
    from domret_pipeline.core.chunking import recorded_with_title
    from domret_pipeline.core.mining import mine
    from domret_pipeline.core.positives import positive_chunks
    from domret_pipeline.core.serialization import read_chunks
    from domret_pipeline.core.training_data import build_dev_set, build_training_rows

    refs = Path(args.refs)

    def ref(name: str) -> Path:
        return ArtifactRef.from_json((refs / f"{name}.json").read_text()).verify()

    index_dir = ref("base_faiss_index")
    manifest = read_json(index_dir / "manifest.json")
    chunks = read_chunks(ref("corpus_chunks") / "chunks.jsonl")
    labels = LabeledQueries.load(ref("labeled_queries"))
    index = DenseIndex.load(index_dir)
    vectors = index.index.reconstruct_n(0, index.index.ntotal)
    encoder = load_encoder(manifest["encoder_path"], manifest["max_seq_length"])
    train_ids, dev_ids = sorted(labels.qrels_for("train")), sorted(labels.qrels_for("dev"))
    qvec = encode(encoder, [labels.queries[q] for q in train_ids + dev_ids])
    qvec_by_id = dict(zip(train_ids + dev_ids, qvec))
    position = {c: i for i, c in enumerate(index.chunk_ids)}
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    by_id = {c.chunk_id: c for c in chunks}

    def score(qid, chunk_ids):
        return [float(vectors[position[c]] @ qvec_by_id[qid]) for c in chunk_ids]

    train_qrels = labels.qrels_for("train")
    positives = positive_chunks(train_qrels, chunks, [e for e in labels.evidence if e.query_id in train_qrels], score)
    variants = {}
    for name, k, lo, hi, ratio in MINING_VARIANTS:
        settings = MiningConfig(range_min=lo, range_max=hi, max_positive_ratio=ratio, num_negatives=k, fill_random=True).settings()
        mined = mine(train_ids, qvec[: len(train_ids)], index.chunk_ids, vectors, chunk_to_doc, train_qrels, positives, settings)
        rows = build_training_rows(mined, labels.queries, by_id, recorded_with_title(manifest))
        variants[name] = {"num_negatives": k, "settings": settings.__dict__, "removed": dict(mined.removed), "rows": rows}
        print(f"mining {name}: {len(rows)} rows, removed {dict(mined.removed)}")
    # The graph's defaults for the dev task evaluated after every epoch.
    defaults = FineTuneConfig()
    dev = build_dev_set(labels, "dev", chunks, vectors, qvec_by_id, defaults.dev_candidates_per_query,
                        defaults.dev_random_chunks, with_title=recorded_with_title(manifest))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    payload = {"created": _now(), "base_encoder": manifest["encoder"], "base_faiss_index": index_dir.name,
               "dev": {"queries": dev.queries, "corpus": dev.corpus, "relevant": {q: sorted(r) for q, r in dev.relevant.items()}},
               "variants": variants,
               # The graph's training defaults travel with the data: the GPU machine has no
               # Dagster, so it cannot read FineTuneConfig, their one definition.
               "training_defaults": defaults.settings().as_dict()}
    with gzip.open(work / "data.json.gz", "wt", encoding="utf-8") as f:
        json.dump(payload, f)
    base = work / "base"
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree(manifest["encoder_path"], base, ignore=shutil.ignore_patterns(WEIGHTS, "*.bin", "__pycache__", "README.md"))
    weights = load_file(str(Path(manifest["encoder_path"]) / WEIGHTS))
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in weights.items()}, str(base / "model_fp16.safetensors"))
    print(f"wrote {work}: {sum(f.stat().st_size for f in work.rglob('*') if f.is_file()) / 2**20:.1f} MiB")
    return 0


def _rounded_base(base: Path, into: Path) -> Path:
    """The base model folder with its fp16-rounded weights upcast to fp32 (bit-identical here and there)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(base, into, ignore=shutil.ignore_patterns("model_fp16.safetensors"))
    weights = load_file(str(base / "model_fp16.safetensors"))
    save_file({k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}, str(into / WEIGHTS))
    config = into / "config.json"
    data = json.loads(config.read_text())
    for key in ("torch_dtype", "dtype"):
        if key in data:
            data[key] = "float32"
    config.write_text(json.dumps(data, indent=2))
    return into


def _write_deltas(tuned_dir: Path, base_dir: Path, out: Path) -> list[str]:
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


def run(args) -> int:
    import torch

    from domret_pipeline.core.training import DevSet, TrainingSettings, train_encoder

    started = time.perf_counter()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(work / "data.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    dev = DevSet(data["dev"]["queries"], data["dev"]["corpus"], {q: set(r) for q, r in data["dev"]["relevant"].items()})
    scratch = Path(tempfile.mkdtemp(prefix="gpu_tune_"))
    base = _rounded_base(work / "base", scratch / "base")
    import sentence_transformers
    import transformers

    results = {"date": _now(), "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                            "sentence_transformers": sentence_transformers.__version__},
               "command": "python scripts/gpu_tune_embedding.py " + " ".join(sys.argv[1:]),
               "dev_queries": len(dev.queries), "dev_corpus": len(dev.corpus), "beat": args.beat, "trials": [], "best": None}
    print(json.dumps({k: results[k] for k in ("device", "versions", "dev_queries", "dev_corpus")}), flush=True)
    only = set(args.only.split(",")) if args.only else None
    per_epoch_s = None
    by_name = {t["name"]: t for t in TRIALS}
    for trial in [by_name[n] for n in args.only.split(",")] if only else TRIALS:
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
            shards = _write_deltas(tuned, base, out)
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


def _apply_deltas(weights: dict, deltas: Path) -> dict:
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


def restore(args) -> int:
    from safetensors.torch import load_file, save_file

    work, deltas, model = Path(args.work), Path(args.deltas), Path(args.model)
    if model.exists():
        raise SystemExit(f"{model} exists: pick a new folder")
    # Built in a scratch folder beside the target and moved in whole: an incomplete transfer
    # leaves nothing behind that could be mistaken for a checkpoint.
    tmp = Path(tempfile.mkdtemp(prefix="restore_", dir=model.parent if model.parent.exists() else None))
    try:
        base = _rounded_base(work / "base", tmp / "model")
        save_file(_apply_deltas(load_file(str(base / WEIGHTS)), deltas), str(base / WEIGHTS))
        os.replace(base, model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = json.loads((deltas / "results.json").read_text())
    (model / "gpu_tuning.json").write_text(json.dumps(results, indent=1))
    if args.check_dev:
        from domret_pipeline.core.encoder import load_encoder
        from domret_pipeline.core.training import DevSet, _evaluator

        with gzip.open(work / "data.json.gz", "rt", encoding="utf-8") as f:
            data = json.load(f)
        dev = DevSet(data["dev"]["queries"], data["dev"]["corpus"], {q: set(r) for q, r in data["dev"]["relevant"].items()})
        score = _evaluator(dev, 32)(load_encoder(str(model), 256))["dev_cosine_ndcg@10"]
        print(json.dumps({"restored": str(model), "trial": results["best"]["name"],
                          "dev_ndcg@10_on_gpu": round(results["best"]["dev_ndcg@10"], 4), "dev_ndcg@10_here": round(score, 4)}))
    return 0


def report(args) -> int:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--refs", default=".domret/scifact/refs")
    p.add_argument("--work", default=".devicework")
    r = sub.add_parser("run")
    r.add_argument("--work", default=".devicework")
    r.add_argument("--out", required=True)
    r.add_argument("--budget-s", type=float, default=420.0, help="start no trial expected to end after this")
    r.add_argument("--device", default="auto")
    r.add_argument("--only", default="", help="comma-separated trial names, run in the order given")
    r.add_argument("--beat", type=float, default=float("-inf"),
                   help="dev nDCG@10 of an earlier session's best: weights come back only from a trial above it")
    r.add_argument("--max-rows", type=int, default=0, help="smoke runs: cap the training rows")
    r.add_argument("--max-epochs", type=int, default=0, help="smoke runs: cap the epochs")
    s = sub.add_parser("restore")
    s.add_argument("--work", default=".devicework")
    s.add_argument("--deltas", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--check-dev", action="store_true")
    t = sub.add_parser("report")
    t.add_argument("results", nargs="+", help="results.json of run sessions")
    args = parser.parse_args()
    return {"prepare": prepare, "run": run, "restore": restore, "report": report}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
