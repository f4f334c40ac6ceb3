"""Loaders for corpora and labels, with validation that names the file and line at fault.

Corpus formats: BEIR ``corpus.jsonl``; CSV or Parquet through pandas with a column mapping;
a folder of ``.txt``/``.md`` files (document id = path relative to the folder).
Labels: BEIR ``queries.jsonl`` and qrels TSV (a file or a folder of them), and optional
sentence-level ``evidence.jsonl`` (``query_id``, ``doc_id``, ``label``, ``sentences``).

Every loader returns the good rows together with a list of :class:`RowIssue`. With
``on_bad_rows="fail"`` (the default) any issue raises :class:`InputDataError`; with
``"quarantine"`` bad rows are set aside and returned so the caller can report them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from ..errors import QUARANTINE_HINT, InputDataError, RowIssue
from .documents import Document, Evidence, locate_sentences, split_sentences
from .groups import GroupRule

OnBadRows = Literal["fail", "quarantine"]
CorpusFormat = Literal["auto", "jsonl", "csv", "parquet", "folder"]
TEXT_SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class CorpusLoad:
    documents: list[Document]
    quarantined: list[RowIssue] = field(default_factory=list)
    # (duplicate id, id of the first document with the same text): kept, but reported.
    duplicate_texts: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""


@dataclass
class LabelLoad:
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    evidence: list[Evidence]
    quarantined: list[RowIssue] = field(default_factory=list)
    slices: dict[str, str] = field(default_factory=dict)  # query id -> optional "slice" field


def _finish(issues: list[RowIssue], on_bad_rows: OnBadRows) -> list[RowIssue]:
    if on_bad_rows not in ("fail", "quarantine"):
        raise ValueError(f"on_bad_rows must be 'fail' or 'quarantine', not {on_bad_rows!r}")
    if issues and on_bad_rows == "fail":
        raise InputDataError(issues, hint=QUARANTINE_HINT)
    return issues


def iter_jsonl(path: Path, issues: list[RowIssue]) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; record bad lines in ``issues``."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a byte-order mark is not JSON
            except UnicodeDecodeError as exc:
                issues.append(RowIssue(str(path), number, f"not valid UTF-8 ({exc.reason} at byte {exc.start})"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                issues.append(RowIssue(str(path), number, f"malformed JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(row, dict):
                issues.append(RowIssue(str(path), number, "expected a JSON object"))
                continue
            yield number, row


def _as_id(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, str)):
        text = str(value).strip()
        return text or None
    if isinstance(value, float) and value.is_integer():  # pandas reads integer ids with NaNs as floats
        return str(int(value))
    return None


# --------------------------------------------------------------------------- corpus


def detect_format(path: Path) -> CorpusFormat:
    if path.is_dir():
        return "jsonl" if (path / "corpus.jsonl").is_file() else "folder"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise ValueError(f"{path}: cannot tell the corpus format from the name; set format explicitly")


def load_corpus(
    path: str | Path,
    fmt: CorpusFormat = "auto",
    id_field: str = "_id",
    text_field: str = "text",
    title_field: str = "title",
    on_bad_rows: OnBadRows = "fail",
    groups: GroupRule = GroupRule(),
) -> CorpusLoad:
    """Load and validate a corpus. Raises :class:`InputDataError` on bad rows (unless quarantined)
    and always on an empty corpus; ``groups`` gives each document its access groups."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"corpus not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "jsonl" and path.is_dir():
        path = path / "corpus.jsonl"
    issues: list[RowIssue] = []
    if fmt == "jsonl":
        rows = ((n, r) for n, r in iter_jsonl(path, issues))
    elif fmt in ("csv", "parquet"):
        rows = _iter_table(path, fmt, issues, (id_field, text_field))
    elif fmt == "folder":
        rows = _iter_folder(path, issues)
    else:
        raise ValueError(f"unknown corpus format {fmt!r}")

    documents: list[Document] = []
    first_line_of: dict[str, int] = {}
    first_id_of_text: dict[str, str] = {}
    duplicate_texts: list[tuple[str, str]] = []
    for number, row in rows:
        file = str(row.pop("__file__", path))
        doc_id = _as_id(row.get(id_field))
        if doc_id is None:
            issues.append(RowIssue(file, number, f"missing or invalid id field {id_field!r}"))
            continue
        text = row.get(text_field)
        if not isinstance(text, str):
            issues.append(RowIssue(file, number, f"missing text field {text_field!r}", doc_id))
            continue
        if not text.strip():
            issues.append(RowIssue(file, number, "empty text", doc_id))
            continue
        if doc_id in first_line_of:
            issues.append(RowIssue(file, number, f"duplicate id (first seen at line {first_line_of[doc_id]})", doc_id))
            continue
        title = row.get(title_field) or ""
        title = title.strip() if isinstance(title, str) else ""
        given = row.get("sentences")
        if isinstance(given, list) and given and all(isinstance(s, str) for s in given):
            spans = locate_sentences(text, given)
            if spans is None:
                issues.append(RowIssue(file, number, "its 'sentences' do not occur in order in its text", doc_id))
                continue
        else:
            spans = split_sentences(text)
        access = groups.checked(doc_id, row, issues, file, number)
        if access is None:
            continue
        first_line_of[doc_id] = number
        key = " ".join(text.lower().split())
        if key in first_id_of_text:
            duplicate_texts.append((doc_id, first_id_of_text[key]))
        else:
            first_id_of_text[key] = doc_id
        documents.append(Document(doc_id=doc_id, text=text, title=title, sentences=spans, groups=access))

    if not documents:
        raise InputDataError(issues + [RowIssue(str(path), 0, "the corpus holds no valid document")])
    _finish(issues, on_bad_rows)
    return CorpusLoad(documents, issues, duplicate_texts, source=str(path))


def _iter_table(path: Path, fmt: str, issues: list[RowIssue], required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    import pandas as pd

    skip: set[int] = set()
    if fmt == "csv":
        skip = set(_non_utf8_lines(path))  # pandas cannot say which line failed to decode
        issues.extend(RowIssue(str(path), n, "not valid UTF-8") for n in sorted(skip))
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", encoding_errors="replace",
                            sep="\t" if path.suffix.lower() == ".tsv" else ",")
    else:
        frame = pd.read_parquet(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:  # one error for the column, not one per row
        raise InputDataError(RowIssue(str(path), 1 if fmt == "csv" else 0, f"no column {', '.join(map(repr, missing))} "
                                      f"(columns: {', '.join(map(str, frame.columns))}); set id_field / text_field"))
    # CSV line numbers assume one physical line per record (header on line 1); Parquet has no
    # lines: the number is the 1-based row.
    first = 2 if fmt == "csv" else 1
    for offset, row in enumerate(frame.to_dict(orient="records")):
        if offset + first not in skip:
            yield offset + first, row


def _non_utf8_lines(path: Path) -> list[int]:
    bad = []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(number)
    return bad


def _iter_folder(path: Path, issues: list[RowIssue]) -> Iterator[tuple[int, dict]]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    for file in files:
        bad = _non_utf8_lines(file)
        if bad:
            issues.append(RowIssue(str(file), bad[0], "not valid UTF-8"))
            continue
        text = file.read_text(encoding="utf-8")
        title = file.stem.replace("_", " ").replace("-", " ")
        lines = text.splitlines()
        if lines and lines[0].startswith("# "):
            title = lines[0][2:].strip()
            text = "\n".join(lines[1:]).lstrip("\n")
        # The id is the relative path: stable across runs and readable in citations.
        yield 1, {"_id": file.relative_to(path).as_posix(), "text": text, "title": title, "__file__": str(file)}


# --------------------------------------------------------------------------- labels


def load_labels(
    queries_path: str | Path,
    qrels_path: str | Path,
    doc_ids: set[str],
    evidence_path: str | Path | None = None,
    documents: dict[str, Document] | None = None,
    on_bad_rows: OnBadRows = "fail",
) -> LabelLoad:
    """Load queries, qrels and optional evidence, checking them against the corpus ids."""
    issues: list[RowIssue] = []
    slices: dict[str, str] = {}
    queries = load_queries(queries_path, issues, slices)
    qrels = load_qrels(qrels_path, set(queries), doc_ids, issues)
    evidence: list[Evidence] = []
    if evidence_path:
        evidence = load_evidence(evidence_path, set(queries), documents or {}, doc_ids, issues)
    if not qrels:
        raise InputDataError(issues + [RowIssue(str(qrels_path), 0, "no valid relevance judgement")])
    _finish(issues, on_bad_rows)
    return LabelLoad(queries, qrels, evidence, issues, slices)


def load_queries(path: str | Path, issues: list[RowIssue], slices: dict[str, str] | None = None) -> dict[str, str]:
    """BEIR queries; an optional string field ``slice`` (a topic or segment) is collected into
    ``slices`` for per-slice reporting."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"queries file not found: {path}")
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, row in iter_jsonl(path, issues):
        qid = _as_id(row.get("_id"))
        text = row.get("text")
        if qid is None:
            issues.append(RowIssue(str(path), number, "missing or invalid id field '_id'"))
        elif not isinstance(text, str) or not text.strip():
            issues.append(RowIssue(str(path), number, "missing or empty text", qid))
        elif qid in queries:
            issues.append(RowIssue(str(path), number, f"duplicate id (first seen at line {lines[qid]})", qid))
        else:
            queries[qid] = text.strip()
            lines[qid] = number
            if slices is not None and isinstance(row.get("slice"), str) and row["slice"].strip():
                slices[qid] = row["slice"].strip()
    return queries


def qrels_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.tsv"))
        if not files:
            raise FileNotFoundError(f"no .tsv qrels files in {path}")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"qrels file not found: {path}")
    return [path]


def load_qrels(
    path: str | Path, query_ids: set[str], doc_ids: set[str], issues: list[RowIssue]
) -> dict[str, dict[str, int]]:
    """BEIR qrels: ``query-id  corpus-id  score`` with an optional header line."""
    qrels: dict[str, dict[str, int]] = {}
    for file in qrels_files(path):
        with open(file, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError:
                    issues.append(RowIssue(str(file), number, "not valid UTF-8"))
                    continue
                if not line:
                    continue
                parts = line.split("\t") if "\t" in line else line.split()
                if number == 1 and parts[0].lower() in ("query-id", "query_id", "qid"):
                    continue  # header
                if len(parts) == 4:  # TREC style: qid 0 docid score
                    parts = [parts[0], parts[2], parts[3]]
                if len(parts) != 3:
                    issues.append(RowIssue(str(file), number, f"expected 3 tab-separated fields, got {len(parts)}"))
                    continue
                qid, did, score_text = (p.strip() for p in parts)
                try:
                    score = int(float(score_text))
                except ValueError:
                    issues.append(RowIssue(str(file), number, f"score {score_text!r} is not a number", qid))
                    continue
                if qid not in query_ids:
                    issues.append(RowIssue(str(file), number, f"unknown query id {qid!r}", qid))
                elif did not in doc_ids:
                    issues.append(RowIssue(str(file), number, f"unknown document id {did!r}", qid))
                elif did in qrels.get(qid, {}):
                    issues.append(RowIssue(str(file), number, f"duplicate judgement for document {did!r}", qid))
                else:
                    qrels.setdefault(qid, {})[did] = score
    return qrels


def load_evidence(
    path: str | Path,
    query_ids: set[str],
    documents: dict[str, Document],
    doc_ids: set[str],
    issues: list[RowIssue],
) -> list[Evidence]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evidence file not found: {path}")
    evidence = []
    for number, row in iter_jsonl(path, issues):
        qid = _as_id(row.get("query_id"))
        did = _as_id(row.get("doc_id"))
        sentences = row.get("sentences")
        if qid is None or did is None:
            issues.append(RowIssue(str(path), number, "missing query_id or doc_id"))
        elif qid not in query_ids:
            issues.append(RowIssue(str(path), number, f"unknown query id {qid!r}", qid))
        elif did not in doc_ids:
            issues.append(RowIssue(str(path), number, f"unknown document id {did!r}", qid))
        elif not isinstance(sentences, list) or not sentences or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in sentences
        ):
            issues.append(RowIssue(str(path), number, "'sentences' must be a non-empty list of integers", qid))
        elif did in documents and not all(0 <= s < len(documents[did].sentences) for s in sentences):
            issues.append(RowIssue(str(path), number, f"sentence index out of range for document {did!r} "
                                   f"({len(documents[did].sentences)} sentences)", qid))
        else:
            evidence.append(Evidence(qid, did, str(row.get("label", "SUPPORT")), tuple(sorted(set(sentences)))))
    return evidence


NOT_RELEVANT = {"not_relevant", "not relevant", "irrelevant"}


def load_feedback_negatives(
    path: str | Path, query_ids: set[str], chunk_ids_by_doc: dict[str, list[str]], on_bad_rows: OnBadRows = "fail"
) -> tuple[dict[str, list[str]], list[RowIssue]]:
    """Feedback labels marked "not relevant" as confirmed negatives, per query.

    JSONL rows ``{"query_id", "chunk_id" | "doc_id", "label"}``; rows with other labels are
    ignored here (they feed other stages). A document id stands for all its chunks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feedback file not found: {path}")
    issues: list[RowIssue] = []
    chunk_ids = {c for chunks in chunk_ids_by_doc.values() for c in chunks}
    negatives: dict[str, list[str]] = {}
    for number, row in iter_jsonl(path, issues):
        qid = _as_id(row.get("query_id"))
        label = str(row.get("label", "")).strip().lower()
        if qid is None:
            issues.append(RowIssue(str(path), number, "missing query_id"))
            continue
        if label not in NOT_RELEVANT:
            continue
        if qid not in query_ids:
            issues.append(RowIssue(str(path), number, f"unknown query id {qid!r}", qid))
            continue
        chunk_id, doc_id = _as_id(row.get("chunk_id")), _as_id(row.get("doc_id"))
        if chunk_id is not None and chunk_id in chunk_ids:
            negatives.setdefault(qid, []).append(chunk_id)
        elif chunk_id is None and doc_id is not None and doc_id in chunk_ids_by_doc:
            negatives.setdefault(qid, []).extend(chunk_ids_by_doc[doc_id])
        else:
            issues.append(RowIssue(str(path), number, f"unknown chunk or document ({chunk_id or doc_id!r})", qid))
    _finish(issues, on_bad_rows)
    return negatives, issues
