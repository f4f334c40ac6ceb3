"""``domret run|report|search|promote|rollback``: run the graph, read its report, serve and
release what it produced.

Runs are recorded in the Dagster instance at ``$DAGSTER_HOME`` (the project root by default,
where ``dagster.yaml`` lives), so they show up in ``dagster dev`` afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..run_config import selected_run_config
from .common import asset_selection, domret_home, ensure_dagster_home, quiet, show_progress


def _latest_report_dir(args: argparse.Namespace | None = None) -> Path:
    from ..publication import latest_ref

    try:
        return Path(latest_ref(domret_home(args) / "refs", "evaluation_report").path)
    except FileNotFoundError as error:
        sys.exit(f"domret: no evaluation report yet: {error}")


class JobLaunch:
    """A job, its checked run config and its asset selection, ready to execute as ``domret
    run`` does: ``domret bench graph`` times the same launch."""

    def __init__(self, args: argparse.Namespace, console_level: str | None):
        ensure_dagster_home()
        from ..definitions import defs
        from ..run_config import RunConfigError, check_run_config, load_run_config

        self.defs, self.job = defs, defs.resolve_job_def(args.job)
        self.selection = asset_selection(defs, args.select) if args.select else None
        self.error: str | None = None
        try:  # the whole file against the whole job, before the selection filters it and before any step
            self.run_config = load_run_config(args.config) if args.config else {}
            check_run_config(self.job, self.run_config, args.config)
        except RunConfigError as error:
            self.error = str(error) + f"\nnothing ran: fix {args.config or 'the run config'} (README: Configuration reference)"
            return
        if console_level:  # else Dagster's own console logger
            self.run_config.setdefault("loggers", {"console": {"config": {"log_level": console_level}}})
        selected_run_config(self.run_config, self.selection)

    def refused(self) -> int:
        for line in (self.error or "").splitlines():
            print(f"domret: {line}", file=sys.stderr)
        return 2

    def execute(self, raise_on_error: bool):
        """Close what killed runs left open, then run in process; returns (result, stores, instance)."""
        from dagster import DagsterInstance

        from ..recovery import owner_tags
        from ..run_transactions import prepare_run, stores_from_resources

        instance, stores = DagsterInstance.get(), stores_from_resources(self.defs.resources, self.run_config)
        for line in prepare_run(stores, instance):
            print(f"domret: {line}", file=sys.stderr)
        result = self.job.execute_in_process(
            run_config=self.run_config, instance=instance, raise_on_error=raise_on_error, tags=owner_tags(),
            asset_selection=sorted(self.selection, key=str) if self.selection else None)
        return result, stores, instance

    def reports(self) -> bool:
        """Whether the launch materializes the evaluation report."""
        return self.selection is None or any(k.to_user_string() == "evaluation_report" for k in self.selection)


def cmd_run(args: argparse.Namespace) -> int:
    show_progress()
    # Without --verbose, Dagster's event stream (stack traces included) stays in the UI and the
    # event log; the terminal gets the report, or one summary of what failed (run_summary).
    launch = JobLaunch(args, None if args.verbose else "CRITICAL")
    if launch.error:
        return launch.refused()
    if not args.verbose:
        quiet()
    result, stores, _ = launch.execute(raise_on_error=False)
    from ..run_summary import failed_checks, failure_lines, quarantine_lines, run_artifact

    if not result.success:
        if any(c.check_name == "release_gate" for c in failed_checks(result)):
            from ..core.release.comparison import gate_summary

            # this run's report (from its own materialization): a run that failed is not
            # published, so the latest report is an older one
            report_dir = run_artifact(result, "evaluation_report") or _latest_report_dir()
            report = json.loads((Path(report_dir) / "report.json").read_text(encoding="utf-8"))
            print(gate_summary(report["release"]) + "\nThe challenger was not promoted; the champion is unchanged.",
                  file=sys.stderr)
        print("\n".join(quarantine_lines(result) + failure_lines(result)), file=sys.stderr)
        return 1
    from ..run_transactions import finish_run

    outcome = finish_run(stores, result.run_id)
    if not outcome.published:
        print(f"domret: {outcome.message()}; the latest references and the champion are unchanged", file=sys.stderr)
        return 1
    if not launch.reports():
        print(f"run {result.run_id} succeeded: materialized {', '.join(sorted(k.to_user_string() for k in launch.selection))}")
    else:
        ref = result.output_for_node("evaluation_report")
        print(f"run {result.run_id} succeeded; report: {ref.path}/report.html\n")
        print(Path(ref.path, "report.md").read_text(encoding="utf-8"))
    for line in quarantine_lines(result):  # at the end, where a person looks
        print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    folder = _latest_report_dir(args)
    if args.json:
        print(json.dumps(json.loads((folder / "report.json").read_text(encoding="utf-8")), indent=2))
    else:
        print((folder / "report.md").read_text(encoding="utf-8"))
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    quiet()
    from ..api import NotMaterializedError, load_service

    try:
        service = load_service(args.home, args.run, rerank=False if args.no_rerank else None, top_n=args.top_n,
                               latest=args.latest)
    except NotMaterializedError as error:
        print(f"domret: {error}", file=sys.stderr)
        return 1
    from ..core.retrieval.access import Principal

    pipeline = service.pipeline
    principal = Principal.of(args.principal)  # no --as: public documents only
    try:  # one audited request per query
        served = [service.answer(q, principal) if args.answer else service.search(q, principal) for q in args.query]
    finally:
        service.close()
    if service.audit_failures:
        print(f"domret: audit: {service.audit_failures} row(s) not written to {service.audit.url}: "
              f"{service.audit.last_error}", file=sys.stderr)
    if args.json:
        print(json.dumps({"serving": pipeline.config.as_dict(), "principal": principal.as_list(),
                          "results": [s.as_dict() for s in served]}, indent=2))
        return 0
    print(f"serving: {pipeline.config.label()}   as: {principal.label()}   "
          "(label a result: domret feedback add QUERY relevant --chunk CHUNK_ID)")
    for one in served:
        result = one.result
        stages = ", ".join(f"{k} {v:.0f} ms" for k, v in one.latency_ms.items())
        print(f"\nquery: {result.query}   ({stages}; audit request {one.request_id})")
        for hit in result.hits:
            scores = " ".join(f"{k}={v:.3f}" for k, v in hit.scores.items())
            snippet = " ".join(hit.text.split())[:160]
            access = "" if list(hit.groups) == ["public"] else f", groups {', '.join(hit.groups)}"
            print(f"{hit.rank:>3}. {hit.chunk_id} (document {hit.doc_id}, chars {hit.start}-{hit.end}{access}) {hit.title[:60]}"
                  f"\n     {scores}\n     {snippet}")
        if one.answer is not None:
            print("\n".join(answer_lines(one.answer)))
    return 0


def answer_lines(answer) -> list[str]:
    """The extractive answer as ``domret search --answer`` prints it: each sentence with the
    span it cites, or the abstention with the evidence score that fell short."""
    if answer.abstained:
        score = "none" if answer.evidence_score is None else f"{answer.evidence_score:.3f}"
        return [f"answer: abstained (best evidence {score}): {answer.sentences[0].text}"]
    lines = [f"answer (best evidence {answer.evidence_score:.3f}):"]
    for sentence in answer.sentences:
        cites = ", ".join(f"{doc} sentence {i}" for doc, i in sentence.citations)
        score = f", score {sentence.score:.3f}" if getattr(sentence, "score", None) is not None else ""
        lines.append(f"  - {' '.join(sentence.text.split())} [{cites}{score}]")
    return lines


def cmd_promote(args: argparse.Namespace) -> int:
    from ..api import default_registry

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
    from ..api import default_registry

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


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    """The subcommands of this module; returns those that take ``--verbose`` from the caller."""
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
    search.add_argument("--answer", action="store_true",
                        help="also answer each query with the bundle's answer step: cited sentences, or an abstention")
    search.add_argument("--as", dest="principal", nargs="+", metavar="GROUP",
                        help="search as a principal holding these access groups (after the queries); "
                             "without it only public documents are searched")
    search.set_defaults(func=cmd_search)
    promote = commands.add_parser("promote", help="list registered bundles, or make one the champion by hand")
    promote.add_argument("version", nargs="?", help="version to promote (omit to list versions and aliases)")
    promote.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
    promote.set_defaults(func=cmd_promote)
    rollback = commands.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
    rollback.set_defaults(func=cmd_rollback)
    return [report, search, promote, rollback]
