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


def normalized_text(text: str) -> str:
    """Case and spacing do not make a different query."""
    return " ".join(text.lower().split())


def test_text_repeats(labels: LabeledQueries) -> list[tuple[str, str]]:
    """``(train or dev query id, test query id)`` for every pair with the same text: a model
    trained on one is judged on the other (leakage)."""
    test_by_text: dict[str, list[str]] = {}
    for q in labels.ids("test"):
        test_by_text.setdefault(normalized_text(labels.queries[q]), []).append(q)
    return [(other, test_id) for other in labels.ids("train") + labels.ids("dev")
            for test_id in test_by_text.get(normalized_text(labels.queries[other]), [])]


def drop_test_repeats(labels: LabeledQueries) -> list[dict]:
    """Remove, in place, the train and dev queries whose text repeats a test query; the test
    split stays whole (public sets such as SciFact and Climate-FEVER carry such repeats).
    Returns what was dropped, for the metadata."""
    dropped = []
    for other, test_id in test_text_repeats(labels):
        if other not in labels.queries:
            continue  # repeats two test queries: dropped once
        dropped.append({"query_id": other, "split": labels.splits[other], "repeats_test_query": test_id,
                        "text": labels.queries[other], "judgements": len(labels.qrels.get(other, {}))})
        for table in (labels.queries, labels.splits, labels.qrels, labels.slices):
            table.pop(other, None)
    removed = {d["query_id"] for d in dropped}
    labels.evidence = [e for e in labels.evidence if e.query_id not in removed]
    return dropped
