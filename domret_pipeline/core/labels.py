"""Labeled queries with their split: the frozen evaluation set and the training labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .documents import Evidence
from .serialization import read_evidence, read_jsonl, write_evidence, write_jsonl


@dataclass
class LabeledQueries:
    queries: dict[str, str]  # query id -> text
    splits: dict[str, str]  # query id -> train | dev | test
    qrels: dict[str, dict[str, int]]
    evidence: list[Evidence] = field(default_factory=list)
    slices: dict[str, str] = field(default_factory=dict)  # query id -> slice, when labels carry one

    def ids(self, split: str) -> list[str]:
        return sorted(q for q, s in self.splits.items() if s == split)

    def qrels_for(self, split: str) -> dict[str, dict[str, int]]:
        return {q: self.qrels[q] for q in self.ids(split) if q in self.qrels}

    def without_evidence(self, split: str) -> list[str]:
        """Queries whose relevant documents hold no evidence: the abstention cases.

        Only meaningful when the labels carry evidence at all."""
        if not self.evidence:
            return []
        with_evidence = {e.query_id for e in self.evidence}
        return [q for q in self.ids(split) if q not in with_evidence]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        write_jsonl(
            folder / "queries.jsonl",
            ({"query_id": q, "text": self.queries[q], "split": self.splits[q], "slice": self.slices.get(q)}
             for q in sorted(self.queries)),
        )
        write_jsonl(
            folder / "qrels.jsonl",
            ({"query_id": q, "doc_id": d, "score": s} for q in sorted(self.qrels) for d, s in sorted(self.qrels[q].items())),
        )
        write_evidence(folder / "evidence.jsonl", sorted(self.evidence, key=lambda e: (e.query_id, e.doc_id)))

    @classmethod
    def load(cls, folder: str | Path) -> "LabeledQueries":
        folder = Path(folder)
        queries, splits, qrels, slices = {}, {}, {}, {}
        for row in read_jsonl(folder / "queries.jsonl"):
            queries[row["query_id"]] = row["text"]
            splits[row["query_id"]] = row["split"]
            if row.get("slice"):
                slices[row["query_id"]] = row["slice"]
        for row in read_jsonl(folder / "qrels.jsonl"):
            qrels.setdefault(row["query_id"], {})[row["doc_id"]] = int(row["score"])
        return cls(queries, splits, qrels, read_evidence(folder / "evidence.jsonl"), slices)
