"""Feedback at the door: files read in any UTF-8 (with or without a byte-order mark), rows
checked for what the store cannot use, and ids checked against the latest corpus and labels.

A label the pipeline cannot use used to be stored anyway and found weeks later as
``skipped: unknown_document: 3`` in a manifest. Here it is refused at import with its file
and line, or, when the user asks, set aside and counted (``on_bad_rows="quarantine"``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..data.loaders import iter_jsonl
from ..errors import InputDataError, RowIssue
from .store import LABELS, FeedbackLabel

COMMAND_LINE = "<command line>"


@dataclass
class KnownIds:
    """What the latest published references hold; ``None`` where that asset is not there yet."""

    doc_ids: set[str] | None = None
    chunk_docs: dict[str, str] | None = None  # chunk id -> its document id
    query_ids: set[str] | None = None
    missing: list[str] = field(default_factory=list)  # references not found: those ids go unchecked


def known_ids(refs_dir: str | Path) -> KnownIds:
    """Ids of the latest ``corpus_documents``, ``corpus_chunks`` and ``labeled_queries``,
    read through their references (each artifact re-hashed before it is read)."""
    from ..artifacts import ArtifactRef
    from ..data.labels import LabeledQueries
    from ..data.serialization import read_jsonl

    known = KnownIds()

    def open_ref(asset: str) -> Path | None:
        path = Path(refs_dir) / f"{asset}.json"
        if not path.is_file():
            known.missing.append(asset)
            return None
        return ArtifactRef.from_json(path.read_text(encoding="utf-8")).verify()

    if (folder := open_ref("corpus_documents")) is not None:
        known.doc_ids = {r["doc_id"] for r in read_jsonl(folder / "documents.jsonl")}
    if (folder := open_ref("corpus_chunks")) is not None:
        known.chunk_docs = {r["chunk_id"]: r["doc_id"] for r in read_jsonl(folder / "chunks.jsonl")}
    if (folder := open_ref("labeled_queries")) is not None:
        known.query_ids = set(LabeledQueries.load(folder).queries)
    return known


def read_utf8(path: Path) -> str:
    """The text of ``path``: UTF-8, a leading byte-order mark dropped. Anything else raises
    :class:`InputDataError` with one issue naming the file and line (never a traceback)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputDataError(RowIssue(str(path), 1, "UTF-16 text: save the file as UTF-8"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputDataError(RowIssue(str(path), line, f"not valid UTF-8 (byte 0x{data[error.start]:02x}): "
                                                       "save the file as UTF-8")) from None


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def _rows(path: Path, issues: list[RowIssue]) -> list[tuple[int, dict]]:
    text = read_utf8(path)  # the whole file is UTF-8, or one issue naming the first bad line
    if path.suffix.lower() == ".csv":
        # Line numbers assume one physical line per record (header on line 1).
        return list(enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2))
    return list(iter_jsonl(path, issues))  # the corpus and labels' JSONL reader: bad lines as file:line issues


def check_label(label: FeedbackLabel, known: KnownIds | None) -> str | None:
    """Why the store cannot use ``label``, or None."""
    if not label.query.strip():
        return "empty query"
    if label.label not in LABELS:
        return f"unknown label {label.label!r} (one of {', '.join(LABELS)})"
    if not (label.doc_id or label.chunk_id):
        return "needs a doc_id or a chunk_id"
    if known is None:
        return None
    if label.doc_id and known.doc_ids is not None and label.doc_id not in known.doc_ids:
        return f"unknown document {label.doc_id!r} (not in the latest corpus_documents)"
    if label.chunk_id and known.chunk_docs is not None:
        owner = known.chunk_docs.get(label.chunk_id)
        if owner is None:
            return f"unknown chunk {label.chunk_id!r} (not in the latest corpus_chunks)"
        if label.doc_id and owner != label.doc_id:
            return f"chunk {label.chunk_id!r} belongs to document {owner!r}, not {label.doc_id!r}"
    if label.query_id and known.query_ids is not None and label.query_id not in known.query_ids:
        return f"unknown query id {label.query_id!r} (not in the latest labeled_queries)"
    return None


@dataclass
class FeedbackRead:
    labels: list[FeedbackLabel]
    quarantined: list[RowIssue]


def read_feedback(path: str | Path, known: KnownIds | None = None, on_bad_rows: str = "fail") -> FeedbackRead:
    """Parse and check a JSONL or CSV feedback file. With ``on_bad_rows="fail"`` any bad row
    raises :class:`InputDataError` listing every one with its line, and nothing is returned;
    with ``"quarantine"`` the good rows are returned with the bad ones set aside."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feedback file not found: {path}")
    issues: list[RowIssue] = []
    labels: list[FeedbackLabel] = []
    for number, row in _rows(path, issues):
        created = str(row.get("created_at") or row.get("timestamp") or "").strip()
        label = FeedbackLabel(
            query=str(row.get("query") or "").strip(),
            label=str(row.get("label") or "").strip().lower().replace(" ", "_").replace("-", "_"),
            doc_id=str(row.get("doc_id") or "").strip() or None, chunk_id=str(row.get("chunk_id") or "").strip() or None,
            query_id=str(row.get("query_id") or "").strip() or None, critical=_truthy(row.get("critical", False)),
            source=str(row.get("source") or "import"), user=str(row.get("user") or ""), created_at=created,
            model_version=str(row.get("model_version") or "").strip() or None,
        )
        reason = check_label(label, known)
        if reason is None and created:
            try:
                datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                reason = f"bad timestamp {created!r} (ISO 8601 expected)"
        if reason is not None:
            issues.append(RowIssue(str(path), number, reason))
            continue
        labels.append(label)
    if issues and on_bad_rows != "quarantine":
        raise InputDataError(issues)
    return FeedbackRead(labels, issues)


def read_feedback_file(path: str | Path) -> list[FeedbackLabel]:
    """Every row of ``path``, all good, or :class:`InputDataError` (ids unchecked)."""
    return read_feedback(path).labels
