"""``domret``: run the pipeline from a shell, read its report, and the tools around it.

    domret run [--config run_config.yaml]   materialize the whole graph, print the report
    domret report [--json]                  print the latest evaluation report
    domret search "query" [--answer] [--json]  search (or answer) with the champion (or --run ID, or --latest)
    domret promote [VERSION]                list registered bundles, or promote one by hand
    domret rollback                         restore the previous champion
    domret feedback import|add|migrate|queue  the feedback store and the labeling queue
    domret audit list|export|purge|migrate  the audit trail of served requests
    domret incident AUDIT_ID | --query TEXT  review one served request: replays, lineage, causes
    domret shards encode [--workers N]      encode the stale corpus shards on Dask (vectors_from: shards)

    domret tune embedding|reranker|selector one fine-tuning trial on dev, from a run's artifacts
    domret eval                             base vs tuned retrieval on the frozen split
    domret bench graph|precision|access|index-scale|shards|training-step  the figures BENCHMARKS.md records
    domret gpu-tune prepare|run|restore|report  the embedding recipe search on a borrowed GPU
    domret sample [OUT]                     write the bundled sample data set

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (the project root by default,
where ``dagster.yaml`` lives), so they show up in ``dagster dev`` afterwards. The tools read a
run's published references (``--refs``), each re-hashed before use.
"""

from __future__ import annotations

import argparse
import os
import sys

# The everyday commands keep the terminal to their output; the tools (tune, eval, bench,
# gpu-tune) keep the libraries' progress bars, which show how far a long trial is.
_QUIET_COMMANDS = {"run", "report", "search", "promote", "rollback", "feedback", "audit", "incident"}


def build_parser() -> argparse.ArgumentParser:
    from . import audit, bench, evaluate, feedback, gpu_tune, incident, pipeline, sample, shards, tune

    parser = argparse.ArgumentParser(prog="domret", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (pipeline, feedback, audit, incident, shards, tune, evaluate, bench, gpu_tune, sample):
        for sub in module.add_parsers(commands):
            sub.add_argument("--verbose", action="store_true", help="show the stack trace of an unexpected error")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--verbose" not in argv and argv[:1] and argv[0] in _QUIET_COMMANDS:
        os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported: set it first
    args = build_parser().parse_args(argv)
    args.command_line = "domret " + " ".join(argv)
    try:
        return args.func(args)
    except Exception as error:  # a person gets one line; --verbose (and the Dagster event log) the trace
        if args.verbose:
            raise
        from ..run_summary import crash_line

        print(crash_line(args.command, error), file=sys.stderr)
        return 1
