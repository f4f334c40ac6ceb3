"""``domret audit list|export|purge|migrate``: read the audit trail of served requests.

Every ``domret search`` (and every request through ``api.load_service``) writes one row; these
commands read them back for an incident review, hand them to other tools, and enforce the
retention period.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _store(args):
    from ..api import audit_settings
    from ..core.audit.store import AuditStore

    settings = audit_settings(getattr(args, "home", None), args.url)
    store = AuditStore(settings.url, settings.query_mode)
    store.migrate()
    return store, settings


def _since(args) -> str | None:
    from ..core.audit.store import parse_since

    return parse_since(args.since) if getattr(args, "since", None) else None


def row_lines(record) -> list[str]:
    """Two lines per row: who asked what, served by which bundle, and how long it took; then
    the chunks served (best first) and, for an answer, what it cited or that it abstained."""
    when = record.created_at[:19].replace("T", " ") + "Z"
    served_by = f"v{record.registry_version}" if record.registry_version else record.served_from
    bundle = (record.bundle_sha256 or "?")[:12]
    who = "as " + ",".join(record.principal) if record.principal is not None else "no principal"
    query = repr(record.query) if record.query is not None else f"sha256:{record.query_sha256[:16]}"
    total = record.latency_ms.get("total")
    head = (f"#{record.id}  {when}  {record.kind:<6}  {who}  {served_by} (bundle {bundle}, {record.serving})  "
            f"{total:.0f} ms  {query}" if total is not None else f"#{record.id}  {when}  {record.kind}  {query}")
    hits = ", ".join(f"{h['chunk_id']} ({h['scores'].get('final', float('nan')):.3f})" for h in record.hits[:5])
    more = f" +{len(record.hits) - 5}" if len(record.hits) > 5 else ""
    lines = [head, f"      hits: {hits or 'none'}{more}"]
    if record.kind == "answer":
        evidence = "none" if record.evidence_score is None else f"{record.evidence_score:.3f}"
        if record.abstained:
            lines.append(f"      abstained (best evidence {evidence})")
        else:
            cited = ", ".join(f"{c['doc_id']}:{c['sentence']}" for c in record.citations or [])
            lines.append(f"      cited: {cited or 'nothing'} (best evidence {evidence})")
    return lines


def cmd_audit(args: argparse.Namespace) -> int:
    from ..core.audit.store import export_rows

    store, settings = _store(args)
    if args.action == "migrate":
        print(f"audit store {store.display_url}: schema version {store.version()}")
        return 0
    if args.action == "purge":
        days = args.older_than_days or settings.retention_days
        if not days:
            print("domret: audit purge needs --older-than-days N (or DOMRET_AUDIT_RETENTION_DAYS)", file=sys.stderr)
            return 2
        print(f"{store.purge(days)} audit row(s) older than {days:g} days deleted from {store.display_url}")
        return 0
    if args.action == "export":
        rows = store.rows(since=_since(args))
        with Path(args.out).open("w", encoding="utf-8", newline="") as out:
            count = export_rows(rows, args.format, out)
        print(f"{count} audit row(s) written to {args.out}")
        return 0
    rows = store.rows(limit=args.limit, since=_since(args), kind=args.kind, newest_first=True)
    if not rows:
        print(f"no audit rows in {store.display_url}" + (f" since {args.since}" if args.since else ""))
        return 0
    for record in rows:
        print("\n".join(row_lines(record)))
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    audit = commands.add_parser("audit", help="the audit trail of served requests: list, export, purge")
    actions = audit.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the latest rows, newest first")
    listing.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    listing.add_argument("--kind", choices=["search", "answer"])
    export = actions.add_parser("export", help="write rows to a file, oldest first")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", required=True)
    for sub in (listing, export):
        sub.add_argument("--since", help="rows from this time on: an ISO date or time (UTC), or an age (7d, 12h, 30m)")
    purge = actions.add_parser("purge", help="delete rows older than the retention period")
    purge.add_argument("--older-than-days", type=float,
                       help="the retention period (default: $DOMRET_AUDIT_RETENTION_DAYS)")
    actions.add_parser("migrate", help="create or upgrade the audit schema")
    for sub in actions.choices.values():
        sub.add_argument("--home", help="DOMRET_HOME (default: $DOMRET_HOME or .domret)")
        sub.add_argument("--url", help="audit store URL (default: $DOMRET_AUDIT_URL or sqlite under DOMRET_HOME)")
    audit.set_defaults(func=cmd_audit)
    return list(actions.choices.values())
