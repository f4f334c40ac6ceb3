"""``domret``: run the pipeline from a shell and read its report.

    domret run [--config run_config.yaml]   materialize the whole graph, print the report
    domret report [--json]                  print the latest evaluation report
    domret search "query" [--json]          search with the champion (or --run ID, or --latest)
    domret promote [VERSION]                list registered bundles, or promote one by hand
    domret rollback                         restore the previous champion
    domret feedback import|add|migrate|queue  the feedback store and the labeling queue

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (the project root by default,
where ``dagster.yaml`` lives), so they show up in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _ensure_dagster_home() -> None:
    if not os.environ.get("DAGSTER_HOME"):
        if not Path("dagster.yaml").is_file():
            sys.exit("domret: set DAGSTER_HOME, or run from the project root (where dagster.yaml is)")
        os.environ["DAGSTER_HOME"] = str(Path.cwd())


def _latest_report_dir() -> Path:
    from .core.artifacts import ArtifactRef

    from .locations import home

    ref_path = home() / "refs" / "evaluation_report.json"
    if not ref_path.is_file():
        sys.exit(f"domret: no evaluation report yet ({ref_path} is missing): run `domret run` first")
    return ArtifactRef.from_json(ref_path.read_text(encoding="utf-8")).verify()


def _quiet() -> None:
    """Keep the terminal to the report: no beta notices, progress bars, weight-loading reports
    or deprecation chatter from the libraries (``--verbose`` keeps them)."""
    import logging
    import warnings

    import dagster

    warnings.filterwarnings("ignore", category=dagster.BetaWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    for name in ("sentence_transformers", "transformers", "peft", "bm25s"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _show_progress() -> None:
    """Print the long steps' progress lines (``domret.progress``) on the terminal while the
    rest of Dagster's event stream stays in the UI."""
    import logging

    logger = logging.getLogger("domret.progress")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def cmd_run(args: argparse.Namespace) -> int:
    _ensure_dagster_home()
    import dagster as dg
    from dagster import DagsterInstance

    _show_progress()
    from .definitions import defs
    from .run_config import RunConfigError, check_run_config, load_run_config

    from .recovery import owner_tags
    from .run_transactions import finish_run, prepare_run, stores_from_resources

    job = defs.resolve_job_def(args.job)
    selection = _asset_selection(defs, args.select) if args.select else None
    try:  # the whole file against the whole job, before the selection filters it and before any step
        run_config = load_run_config(args.config) if args.config else {}
        check_run_config(job, run_config, args.config)
    except RunConfigError as error:
        for line in str(error).splitlines():
            print(f"domret: {line}", file=sys.stderr)
        print(f"domret: nothing ran: fix {args.config or 'the run config'} (README: Configuration reference)",
              file=sys.stderr)
        return 2
    if not args.verbose:
        _quiet()
        # Dagster's event stream (stack traces included) is in the UI and the event log; the
        # terminal gets the report, or one summary of what failed (run_summary).
        run_config.setdefault("loggers", {"console": {"config": {"log_level": "CRITICAL"}}})
    if selection is not None:  # config of assets outside the selection would be rejected
        run_config["ops"] = {k: v for k, v in run_config.get("ops", {}).items() if dg.AssetKey(k) in selection}
    instance, stores = DagsterInstance.get(), stores_from_resources(defs.resources, run_config)
    for line in prepare_run(stores, instance):  # close what killed runs left open
        print(f"domret: {line}", file=sys.stderr)
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False, tags=owner_tags(),
                                    asset_selection=sorted(selection, key=str) if selection else None)
    from .run_summary import failed_checks, failure_lines, quarantine_lines, run_artifact

    if not result.success:
        if any(c.check_name == "release_gate" for c in failed_checks(result)):
            from .core.release_evaluation import gate_summary

            # this run's report (from its own materialization): a run that failed is not
            # published, so the latest report is an older one
            report_dir = run_artifact(result, "evaluation_report") or _latest_report_dir()
            report = json.loads((Path(report_dir) / "report.json").read_text(encoding="utf-8"))
            print(gate_summary(report["release"]) + "\nThe challenger was not promoted; the champion is unchanged.",
                  file=sys.stderr)
        print("\n".join(quarantine_lines(result) + failure_lines(result)), file=sys.stderr)
        return 1
    outcome = finish_run(stores, result.run_id)
    if not outcome.published:
        print(f"domret: {outcome.message()}; the latest references and the champion are unchanged", file=sys.stderr)
        return 1
    if selection is not None and dg.AssetKey("evaluation_report") not in selection:
        print(f"run {result.run_id} succeeded: materialized {', '.join(sorted(k.to_user_string() for k in selection))}")
    else:
        ref = result.output_for_node("evaluation_report")
        print(f"run {result.run_id} succeeded; report: {ref.path}/report.html\n")
        print(Path(ref.path, "report.md").read_text(encoding="utf-8"))
    for line in quarantine_lines(result):  # at the end, where a person looks
        print(line)
    return 0


def _asset_selection(defs, spec: str):
    """``a,b+``: the assets a and b, and everything downstream of b. Upstream assets outside
    the selection are read from their latest materialized references."""
    import dagster as dg

    graph = defs.get_repository_def().asset_graph
    known = {k.to_user_string() for k in graph.get_all_asset_keys()}
    keys: set = set()
    for item in (part.strip() for part in spec.split(",") if part.strip()):
        name = item.rstrip("+")
        if name not in known:
            sys.exit(f"domret: unknown asset {name!r} in --select (known: {', '.join(sorted(known))})")
        selection = dg.AssetSelection.assets(name)
        if item.endswith("+"):
            selection = selection.downstream()
        keys |= set(selection.resolve(graph))
    return keys


def cmd_report(args: argparse.Namespace) -> int:
    folder = _latest_report_dir()
    if args.json:
        print(json.dumps(json.loads((folder / "report.json").read_text(encoding="utf-8")), indent=2))
    else:
        print((folder / "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    _quiet()
    from .api import NotMaterializedError, load_search_pipeline

    try:
        pipeline = load_search_pipeline(args.home, args.run, rerank=False if args.no_rerank else None, top_n=args.top_n,
                                        latest=args.latest)
    except NotMaterializedError as error:
        print(f"domret: {error}", file=sys.stderr)
        return 1
    results = pipeline.search(args.query)
    if args.json:
        print(json.dumps({"serving": pipeline.config.as_dict(), "results": [r.as_dict() for r in results]}, indent=2))
        return 0
    print(f"serving: {pipeline.config.label()}   (label a result: domret feedback add QUERY relevant --chunk CHUNK_ID)")
    for result in results:
        stages = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items())
        print(f"\nquery: {result.query}   ({stages})")
        for hit in result.hits:
            scores = " ".join(f"{k}={v:.3f}" for k, v in hit.scores.items())
            snippet = " ".join(hit.text.split())[:160]
            print(f"{hit.rank:>3}. {hit.chunk_id} (document {hit.doc_id}, chars {hit.start}-{hit.end}) {hit.title[:60]}"
                  f"\n     {scores}\n     {snippet}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from .api import default_registry

    registry = default_registry(args.home)
    if registry is None or not registry.versions():
        print("domret: no registered bundle yet: a run whose release gate passes registers one", file=sys.stderr)
        return 1
    if args.version is None:
        champion = registry.champion()
        for v in registry.versions():
            mark = " <- " + ", ".join(v.aliases) if v.aliases else ""
            print(f"v{v.version}  serving_config {v.serving_config['sha256'][:12]}  "
                  f"nDCG@10 {v.metrics.get('ndcg@10', float('nan')):.4f}{mark}")
        print(f"champion: v{champion.version}" if champion else "champion: none")
        return 0
    version = registry.promote(str(args.version))
    print(f"champion: v{version.version} (serving_config {version.serving_config['path']})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from .api import default_registry

    registry = default_registry(args.home)
    try:
        if registry is None:
            raise LookupError("no registry yet")
        version = registry.rollback()
    except LookupError as error:
        print(f"domret: cannot roll back: {error}", file=sys.stderr)
        return 1
    print(f"champion: v{version.version} (serving_config {version.serving_config['path']})")
    return 0


def _feedback_store(args):
    from .core.feedback import FeedbackStore

    from .locations import feedback_url

    store = FeedbackStore(feedback_url(args.home, args.url))
    store.migrate()
    return store


def cmd_feedback(args: argparse.Namespace) -> int:
    from .core.errors import InputDataError, RowIssue
    from .core.feedback import FeedbackLabel
    from .locations import home

    if args.action == "queue":
        from .core.artifacts import ArtifactRef

        ref_path = home(args.home) / "refs" / "labeling_queue.json"
        if not ref_path.is_file():
            print(f"domret: no labeling queue yet ({ref_path} is missing): run `domret run` first", file=sys.stderr)
            return 1
        text = (ArtifactRef.from_json(ref_path.read_text(encoding="utf-8")).verify() / "queue.jsonl").read_text(encoding="utf-8")
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"{len(text.splitlines())} queries written to {args.out}")
        else:
            print(text, end="")
        return 0
    store = _feedback_store(args)
    if args.action == "migrate":
        print(f"feedback store {store.url}: schema version {store.version()}")
        return 0
    from .core.feedback_files import COMMAND_LINE, check_label, known_ids, read_feedback

    # Ids are checked against the latest published corpus and labels; before any run there
    # is nothing to check them against, and the user is told so.
    known = known_ids(os.environ.get("DOMRET_REFS_DIR") or home(args.home) / "refs")
    quarantined = []
    if args.action == "import":
        try:
            read = read_feedback(args.file, known, args.on_bad_rows)
        except (InputDataError, FileNotFoundError) as error:
            return _refused(error, "nothing imported", "fix the rows, or import the good ones with --on-bad-rows quarantine")
        labels, quarantined = read.labels, read.quarantined
        for label in labels:
            label.source = label.source if label.source != "import" else f"import:{Path(args.file).name}"
    else:  # add: label one search result
        from .api import default_registry

        if not (args.doc or args.chunk):
            print("domret: feedback add needs --doc or --chunk", file=sys.stderr)
            return 1
        registry = default_registry(args.home)
        champion = registry.champion() if registry else None
        labels = [FeedbackLabel(query=args.query.strip(), label=args.label, doc_id=args.doc, chunk_id=args.chunk,
                                critical=args.critical, source="domret search", user=args.user or os.environ.get("USER", ""),
                                model_version=champion.version if champion else None)]
        reason = check_label(labels[0], known)
        if reason is not None:
            return _refused(InputDataError(RowIssue(COMMAND_LINE, 0, reason)), "nothing added",
                            "use a query text and the ids `domret search` prints")
    if known.missing:
        print(f"note: ids not checked against {', '.join(known.missing)}: not materialized yet", file=sys.stderr)
    result = store.add(labels)
    ids = f" (ids {result.first_id}-{result.last_id})" if result.inserted else ""
    print(f"{result.inserted} label(s) added{ids}, {result.duplicates} duplicate(s) ignored"
          + (f", {len(quarantined)} bad row(s) quarantined (not stored):" if quarantined else ""))
    for issue in quarantined[:20]:
        print(f"  - {issue}")
    if len(quarantined) > 20:
        print(f"  ... and {len(quarantined) - 20} more")
    return 0


def _refused(error: Exception, what: str, advice: str) -> int:
    """One line per bad row, then one summary; a single problem is a single line."""
    issues = getattr(error, "issues", None)
    if not issues:
        print(f"domret: {what}: {error}", file=sys.stderr)
    elif len(issues) == 1:
        print(f"domret: {what}: {issues[0]}", file=sys.stderr)
    else:
        for issue in issues:
            print(f"domret: {issue}", file=sys.stderr)
        print(f"domret: {what}: {len(issues)} bad rows; {advice}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    if "--verbose" not in (argv if argv is not None else sys.argv):
        os.environ.setdefault("TQDM_DISABLE", "1")  # read when tqdm is imported: set it first
    parser = argparse.ArgumentParser(prog="domret", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize the whole asset graph and print the evaluation report")
    run.add_argument("--config", help="Dagster run config YAML (see configs/)")
    run.add_argument("--job", default="domret_full")
    run.add_argument("--select", help="materialize only these assets: 'a,b' or 'b+' (b and everything downstream); "
                     "upstream assets are read from their latest references")
    run.add_argument("--verbose", action="store_true", help="print Dagster's step events")
    run.set_defaults(func=cmd_run)
    report = commands.add_parser("report", help="print the latest evaluation report")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_report)
    search = commands.add_parser("search", help="search the corpus with the served pipeline")
    search.add_argument("query", nargs="+", help="one or more queries (quote each)")
    search.add_argument("--top-n", type=int, help="passages per query (default: the served configuration's)")
    search.add_argument("--run", help="serve the artifacts of this Dagster run id instead of the champion")
    search.add_argument("--latest", action="store_true", help="serve the latest materialized bundle, promoted or not")
    search.add_argument("--home", help="DOMRET_HOME holding refs/ (default: $DOMRET_HOME or .domret)")
    search.add_argument("--no-rerank", action="store_true", help="skip the reranker even where it serves")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.set_defaults(func=cmd_search)
    promote = commands.add_parser("promote", help="list registered bundles, or make one the champion by hand")
    promote.add_argument("version", nargs="?", help="version to promote (omit to list versions and aliases)")
    promote.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
    promote.set_defaults(func=cmd_promote)
    rollback = commands.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
    rollback.set_defaults(func=cmd_rollback)
    feedback = commands.add_parser("feedback", help="the feedback store: import, add, migrate, queue")
    feedback_actions = feedback.add_subparsers(dest="action", required=True)
    f_import = feedback_actions.add_parser("import", help="import a JSONL or CSV file of labels (all or nothing)")
    f_import.add_argument("file")
    f_import.add_argument("--on-bad-rows", choices=["fail", "quarantine"], default="fail",
                          help="fail: import nothing if a row is bad (default); quarantine: import the good rows, "
                          "list and count the bad ones")
    f_add = feedback_actions.add_parser("add", help="label one search result")
    f_add.add_argument("query")
    f_add.add_argument("label", choices=["relevant", "not_relevant", "partially_relevant", "answer_unsupported"])
    f_add.add_argument("--doc", help="document id of the result")
    f_add.add_argument("--chunk", help="chunk id of the result (as `domret search` prints it)")
    f_add.add_argument("--critical", action="store_true", help="retrain without waiting for more labels")
    f_add.add_argument("--user")
    feedback_actions.add_parser("migrate", help="create or upgrade the feedback schema")
    f_queue = feedback_actions.add_parser("queue", help="print (or --out) the latest labeling queue")
    f_queue.add_argument("--out")
    for sub in (f_import, f_add, feedback_actions.choices["migrate"], f_queue):
        sub.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
        sub.add_argument("--url", help="feedback store URL (default: $DOMRET_FEEDBACK_URL or sqlite under DOMRET_HOME)")
    feedback.set_defaults(func=cmd_feedback)
    for sub in (report, search, promote, rollback, *feedback_actions.choices.values()):
        sub.add_argument("--verbose", action="store_true", help="show the stack trace of an unexpected error")
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:  # a person gets one line; --verbose (and the Dagster event log) the trace
        if args.verbose:
            raise
        from .run_summary import crash_line

        print(crash_line(args.command, error), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
