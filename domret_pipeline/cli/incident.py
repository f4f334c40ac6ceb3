"""``domret incident AUDIT_ID | --query TEXT``: review one served request.

Prints what the request retrieved and cited (its audit row), the same request replayed now by
the champion and the previous champion side by side with what changed, the lineage of the
bundle that served it (registry version -> Dagster run -> each artifact's materialization and
MLflow run, with UI links) and what differs from the champion's lineage, with the causes
(corpus, labels, model, serving settings). The work is in ``domret_pipeline/incident.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_incident(args: argparse.Namespace) -> int:
    from .common import quiet

    quiet()
    if not os.environ.get("DAGSTER_HOME") and Path("dagster.yaml").is_file():
        os.environ["DAGSTER_HOME"] = str(Path.cwd())  # as `domret run` finds its instance
    from ..api import NotMaterializedError, incident

    if args.audit_id is None and args.query is None:
        print("domret: incident needs an audit id (see `domret audit list`) or --query TEXT", file=sys.stderr)
        return 2
    try:
        report = incident(args.audit_id, query=args.query, principal=args.principal,
                          kind="search" if args.search else "answer", home=args.home,
                          dagster_url=args.dagster_ui, mlflow_url=args.mlflow_ui)
    except (LookupError, NotMaterializedError) as error:
        print(f"domret: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report.as_dict(), indent=2, default=str) if args.json else report.to_text())
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    parser = commands.add_parser("incident", help="review one served request: replays, lineage, what changed")
    parser.add_argument("audit_id", nargs="?", help="the audit row's id or request id (domret audit list)")
    parser.add_argument("--query", help="with no id: serve this query now with the champion (audited) and review it; "
                                        "with an id: the text of a row that kept only the query's hash")
    parser.add_argument("--as", dest="principal", nargs="+", metavar="GROUP",
                        help="with --query and no id: serve as a principal holding these groups (default: public only)")
    parser.add_argument("--search", action="store_true", help="with --query and no id: serve a search, not an answer")
    parser.add_argument("--json", action="store_true", help="the whole report as JSON")
    parser.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
    parser.add_argument("--dagster-ui", help="the Dagster UI's base URL for links (default: $DAGSTER_UI_URL or "
                                             "http://localhost:3000)")
    parser.add_argument("--mlflow-ui", help="the MLflow UI's base URL for links (default: $MLFLOW_UI_URL or "
                                            "http://127.0.0.1:5000)")
    parser.set_defaults(func=cmd_incident)
    return [parser]
