"""Who may read what: principals, and the per-position group tables the indexes store.

A **principal** is the set of access groups a request runs as. It may read a chunk when it
shares at least one group with the chunk's document. Everyone holds the public group
(:data:`~..data.groups.PUBLIC`), so a request that names no principal reads public documents
only, and a principal ``{"hr"}`` reads public and ``hr`` documents.

A :class:`GroupTable` holds each index position's groups compactly: the distinct group sets
(a corpus has few) and, per position, which one it carries. From it a principal's
**visibility mask** (one bool per position) costs one vectorised lookup; the FAISS and BM25
searches filter with it (``dense_index``, ``bm25``), and the search pipeline re-checks
every stage's output against the chunks' own groups. :meth:`GroupTable.mask` returns None
when the principal may read everything: callers then take the unfiltered path, so a corpus
that is all public ranks exactly as before access control existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..data.groups import PUBLIC, PUBLIC_GROUPS, normalize_groups

GROUPS_FILE = "chunk_groups.json"
_MASK_CACHE = 64  # principals whose masks a table keeps (a server sees few distinct ones)


@dataclass(frozen=True)
class Principal:
    """The groups a request runs as; always including the public group."""

    groups: frozenset[str]

    @classmethod
    def of(cls, value: "Principal | Iterable[str] | str | None") -> "Principal":
        """A principal from groups (a list, or one name), itself, or None: public only."""
        if isinstance(value, Principal):
            return value
        names = () if value is None else normalize_groups(value if isinstance(value, str) else list(value))
        return cls(frozenset(names) | {PUBLIC})

    def may_read(self, groups: Iterable[str]) -> bool:
        return not self.groups.isdisjoint(groups)

    def as_list(self) -> list[str]:
        return sorted(self.groups)

    def label(self) -> str:
        return ", ".join(self.as_list())


PUBLIC_ONLY = Principal.of(None)


class GroupTable:
    """Access groups per index position (FAISS row or BM25 document), stored beside the index."""

    def __init__(self, groups: Sequence[Iterable[str]]):
        sets: dict[tuple[str, ...], int] = {}
        self.of = np.fromiter((sets.setdefault(tuple(sorted(set(g))), len(sets)) for g in groups), dtype=np.int32,
                              count=len(groups))
        self.sets: list[tuple[str, ...]] = list(sets)
        self._masks: dict[frozenset[str], np.ndarray | None] = {}

    @classmethod
    def public(cls, n: int) -> "GroupTable":
        """Every position public: an index written before access control."""
        return cls([PUBLIC_GROUPS] * n)

    def __len__(self) -> int:
        return len(self.of)

    def groups(self, position: int) -> tuple[str, ...]:
        return self.sets[int(self.of[position])]

    def rows(self) -> list[tuple[str, ...]]:
        return [self.sets[i] for i in self.of.tolist()]

    def mask(self, principal: Principal | None) -> np.ndarray | None:
        """One bool per position: may ``principal`` read it. None when it may read every
        position (the caller skips filtering altogether)."""
        principal = Principal.of(principal)
        if principal.groups not in self._masks:
            readable = np.array([principal.may_read(s) for s in self.sets], dtype=bool)
            if len(self._masks) >= _MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[principal.groups] = None if readable.all() else readable[self.of]
        return self._masks[principal.groups]

    def counts(self) -> dict[str, int]:
        """Positions per group (a position counts once for each of its groups)."""
        per_set = np.bincount(self.of, minlength=len(self.sets))
        out: dict[str, int] = {}
        for groups, n in zip(self.sets, per_set.tolist()):
            for group in groups:
                out[group] = out.get(group, 0) + n
        return dict(sorted(out.items()))

    def save(self, folder: Path) -> None:
        payload = {"sets": [list(s) for s in self.sets], "of": self.of.tolist()}
        (Path(folder) / GROUPS_FILE).write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, n: int) -> "GroupTable":
        """The table saved in ``folder``; an index folder written before access control has
        none, and its ``n`` positions read as public."""
        path = Path(folder) / GROUPS_FILE
        if not path.is_file():
            return cls.public(n)
        payload = json.loads(path.read_text(encoding="utf-8"))
        table = cls([])
        table.sets = [tuple(s) for s in payload["sets"]]
        table.of = np.asarray(payload["of"], dtype=np.int32)
        if len(table.of) != n or (n and int(table.of.max()) >= len(table.sets)):
            raise ValueError(f"{path}: holds groups for {len(table.of)} positions, the index has {n}")
        return table


def check_same_groups(table: GroupTable, chunk_ids: Sequence[str], chunks: dict, what: str) -> None:
    """Refuse an index whose stored groups disagree with the chunks (id -> object with
    ``groups``) served with it: access is decided by both, and they must not differ (an index
    built from other chunks)."""
    for chunk_id, stored in zip(chunk_ids, table.rows()):
        chunk = chunks.get(chunk_id)
        if chunk is not None and stored != chunk.groups and stored != tuple(sorted(set(chunk.groups))):
            raise ValueError(f"{what}: chunk {chunk_id} is stored with groups {list(stored)} but the chunks give "
                             f"{list(chunk.groups)}: rebuild the index from these chunks")


class ChunkAccess:
    """What one principal may read among a pipeline's chunks (``position``: chunk id -> row of
    ``mask``): the check on chunk ids, and the masks over an index's positions (its
    ``chunk_ids``), built once per index. A chunk outside ``position`` is never readable."""

    def __init__(self, position: dict[str, int], mask: np.ndarray):
        self.position, self.mask = position, mask
        self._over: dict[int, np.ndarray] = {}

    def readable(self, chunk_id: str) -> bool:
        row = self.position.get(chunk_id)
        return row is not None and bool(self.mask[row])

    def only(self, rankings: list[list[tuple[str, float]]]) -> list[list[tuple[str, float]]]:
        """Each ranking without what the principal may not read (order kept)."""
        return [[(c, s) for c, s in ranking if self.readable(c)] for ranking in rankings]

    def over(self, index) -> np.ndarray:
        if id(index) not in self._over:
            if not hasattr(index, "chunk_ids"):
                raise ValueError(f"{type(index).__name__} cannot filter by access: it has no chunk_ids")
            self._over[id(index)] = np.fromiter((self.readable(c) for c in index.chunk_ids), dtype=bool,
                                                count=len(index.chunk_ids))
        return self._over[id(index)]
