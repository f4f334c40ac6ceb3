"""BM25 over chunks with bm25s, English stop words and Snowball stemming (as BEIR's baseline)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

IDS_FILE = "chunk_ids.json"


def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def _tokenize(texts: list[str]):
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)


@dataclass
class BM25Index:
    retriever: object  # bm25s.BM25
    chunk_ids: list[str]

    @classmethod
    def build(cls, texts: list[str], chunk_ids: list[str], k1: float, b: float) -> "BM25Index":
        import bm25s

        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(_tokenize(texts), show_progress=False)
        return cls(retriever, list(chunk_ids))

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder), show_progress=False)
        (Path(folder) / IDS_FILE).write_text(json.dumps(self.chunk_ids), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(retriever, json.loads((Path(folder) / IDS_FILE).read_text(encoding="utf-8")))

    def search(self, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
        import bm25s

        k = min(k, len(self.chunk_ids))
        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)
        results = []
        for query_tokens in tokens:
            # bm25s cannot score a query whose tokens are all unknown/stop words: no hits.
            known = [t for t in query_tokens if t in self.retriever.vocab_dict]
            if not known:
                results.append([])
                continue
            positions, scores = self.retriever.retrieve([known], k=k, show_progress=False, n_threads=1)
            results.append(
                [(self.chunk_ids[int(p)], float(s)) for p, s in zip(positions[0], scores[0]) if s > 0]
            )
        return results
