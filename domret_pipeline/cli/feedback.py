"""``domret feedback import|add|migrate|queue``: the feedback store and the labeling queue."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .common import domret_home


def _feedback_store(args):
    from ..core.feedback.store import FeedbackStore

    from ..locations import feedback_url

    store = FeedbackStore(feedback_url(getattr(args, "home", None), args.url))
    store.migrate()
    return store


def cmd_feedback(args: argparse.Namespace) -> int:
    from ..core.errors import InputDataError, RowIssue
    from ..core.feedback.store import FeedbackLabel

    if args.action == "queue":
        from ..publication import latest_ref

        try:
            queue = latest_ref(domret_home(args) / "refs", "labeling_queue")
        except FileNotFoundError as error:
            print(f"domret: no labeling queue yet: {error}", file=sys.stderr)
            return 1
        text = (Path(queue.path) / "queue.jsonl").read_text(encoding="utf-8")
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
            print(f"{len(text.splitlines())} queries written to {args.out}")
        else:
            print(text, end="")
        return 0
    store = _feedback_store(args)
    if args.action == "migrate":
        print(f"feedback store {store.display_url}: schema version {store.version()}")
        return 0
    from ..core.feedback.files import COMMAND_LINE, check_label, known_ids, read_feedback

    home = domret_home(args)
    # Ids are checked against the latest published corpus and labels; before any run there
    # is nothing to check them against, and the user is told so.
    known = known_ids(os.environ.get("DOMRET_REFS_DIR") or home / "refs")
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
        from ..api import default_registry

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


def add_parsers(commands) -> list[argparse.ArgumentParser]:
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
    for sub in feedback_actions.choices.values():
        sub.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
        sub.add_argument("--url", help="feedback store URL (default: $DOMRET_FEEDBACK_URL or sqlite under DOMRET_HOME)")
    feedback.set_defaults(func=cmd_feedback)
    return list(feedback_actions.choices.values())
