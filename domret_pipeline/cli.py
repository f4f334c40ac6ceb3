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

    home = os.environ.get("DOMRET_HOME", ".domret")
    ref_path = Path(home) / "refs" / "evaluation_report.json"
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
    for name in ("sentence_transformers", "transformers", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)


def cmd_run(args: argparse.Namespace) -> int:
    _ensure_dagster_home()
    import dagster as dg
    import yaml
    from dagster import DagsterInstance

    if not args.verbose:
        _quiet()

    from .definitions import defs

    run_config = {}
    if args.config:
        run_config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    if not args.verbose:  # Dagster's event stream is in the UI; keep the terminal to the report
        run_config.setdefault("loggers", {"console": {"config": {"log_level": "WARNING"}}})
    from .recovery import owner_tags
    from .run_transactions import finish_run, prepare_run, run_artifact, stores_from_resources

    job = defs.resolve_job_def(args.job)
    selection = _asset_selection(defs, args.select) if args.select else None
    if selection is not None:  # config of assets outside the selection would be rejected
        run_config["ops"] = {k: v for k, v in run_config.get("ops", {}).items() if dg.AssetKey(k) in selection}
    instance, stores = DagsterInstance.get(), stores_from_resources(defs.resources, run_config)
    for line in prepare_run(stores, instance):  # close what killed runs left open
        print(f"domret: {line}", file=sys.stderr)
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False, tags=owner_tags(),
                                    asset_selection=sorted(selection, key=str) if selection else None)
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.step_key:
                error = event.event_specific_data.error
                while error.cause is not None:  # the user's error, not Dagster's wrapper
                    error = error.cause
                print(f"domret: step {event.step_key} failed: {error.message.strip()}", file=sys.stderr)
        gate = next((e.event_specific_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION" and e.event_specific_data.check_name == "release_gate"
                     and not e.event_specific_data.passed), None)
        if gate is not None:
            from .core.release_evaluation import gate_summary

            # this run's report: a run that failed is not published, so the latest report is an older one
            report = json.loads((run_artifact(stores, result.run_id, "evaluation_report") / "report.json").read_text(encoding="utf-8"))
            print(gate_summary(report["release"]) + "\nThe challenger was not promoted; the champion is unchanged.",
                  file=sys.stderr)
        print(f"domret: run {result.run_id} failed; earlier artifacts are untouched", file=sys.stderr)
        return 1
    outcome = finish_run(stores, result.run_id)
    if not outcome.published:
        print(f"domret: {outcome.message()}; the latest references and the champion are unchanged", file=sys.stderr)
        return 1
    if selection is not None and dg.AssetKey("evaluation_report") not in selection:
        print(f"run {result.run_id} succeeded: materialized {', '.join(sorted(k.to_user_string() for k in selection))}")
        return 0
    ref = result.output_for_node("evaluation_report")
    print(f"run {result.run_id} succeeded; report: {ref.path}/report.html\n")
    print(Path(ref.path, "report.md").read_text(encoding="utf-8"))
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

    home = Path(args.home or os.environ.get("DOMRET_HOME", ".domret"))
    store = FeedbackStore(args.url or os.environ.get("DOMRET_FEEDBACK_URL") or f"sqlite:///{home}/feedback.db")
    store.migrate()
    return store


def cmd_feedback(args: argparse.Namespace) -> int:
    from .core.errors import InputDataError
    from .core.feedback import FeedbackLabel, read_feedback_file

    if args.action == "queue":
        from .core.artifacts import ArtifactRef

        home = Path(args.home or os.environ.get("DOMRET_HOME", ".domret"))
        ref_path = home / "refs" / "labeling_queue.json"
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
    if args.action == "import":
        try:
            labels = read_feedback_file(args.file)
        except (InputDataError, FileNotFoundError) as error:
            print(f"domret: nothing imported: {error}", file=sys.stderr)
            return 1
        for label in labels:
            label.source = label.source if label.source != "import" else f"import:{Path(args.file).name}"
    else:  # add: label one search result
        from .api import default_registry

        if not (args.doc or args.chunk):
            print("domret: feedback add needs --doc or --chunk", file=sys.stderr)
            return 1
        registry = default_registry(args.home)
        champion = registry.champion() if registry else None
        labels = [FeedbackLabel(query=args.query, label=args.label, doc_id=args.doc, chunk_id=args.chunk,
                                critical=args.critical, source="domret search", user=args.user or os.environ.get("USER", ""),
                                model_version=champion.version if champion else None)]
    result = store.add(labels)
    ids = f" (ids {result.first_id}-{result.last_id})" if result.inserted else ""
    print(f"{result.inserted} label(s) added{ids}, {result.duplicates} duplicate(s) ignored")
    return 0


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
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
