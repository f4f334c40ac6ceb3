"""Run the whole asset graph on a data set and print what BENCHMARKS.md records.

    python scripts/benchmark.py --config configs/scifact.yaml

Prints the machine, each step's wall time and peak resident memory (sampled every 0.2 s
and attributed to the step running at that moment: the job's in-process executor runs one
step at a time), the run's peak, and the evaluation report. Run from the project root.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--job", default="domret_full")
    parser.add_argument("--select", help="as `domret run --select`: 'a,b' or 'b+'; upstream assets are read from "
                        "their latest references (say so when you report the figures)")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    import yaml
    from dagster import DagsterEventType, DagsterInstance

    from domret_pipeline.cli import _asset_selection
    from domret_pipeline.definitions import defs

    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.time(), rss_mib()))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run_config = yaml.safe_load(Path(args.config).read_text())
    run_config.setdefault("loggers", {"console": {"config": {"log_level": "WARNING"}}})
    instance = DagsterInstance.get()
    started = time.perf_counter()
    selection = _asset_selection(defs, args.select) if args.select else None
    if selection is not None:
        run_config["ops"] = {k: v for k, v in run_config.get("ops", {}).items() if any(k == s.to_user_string() for s in selection)}
    from domret_pipeline.recovery import owner_tags
    from domret_pipeline.run_transactions import finish_run, prepare_run, stores_from_resources

    stores = stores_from_resources(defs.resources, run_config)
    for line in prepare_run(stores, instance):  # as `domret run`: close what killed runs left open
        print(f"sweep: {line}", file=sys.stderr)
    result = defs.resolve_job_def(args.job).execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=True, tags=owner_tags(),
        asset_selection=sorted(selection, key=str) if selection else None)
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

    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("command: python scripts/benchmark.py " + " ".join(sys.argv[1:]))
    print(f"run id: {result.run_id}\n")
    print("| step | wall s | peak RSS MiB |\n|---|---|---|")
    for step, (begin, end) in sorted(spans.items(), key=lambda kv: kv[1][0]):
        inside = [mib for t, mib in samples if begin <= t <= end]
        peak = f"{max(inside):.0f}" if inside else "–"
        print(f"| {step} | {end - begin:.1f} | {peak} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| whole run | {wall:.1f} | {peak_mib:.0f} |\n")
    print("Peak RSS is the process while the step ran, including what earlier steps left allocated.\n")
    if selection is None or any(s.to_user_string() == "evaluation_report" for s in selection):
        ref = result.output_for_node("evaluation_report")
        print(Path(ref.path, "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
