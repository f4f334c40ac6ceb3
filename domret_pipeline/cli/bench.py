"""``domret bench graph|precision|access|index-scale|training-step``: the figures BENCHMARKS.md records.

    domret bench graph --config configs/scifact.yaml [--select 'reranker_adapter+']
    domret bench precision --refs .domret/scifact/refs [--throughput-sample 1024]
    domret bench training-step --work .devicework --variant n3 --batch-size 64
    domret bench access | index-scale   (bench_access.py, bench_index_scale.py)

``graph`` launches the job as ``domret run`` does (same config check, sweep and publication)
and prints the machine, each step's wall time and peak resident memory (sampled every 0.2 s
and attributed to the step running at that moment: the job's in-process executor runs one
step at a time), the run's peak, and the evaluation report. Run it from the project root.

``training-step`` trains one step (one batch of ``--batch-size`` rows) with the core's
``train_encoder`` on the rows ``domret gpu-tune prepare`` wrote, against a three-query dev
task (so the dev passes cost next to nothing), and prints the step's seconds and the
process's peak resident memory: multiply by steps per epoch to size a CPU run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from .common import offline, stamp


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cmd_bench_graph(args: argparse.Namespace) -> int:
    from dagster import DagsterEventType

    from ..run_transactions import finish_run
    from .pipeline import JobLaunch

    launch = JobLaunch(args, "WARNING")
    if launch.error:
        return launch.refused()
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), rss_mib()))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result, stores, instance = launch.execute(raise_on_error=True)
    wall = time.perf_counter() - started
    print(finish_run(stores, result.run_id).message(), file=sys.stderr)  # publish, as `domret run` does
    stop.set()
    sampler.join()

    spans: dict[str, list[float]] = {}
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            spans[event.step_key] = [entry.timestamp, entry.timestamp]
        elif event.event_type == DagsterEventType.STEP_SUCCESS and event.step_key in spans:
            spans[event.step_key][1] = entry.timestamp

    made = stamp(args)
    print(f"date: {made['date']}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"command: {made['command']}")
    print(f"run id: {result.run_id}\n")
    print("| step | wall s | peak RSS MiB |\n|---|---|---|")
    for step, (begin, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        inside = [mib for t, mib in samples if begin <= t <= end]
        peak = f"{max(inside):.0f}" if inside else "–"
        print(f"| {step} | {end - begin:.1f} | {peak} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| whole run | {wall:.1f} | {peak_mib:.0f} |\n")
    print("Peak RSS is the process while the step ran, including what earlier steps left allocated.\n")
    if launch.reports():
        ref = result.output_for_node("evaluation_report")
        print(Path(ref.path, "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_bench_training_step(args: argparse.Namespace) -> int:
    offline()
    from ..config import FineTuneConfig
    from ..core.retrieval.encoder import resolve_model_path
    from ..core.training.bi_encoder import DevSet, train_encoder
    from ..gpu_trials import read_work

    data = read_work(Path(args.work))
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
        **stamp(args), "cpus": os.cpu_count(),
        "rows": len(rows), "texts_per_row": 2 + variant["num_negatives"], "loss": args.loss,
        "freeze_layers": args.freeze_layers, "train_precision": outcome.train_precision,
        "step_seconds": round(outcome.seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }))
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    from .bench_access import add_access_parser
    from .bench_index_scale import add_index_scale_parser
    from .bench_precision import add_precision_parser
    from .bench_rewrite import add_rewrite_parser
    from .shards import add_bench_parser

    bench = commands.add_parser("bench", help="benchmarks: the whole graph, inference precision, one training step")
    kinds = bench.add_subparsers(dest="kind", required=True)
    g = kinds.add_parser("graph", help="run the graph; print each step's wall time and peak memory, and the report")
    g.add_argument("--config", required=True)
    g.add_argument("--job", default="domret_full")
    g.add_argument("--select", help="as `domret run --select`: 'a,b' or 'b+'; upstream assets are read from "
                   "their latest references (say so when you report the figures)")
    g.set_defaults(func=cmd_bench_graph)
    t = kinds.add_parser("training-step", help="time and peak memory of one fine-tuning step on this machine")
    t.add_argument("--work", default=".devicework")
    t.add_argument("--variant", default="n3", help="mining variant written by `domret gpu-tune prepare`")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--loss", default="mnrl")
    t.add_argument("--max-seq-length", type=int, default=256)
    t.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    t.add_argument("--freeze-layers", type=int, default=0, help="TrainingSettings.freeze_layers")
    t.add_argument("--train-precision", default="fp32", help="fp32, bf16 or auto (TrainingSettings.train_precision)")
    t.set_defaults(func=cmd_bench_training_step)
    return [g, add_precision_parser(kinds), add_access_parser(kinds), add_index_scale_parser(kinds),
            add_bench_parser(kinds), add_rewrite_parser(kinds), t]
