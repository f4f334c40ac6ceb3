"""The audit store: one row per served request (search or answer), in a real database.

SQLAlchemy Core over any URL, like the feedback store: a SQLite file beside ``feedback.db`` by
default, PostgreSQL (or anything SQLAlchemy speaks) for teams. The schema is created and
migrated by :meth:`AuditStore.migrate`; its version lives in ``domret_audit_schema``, not in
the feedback store's ``domret_schema``, so both stores may share one team database without
reading each other's version.

A row records what an incident review needs and nothing it would have to guess:
- an id, a request id (returned to the caller at once, before the row is written), the UTC
  time, the kind (``search`` or ``answer``) and the principal (the groups the request ran as,
  the public group included; NULL only for a row written without one);
- the query text, or only its SHA-256 (``query_mode = "hash"``: the text never reaches the
  database; the hash is always kept, so a reviewer can find a query they can name);
- what served it: the bundle's path and content hash, the registry version when the champion
  served it, where the bundle came from (champion, latest, a named run) and the served
  configuration's label (a caller may switch the reranker off);
- the hits as served: rank, chunk and document id, span, access groups, and every stage's
  score the hit carried (dense, bm25, rrf, rerank, final);
- for an answer, the cited spans (document id, sentence index, and the answer step's score of
  that sentence), whether it abstained and its evidence score; for a search these are NULL;
- the latency of each stage in milliseconds.

Rows are append-only; :meth:`AuditStore.purge` deletes those older than a retention period.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, TextIO

from ..sql_store import VersionedStore

SCHEMA_VERSION = 1
SCHEMA_TABLE = "domret_audit_schema"
KINDS = ("search", "answer")
QUERY_MODES = ("text", "hash")
# columns holding JSON (the rest are plain values)
_JSON_FIELDS = ("principal", "hits", "citations", "latency_ms")


def query_sha256(query: str) -> str:
    """The hash a row keeps of its query: SHA-256 of the UTF-8 text exactly as served. Not
    salted: whoever can guess a short query can confirm it, which is what lets a reviewer
    find "the query about SLO exceptions" again."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()


def utc_stamp(moment: datetime | None = None) -> str:
    """One fixed ISO 8601 form (UTC, microseconds), so stamps compare as strings in SQL."""
    moment = moment or datetime.now(timezone.utc)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class AuditSettings:
    """Where rows go and what they keep. ``retention_days``: rows older than that are purged
    when a writer opens the store (None: kept until ``domret audit purge``)."""

    url: str
    query_mode: str = "text"  # "text" or "hash"
    retention_days: float | None = None

    def __post_init__(self) -> None:
        # refused at load, not at the first write: a typo must not store query texts that
        # were meant to be hashed
        if self.query_mode not in QUERY_MODES:
            raise ValueError(f"audit query mode must be one of {', '.join(QUERY_MODES)}, not {self.query_mode!r}")
        if self.retention_days is not None and self.retention_days <= 0:
            raise ValueError(f"audit retention must be a positive number of days, not {self.retention_days}")

    @classmethod
    def from_env(cls, url: str, environ: Mapping[str, str]) -> "AuditSettings":
        """``DOMRET_AUDIT_QUERY`` (text|hash) and ``DOMRET_AUDIT_RETENTION_DAYS`` from ``environ``."""
        days = (environ.get("DOMRET_AUDIT_RETENTION_DAYS") or "").strip()
        try:
            retention = float(days) if days else None
        except ValueError:
            raise ValueError(f"DOMRET_AUDIT_RETENTION_DAYS must be a number of days, not {days!r}") from None
        mode = (environ.get("DOMRET_AUDIT_QUERY") or "").strip().lower()
        return cls(url, retention_days=retention, **({"query_mode": mode} if mode else {}))  # unset: the field's default


@dataclass
class AuditRecord:
    """One served request, as the service saw it."""

    request_id: str
    kind: str
    query_sha256: str
    query: str | None = None
    principal: list[str] | None = None
    served_from: str = ""  # "champion", "latest", "run:<id>" or "bundle" (opened from a folder)
    serving: str = ""  # the served configuration's label
    bundle_path: str | None = None
    bundle_sha256: str | None = None
    registry_version: str | None = None
    hits: list[dict] = field(default_factory=list)
    citations: list[dict] | None = None  # [{"doc_id", "sentence", "score"}, ...] in answer order
    abstained: bool | None = None
    evidence_score: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    id: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _tables(metadata):
    from sqlalchemy import Boolean, Column, Float, Integer, String, Table, Text

    audit = Table(
        "audit_log", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("request_id", String(64), nullable=False, unique=True),
        Column("created_at", String(40), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("principal", Text),
        Column("query", Text),
        Column("query_sha256", String(64), nullable=False, index=True),
        Column("served_from", String(300), nullable=False),
        Column("serving", String(300), nullable=False),
        Column("bundle_path", Text),
        Column("bundle_sha256", String(64)),
        Column("registry_version", String(40)),
        Column("hits", Text, nullable=False),
        Column("citations", Text),
        Column("abstained", Boolean),
        Column("evidence_score", Float),
        Column("latency_ms", Text, nullable=False),
    )
    schema = Table(SCHEMA_TABLE, metadata, Column("version", Integer, nullable=False))
    return audit, schema


def _migration_1(connection, audit, schema) -> None:
    """The audit_log table, its time and query-hash indexes."""
    audit.create(connection)


MIGRATIONS = {1: _migration_1}


class AuditStore(VersionedStore):
    """The audit database at ``url``. ``query_mode="hash"`` drops every row's query text on
    write, whoever built the record."""

    kind, schema_table, schema_version, migrations = "audit", SCHEMA_TABLE, SCHEMA_VERSION, MIGRATIONS
    migrate_command = "domret audit migrate"

    def __init__(self, url: str, query_mode: str = "text"):
        if query_mode not in QUERY_MODES:
            raise ValueError(f"audit query mode must be one of {', '.join(QUERY_MODES)}, not {query_mode!r}")
        super().__init__(url)
        self.query_mode = query_mode
        self.audit, self.schema = _tables(self.metadata)
        self.table = self.audit

    def write(self, record: AuditRecord) -> int:
        """Insert one row; returns its id. The record's time is normalised to :func:`utc_stamp`
        (now, when it has none)."""
        from sqlalchemy import insert

        if record.kind not in KINDS:
            raise ValueError(f"audit kind must be one of {', '.join(KINDS)}, not {record.kind!r}")
        values = {k: v for k, v in record.as_dict().items() if k != "id"}
        values["created_at"] = utc_stamp(datetime.fromisoformat(record.created_at) if record.created_at else None)
        if self.query_mode == "hash":
            values["query"] = None
        for name in _JSON_FIELDS:
            values[name] = None if values[name] is None else json.dumps(values[name])
        with self.engine.begin() as connection:
            return int(connection.execute(insert(self.audit).values(**values)).inserted_primary_key[0])

    def rows(self, limit: int | None = None, since: str | None = None, kind: str | None = None,
             newest_first: bool = False) -> list[AuditRecord]:
        """Rows in id order (newest first when asked), from ``since`` (a :func:`utc_stamp`) on."""
        from sqlalchemy import select

        self._require_schema()
        a = self.audit
        query = select(a).order_by(a.c.id.desc() if newest_first else a.c.id)
        if since:
            query = query.where(a.c.created_at >= since)
        if kind:
            query = query.where(a.c.kind == kind)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [_record(row._mapping) for row in connection.execute(query)]

    def get(self, identifier: int | str) -> AuditRecord | None:
        """The row with this id, or this request id."""
        from sqlalchemy import select

        self._require_schema()
        a = self.audit
        key = str(identifier)
        where = a.c.id == int(key) if key.isdigit() else a.c.request_id == key
        with self.engine.connect() as connection:
            row = connection.execute(select(a).where(where)).first()
        return _record(row._mapping) if row is not None else None

    def purge(self, older_than_days: float, now: datetime | None = None) -> int:
        """Delete the rows older than ``older_than_days``; returns how many."""
        from sqlalchemy import delete

        if older_than_days <= 0:
            raise ValueError(f"older_than_days must be positive, not {older_than_days}")
        self._require_schema()
        cutoff = utc_stamp((now or datetime.now(timezone.utc)) - timedelta(days=older_than_days))
        with self.engine.begin() as connection:
            return int(connection.execute(delete(self.audit).where(self.audit.c.created_at < cutoff)).rowcount or 0)


def _record(mapping) -> AuditRecord:
    values = dict(mapping)
    for name in _JSON_FIELDS:
        values[name] = None if values[name] is None else json.loads(values[name])
    if values["abstained"] is not None:
        values["abstained"] = bool(values["abstained"])
    return AuditRecord(**values)


_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([dhm])$")


def parse_since(text: str, now: datetime | None = None) -> str:
    """``--since``: an ISO date or time (UTC unless it names a zone), or an age such as ``7d``,
    ``12h`` or ``30m``; returns the :func:`utc_stamp` rows are compared with."""
    now = now or datetime.now(timezone.utc)
    relative = _RELATIVE.match(text.strip().lower())
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2)
        return utc_stamp(now - timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount}))
    try:
        return utc_stamp(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError(f"--since takes an ISO date or time (2026-03-03, 2026-03-03T09:30) or an age "
                         f"(7d, 12h, 30m), not {text!r}") from None


EXPORT_FORMATS = ("jsonl", "csv")
# every field of AuditRecord, in the order a reader wants them
EXPORT_COLUMNS = ("id", "created_at", "request_id", "kind", "principal", "query", "query_sha256", "served_from",
                  "registry_version", "bundle_path", "bundle_sha256", "serving", "hits", "citations", "abstained",
                  "evidence_score", "latency_ms")


def export_rows(records: Iterable[AuditRecord], fmt: str, out: TextIO) -> int:
    """Write rows as JSON lines (nested values as JSON) or CSV (nested values as JSON text in
    their cell); returns how many."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    columns = list(EXPORT_COLUMNS)
    writer = csv.DictWriter(out, columns) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    count = 0
    for record in records:
        row = record.as_dict()
        if writer:
            writer.writerow({k: json.dumps(v) if k in _JSON_FIELDS and v is not None else v for k, v in row.items()})
        else:
            out.write(json.dumps({k: row[k] for k in columns}) + "\n")
        count += 1
    return count
