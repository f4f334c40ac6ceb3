"""``domret sample [OUT]``: write the bundled sample data set (domret_pipeline/handbook) in the
BEIR layout the ``corpus_documents`` and ``labeled_queries`` assets read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_OUT = "domret_pipeline/sample_data/handbook"


def write_handbook(out: Path) -> tuple[int, int, int, int]:
    """Write corpus.jsonl, queries.jsonl, qrels/all.tsv and evidence.jsonl under ``out``;
    returns the counts of passages, queries, queries without evidence and evidence rows."""
    from ..handbook.generate import build

    docs, queries, qrels, evidence = build()
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for d in docs:
            handle.write(json.dumps({k: d[k] for k in ("_id", "title", "text", "sentences")}, ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as handle:
        for q in queries:
            handle.write(json.dumps(q, ensure_ascii=False) + "\n")
    with open(out / "qrels" / "all.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, did, score in qrels:
            handle.write(f"{qid}\t{did}\t{score}\n")
    with open(out / "evidence.jsonl", "w", encoding="utf-8") as handle:
        for e in evidence:
            handle.write(json.dumps(e) + "\n")
    return len(docs), len(queries), len(queries) - len({e["query_id"] for e in evidence}), len(evidence)


def cmd_sample(args: argparse.Namespace) -> int:
    docs, queries, unanswerable, evidence = write_handbook(Path(args.out))
    print(f"{docs} passages, {queries} queries ({unanswerable} without evidence), {evidence} evidence rows")
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    s = commands.add_parser("sample", help="write the bundled sample data set (deterministic: the committed files)")
    s.add_argument("out", nargs="?", default=DEFAULT_OUT, help=f"folder to write (default: {DEFAULT_OUT})")
    s.set_defaults(func=cmd_sample)
    return [s]
