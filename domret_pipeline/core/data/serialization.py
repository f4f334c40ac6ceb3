"""Reading and writing the pipeline's tabular artifacts as JSON Lines (diff-able, streamable)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from .chunking import Chunk
from .documents import Document, Evidence
from .groups import PUBLIC_GROUPS


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_documents(path: Path, documents: Iterable[Document]) -> int:
    return write_jsonl(
        path,
        ({"doc_id": d.doc_id, "title": d.title, "text": d.text, "sentences": [list(s) for s in d.sentences],
          "groups": list(d.groups)} for d in documents),
    )


def read_documents(path: Path) -> list[Document]:
    """Documents as :func:`write_documents` wrote them; rows from before access control (no
    ``groups``) read as public."""
    return [
        Document(r["doc_id"], r["text"], r["title"], [tuple(s) for s in r["sentences"]],
                 tuple(r.get("groups", PUBLIC_GROUPS)))
        for r in read_jsonl(path)
    ]


def write_chunks(path: Path, chunks: Iterable[Chunk]) -> int:
    return write_jsonl(path, (c.as_dict() for c in chunks))


def read_chunks(path: Path) -> list[Chunk]:
    return [Chunk.from_dict(r) for r in read_jsonl(path)]


def write_evidence(path: Path, evidence: Iterable[Evidence]) -> int:
    return write_jsonl(
        path, ({"query_id": e.query_id, "doc_id": e.doc_id, "label": e.label, "sentences": list(e.sentences)} for e in evidence)
    )


def read_evidence(path: Path) -> list[Evidence]:
    return [Evidence(r["query_id"], r["doc_id"], r["label"], tuple(r["sentences"])) for r in read_jsonl(path)]
