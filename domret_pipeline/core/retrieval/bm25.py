"""BM25 over chunks with bm25s, English stop words and Snowball stemming (as BEIR's baseline).

Each chunk's access groups are stored beside the index (``chunk_groups.json``, see
:mod:`.access`); a search given a visibility mask passes it to bm25s as ``weight_mask``
(invisible chunks score 0, and a zero score is never a hit) and verifies the hits against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .access import GroupTable

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
    groups: GroupTable | None = None  # access groups per chunk; None: every chunk public

    def __post_init__(self):
        if self.groups is None:
            self.groups = GroupTable.public(len(self.chunk_ids))

    @classmethod
    def build(cls, texts: list[str], chunk_ids: list[str], k1: float, b: float,
              groups: GroupTable | None = None) -> "BM25Index":
        import bm25s

        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(_tokenize(texts), show_progress=False)
        return cls(retriever, list(chunk_ids), groups)

    def save(self, folder: Path) -> None:
        self.retriever.save(str(folder), show_progress=False)
        (Path(folder) / IDS_FILE).write_text(json.dumps(self.chunk_ids), encoding="utf-8")
        self.groups.save(folder)

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        chunk_ids = json.loads((Path(folder) / IDS_FILE).read_text(encoding="utf-8"))
        return cls(retriever, chunk_ids, GroupTable.load(Path(folder), len(chunk_ids)))

    def visible(self, principal) -> np.ndarray | None:
        """The principal's visibility mask over chunks, from the stored groups (None: all)."""
        return self.groups.mask(principal)

    def search(self, queries: list[str], k: int, visible: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` best chunks per query with a positive score; with ``visible`` (a bool per
        chunk) only those."""
        import bm25s

        k = min(k, len(self.chunk_ids))
        weights = None if visible is None else np.asarray(visible, dtype=np.float32)
        if weights is not None and len(weights) != len(self.chunk_ids):
            raise ValueError(f"a visibility mask of {len(weights)} chunks for an index of {len(self.chunk_ids)}")
        tokens = bm25s.tokenize(queries, stopwords="en", stemmer=_stemmer(), return_ids=False, show_progress=False)
        results = []
        for query_tokens in tokens:
            # bm25s cannot score a query whose tokens are all unknown/stop words: no hits.
            known = [t for t in query_tokens if t in self.retriever.vocab_dict]
            if not known:
                results.append([])
                continue
            if weights is None:
                positions, scores = self.retriever.retrieve([known], k=k, show_progress=False, n_threads=1)
            else:
                positions, scores = self.retriever.retrieve([known], k=k, show_progress=False, n_threads=1,
                                                            weight_mask=weights)
            results.append(
                [(self.chunk_ids[int(p)], float(s)) for p, s in zip(positions[0], scores[0])
                 if s > 0 and (visible is None or visible[int(p)])]
            )
        return results
