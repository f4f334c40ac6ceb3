"""Run the whole asset graph on a data set and print what BENCHMARKS.md records.

    python scripts/benchmark.py --config configs/scifact.yaml

Prints the machine, the per-asset wall time (from Dagster's step events), the process's
peak resident memory, and the evaluation report. Run from the project root.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--job", default="domret_full")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    import yaml
    from dagster import DagsterEventType, DagsterInstance

    from domret_pipeline.definitions import defs

    run_config = yaml.safe_load(Path(args.config).read_text())
    run_config.setdefault("loggers", {"console": {"config": {"log_level": "WARNING"}}})
    started = time.perf_counter()
    result = defs.resolve_job_def(args.job).execute_in_process(
        run_config=run_config, instance=DagsterInstance.get(), raise_on_error=True
    )
    wall = time.perf_counter() - started
    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"command: python scripts/benchmark.py --config {args.config}")
    print(f"run id: {result.run_id}\n")
    print("| step | wall s |\n|---|---|")
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_SUCCESS:
            print(f"| {event.step_key} | {event.event_specific_data.duration_ms / 1000:.1f} |")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| whole run | {wall:.1f} |\n\npeak resident memory of the run: {peak_mib:.0f} MiB\n")
    ref = result.output_for_node("evaluation_report")
    print(Path(ref.path, "report.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
