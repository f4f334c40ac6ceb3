"""The feedback store: append-only relevance labels from users, in a real database.

SQLAlchemy Core over any URL: a SQLite file by default, PostgreSQL (or anything SQLAlchemy
speaks) for teams. The project creates and migrates the schema itself (:meth:`migrate`): a
``domret_schema`` table records the applied version and :data:`MIGRATIONS` are applied in
order, each in its own transaction.

A label row: an autoincrement ``id`` (the sensor's cursor), the query text (and its id when
it is a known labeled query), a document or chunk id, the label (``relevant``,
``not_relevant``, ``partially_relevant``, ``answer_unsupported``), whether it is critical, its
source, user, timestamp and the model version that served the answer. ``dedup_key`` (a hash
of the content: everything but the id and the source, taken before a row without a timestamp
gets the import time) is unique, so importing the same rows twice, from any file name,
inserts nothing new.

Files are read and checked in :mod:`.feedback.files`; imports are all or nothing unless the
user asks to quarantine bad rows, and all rows are inserted in one transaction.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from ..sql_store import VersionedStore

LABELS = ("relevant", "not_relevant", "partially_relevant", "answer_unsupported")
POSITIVE_LABELS = ("relevant", "partially_relevant")
SCHEMA_VERSION = 3


@dataclass
class FeedbackLabel:
    query: str
    label: str
    doc_id: str | None = None
    chunk_id: str | None = None
    query_id: str | None = None
    critical: bool = False
    source: str = "import"
    user: str = ""
    created_at: str = ""  # ISO 8601, UTC
    model_version: str | None = None
    id: int | None = None

    def dedup_key(self) -> str:
        """A hash of the content. Not of ``source``: an import's source names the file, so the
        same rows from a renamed file were new rows to the store (schema version 2)."""
        fields = [self.query.strip(), self.label, self.doc_id or "", self.chunk_id or "", self.query_id or "",
                  str(bool(self.critical)), self.user, self.created_at, self.model_version or ""]
        return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()

    def legacy_key(self) -> str:
        """The key of schema version 2 (source included), read by migration 3 only."""
        fields = [self.query.strip(), self.label, self.doc_id or "", self.chunk_id or "", self.query_id or "",
                  str(bool(self.critical)), self.source, self.user, self.created_at, self.model_version or ""]
        return hashlib.sha256("\x1f".join(fields).encode("utf-8")).hexdigest()

    def as_dict(self) -> dict:
        return asdict(self)


def _tables(metadata):
    from sqlalchemy import Boolean, Column, Index, Integer, String, Table, Text

    feedback = Table(
        "feedback", metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("dedup_key", String(64), nullable=False, unique=True),
        Column("query", Text, nullable=False),
        Column("query_id", String(200)),
        Column("doc_id", String(500)),
        Column("chunk_id", String(500)),
        Column("label", String(32), nullable=False),
        Column("critical", Boolean, nullable=False, default=False),
        Column("source", String(100), nullable=False),
        Column("user", String(200), nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("model_version", String(100)),
    )
    schema = Table("domret_schema", metadata, Column("version", Integer, nullable=False))
    return feedback, schema, Index


def _migration_1(connection, feedback, schema) -> None:
    """The feedback table (without ``critical``, which version 2 adds)."""
    from sqlalchemy import text

    connection.execute(text(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, dedup_key VARCHAR(64) NOT NULL UNIQUE, "
        "query TEXT NOT NULL, query_id VARCHAR(200), doc_id VARCHAR(500), chunk_id VARCHAR(500), "
        "label VARCHAR(32) NOT NULL, source VARCHAR(100) NOT NULL, user VARCHAR(200) NOT NULL, "
        "created_at VARCHAR(40) NOT NULL, model_version VARCHAR(100))"
        if connection.dialect.name == "sqlite" else
        "CREATE TABLE feedback (id SERIAL PRIMARY KEY, dedup_key VARCHAR(64) NOT NULL UNIQUE, "
        "query TEXT NOT NULL, query_id VARCHAR(200), doc_id VARCHAR(500), chunk_id VARCHAR(500), "
        "label VARCHAR(32) NOT NULL, source VARCHAR(100) NOT NULL, \"user\" VARCHAR(200) NOT NULL, "
        "created_at VARCHAR(40) NOT NULL, model_version VARCHAR(100))"
    ))


def _migration_2(connection, feedback, schema) -> None:
    """``critical`` labels trigger a retrain at once; the sensor counts them by id range."""
    from sqlalchemy import text

    connection.execute(text("ALTER TABLE feedback ADD COLUMN critical BOOLEAN NOT NULL DEFAULT FALSE"))
    connection.execute(text("CREATE INDEX ix_feedback_query_id ON feedback (query_id)"))


def _migration_3(connection, feedback, schema) -> None:
    """Dedup keys on content, not on the file name (:meth:`FeedbackLabel.dedup_key`).

    Each row is re-keyed as it was keyed at import: before the import time was stamped on it
    when its version-2 key says so. A row whose content key an earlier row already holds (the
    same rows imported again from a renamed file) keeps its old key: rows are append-only and
    their ids are named by registry versions, so the copy stays and is not deleted."""
    from sqlalchemy import select, update

    fields = set(FeedbackLabel.__dataclass_fields__) - {"id"}
    taken: set[str] = set()
    for row in connection.execute(select(feedback).order_by(feedback.c.id)).all():
        values = dict(row._mapping)
        label = FeedbackLabel(**{k: v for k, v in values.items() if k in fields})
        unstamped = FeedbackLabel(**{**label.as_dict(), "created_at": ""})
        key = (unstamped if values["dedup_key"] == unstamped.legacy_key() else label).dedup_key()
        if key in taken:
            continue
        taken.add(key)
        connection.execute(update(feedback).where(feedback.c.id == values["id"]).values(dedup_key=key))


MIGRATIONS = {1: _migration_1, 2: _migration_2, 3: _migration_3}


@dataclass
class ImportResult:
    inserted: int
    duplicates: int
    first_id: int | None
    last_id: int | None


@dataclass
class NewLabels:
    count: int
    critical: int
    max_id: int | None


class FeedbackStore(VersionedStore):
    kind, schema_table, schema_version, migrations = "feedback", "domret_schema", SCHEMA_VERSION, MIGRATIONS
    migrate_command = "domret feedback migrate"

    def __init__(self, url: str):
        super().__init__(url)
        self.feedback, self.schema, _ = _tables(self.metadata)
        self.table = self.feedback

    def add(self, labels: list[FeedbackLabel]) -> ImportResult:
        """Insert in one transaction; rows already present (same dedup key) are skipped."""
        from sqlalchemy import insert, select

        self._require_schema()
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # The key is taken before a row without its own timestamp is stamped with the import
        # time: otherwise importing the same file a second later would insert it all again.
        keys = {label.dedup_key(): label for label in labels}
        for label in labels:
            label.created_at = label.created_at or now
        with self.engine.begin() as connection:
            existing = set(connection.execute(
                select(self.feedback.c.dedup_key).where(self.feedback.c.dedup_key.in_(list(keys)))).scalars()) if keys else set()
            fresh = [(key, label) for key, label in keys.items() if key not in existing]
            ids = []
            for key, label in fresh:
                values = {k: v for k, v in label.as_dict().items() if k != "id"}
                result = connection.execute(insert(self.feedback).values(dedup_key=key, **values))
                ids.append(int(result.inserted_primary_key[0]))
        return ImportResult(len(fresh), len(labels) - len(fresh), min(ids) if ids else None, max(ids) if ids else None)

    def new_since(self, cursor: int) -> NewLabels:
        """One indexed range query: how many labels (and critical ones) arrived after ``cursor``."""
        from sqlalchemy import func, select

        self._require_schema()
        f = self.feedback
        with self.engine.connect() as connection:
            count, critical, max_id = connection.execute(
                select(func.count(f.c.id), func.coalesce(func.sum(func.cast(f.c.critical, self._int())), 0), func.max(f.c.id))
                .where(f.c.id > cursor)).one()
        return NewLabels(int(count), int(critical), int(max_id) if max_id is not None else None)

    @staticmethod
    def _int():
        from sqlalchemy import Integer

        return Integer

    def rows(self, max_id: int | None = None, min_id: int = 1) -> list[FeedbackLabel]:
        from sqlalchemy import select

        self._require_schema()
        f = self.feedback
        query = select(f).where(f.c.id >= min_id).order_by(f.c.id)
        if max_id is not None:
            query = query.where(f.c.id <= max_id)
        with self.engine.connect() as connection:
            return [FeedbackLabel(**{k: v for k, v in row._mapping.items() if k != "dedup_key"})
                    for row in connection.execute(query)]


def feedback_query_id(label: FeedbackLabel) -> str:
    """A known query keeps its id; a new query text gets a stable one from its text."""
    if label.query_id:
        return label.query_id
    return "fb-" + hashlib.sha256(" ".join(label.query.lower().split()).encode("utf-8")).hexdigest()[:12]


@dataclass
class FeedbackMerge:
    used_ids: list[int]
    new_queries: int
    new_judgements: int
    confirmed_negatives: int
    skipped: dict[str, int]


def merge_feedback(labels, feedback: list[FeedbackLabel], chunk_to_doc: dict[str, str], doc_ids: set[str]) -> FeedbackMerge:
    """Fold feedback into ``labels`` (a LabeledQueries) in place, for training only.

    - ``relevant`` / ``partially_relevant`` become judgements (relevance 1) of the train split;
      a new query text becomes a new train query.
    - ``not_relevant`` is not a judgement: it is returned to mining as a confirmed negative
      (see :func:`confirmed_negatives`), and counted here.
    - Feedback on a query of the dev or frozen test split is skipped and counted: labels a
      model was judged on must not leak into its training.
    - ``answer_unsupported`` judges the answer step, not retrieval: counted, not merged.
    """
    skipped: dict[str, int] = {}
    used, new_queries, judgements, negatives = [], 0, 0, 0
    for label in feedback:
        qid = feedback_query_id(label)
        doc = label.doc_id or chunk_to_doc.get(label.chunk_id or "")
        if doc is None or doc not in doc_ids:
            skipped["unknown_document"] = skipped.get("unknown_document", 0) + 1
            continue
        if labels.splits.get(qid, "train") != "train":
            skipped[f"{labels.splits[qid]}_split_query"] = skipped.get(f"{labels.splits[qid]}_split_query", 0) + 1
            continue
        if label.label == "answer_unsupported":
            skipped["answer_unsupported"] = skipped.get("answer_unsupported", 0) + 1
            continue
        if qid not in labels.queries:
            labels.queries[qid] = label.query
            labels.splits[qid] = "train"
            new_queries += 1
        if label.label in POSITIVE_LABELS:
            if labels.qrels.setdefault(qid, {}).get(doc, 0) <= 0:
                labels.qrels[qid][doc] = 1
                judgements += 1
        else:
            negatives += 1
        used.append(label.id)
    return FeedbackMerge(sorted(i for i in used if i is not None), new_queries, judgements, negatives, skipped)


def confirmed_negatives(feedback: list[FeedbackLabel], chunk_ids_by_doc: dict[str, list[str]]) -> dict[str, list[str]]:
    """``not_relevant`` labels as mining's confirmed negatives: query id -> chunk ids."""
    out: dict[str, list[str]] = {}
    for label in feedback:
        if label.label != "not_relevant":
            continue
        qid = feedback_query_id(label)
        if label.chunk_id:
            out.setdefault(qid, []).append(label.chunk_id)
        elif label.doc_id in chunk_ids_by_doc:
            out.setdefault(qid, []).extend(chunk_ids_by_doc[label.doc_id])
    return out


def id_ranges(ids: list[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` -> ``"1-3,7,9-10"``: the feedback a model used, compactly."""
    parts, ids = [], sorted(set(ids))
    start = prev = None
    for i in ids + [None]:
        if start is not None and (i is None or i != prev + 1):
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(parts)

