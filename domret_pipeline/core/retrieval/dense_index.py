"""FAISS indexes over chunk embeddings, with the id map from FAISS positions to chunk ids.

Exact inner-product search (``IndexFlatIP``) for corpora up to ``exact_max_vectors``; above
that an HNSW graph, which trades a little recall for sub-linear query time; above
``compressed_min_vectors`` a compressed index (IVF over 8-bit scalar-quantised vectors by
default) whose search depth was tuned to a recall target (:mod:`.index_build` chooses and
builds them). Embeddings are L2-normalised, so inner product is cosine similarity.

Each position's access groups are stored beside the vectors (``chunk_groups.json``, see
:mod:`.access`). A search given a visibility mask returns only visible chunks, still ``k`` of
them when that many are visible: a flat (or IVF) index filters inside FAISS with an ID
selector (an IVF index probes more lists, doubling ``nprobe``, while a query is short of ``k``:
the visible vectors may sit in lists the tuned ``nprobe`` does not reach); an HNSW graph is searched deeper and verified (a selector inside the graph walk can
strand the search in a region of invisible nodes and return fewer than ``k``), doubling the
depth until ``k`` visible chunks are found, then, if the graph gave up first, scanning the
visible vectors exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .access import GroupTable

if TYPE_CHECKING:
    from ..manifests import DenseIndexManifest

INDEX_FILE = "index.faiss"
IDS_FILE = "chunk_ids.json"


def build_index(embeddings: np.ndarray, index_type: str, hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128):
    import faiss

    dim = embeddings.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:  # a compressed index needs training and a recall check: index_build.build_sized_index
        raise ValueError(f"unknown index type {index_type!r} (flat or hnsw; compressed through index_build)")
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


@dataclass
class DenseIndex:
    index: object  # faiss.Index
    chunk_ids: list[str]
    groups: GroupTable | None = None  # access groups per position; None: every position public

    def __post_init__(self):
        if self.groups is None:
            self.groups = GroupTable.public(len(self.chunk_ids))

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(Path(folder) / INDEX_FILE))
        (Path(folder) / IDS_FILE).write_text(json.dumps(self.chunk_ids), encoding="utf-8")
        self.groups.save(folder)

    @classmethod
    def load(cls, folder: Path) -> "DenseIndex":
        import faiss

        index = faiss.read_index(str(Path(folder) / INDEX_FILE))
        chunk_ids = json.loads((Path(folder) / IDS_FILE).read_text(encoding="utf-8"))
        if index.ntotal != len(chunk_ids):
            raise ValueError(f"{folder}: index holds {index.ntotal} vectors but {len(chunk_ids)} chunk ids")
        return cls(index, chunk_ids, GroupTable.load(Path(folder), len(chunk_ids)))

    def visible(self, principal) -> np.ndarray | None:
        """The principal's visibility mask over positions, from the stored groups (None: all)."""
        return self.groups.mask(principal)

    def search(self, query_vectors: np.ndarray, k: int, visible: np.ndarray | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` best chunks per query; with ``visible`` (a bool per position) only those,
        still ``k`` of them when that many are visible."""
        queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        if visible is None:
            k = min(k, self.index.ntotal)
            scores, positions = self.index.search(queries, k)
            return self._hits(positions, scores)
        visible = np.asarray(visible, dtype=bool)
        if len(visible) != self.index.ntotal:
            raise ValueError(f"a visibility mask of {len(visible)} positions for an index of {self.index.ntotal}")
        k = min(k, int(visible.sum()))
        if k == 0:
            return [[] for _ in range(len(queries))]
        if _is_hnsw(self.index):
            found = _oversampled(self.index, queries, k, visible)
            return self._hits([p for p, _ in found], [s for _, s in found])
        return self._hits(*_selected(self.index, queries, k, visible))

    def vectors(self, chunk_ids: list[str]) -> np.ndarray:
        """The stored vectors of ``chunk_ids`` (rows in that order; see :func:`stored_vectors`):
        what query rewriting by pseudo-relevance feedback moves the query toward."""
        position = self.__dict__.get("_position")
        if position is None:  # built on first use: most pipelines never rewrite
            position = self.__dict__["_position"] = {c: i for i, c in enumerate(self.chunk_ids)}
        return stored_vectors(self.index, np.array([position[c] for c in chunk_ids], dtype=np.int64))

    def _hits(self, positions, scores) -> list[list[tuple[str, float]]]:
        return [[(self.chunk_ids[p], float(s)) for p, s in zip(row_p, row_s) if p >= 0]
                for row_p, row_s in zip(positions, scores)]


def _is_hnsw(index) -> bool:
    import faiss

    return isinstance(index, faiss.IndexHNSW)


def _selected(index, queries: np.ndarray, k: int, visible: np.ndarray):
    """Search inside FAISS with a bitmap ID selector: invisible positions are never scored."""
    import faiss

    bitmap = np.packbits(visible, bitorder="little")  # bit i of byte i // 8, as IDSelectorBitmap reads it
    selector = faiss.IDSelectorBitmap(len(visible), faiss.swig_ptr(bitmap))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        scores, positions = index.search(queries, k, params=faiss.SearchParameters(sel=selector))
    else:
        nprobe = ivf.nprobe
        while True:
            scores, positions = index.search(queries, k, params=faiss.SearchParametersIVF(sel=selector, nprobe=nprobe))
            if nprobe >= ivf.nlist or (positions >= 0).all():  # k <= visible, so every list probed gives k
                break
            nprobe = min(ivf.nlist, nprobe * 2)
    del bitmap  # the selector reads it during the search only
    return positions, scores


def _oversampled(index, queries: np.ndarray, k: int, visible: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """HNSW: search ``k / share visible`` deep (x1.5), keep the visible hits, and double the
    depth for the queries still short of ``k`` until they have ``k`` or the whole index was
    asked for; what the graph still did not return is then found by an exact scan of the
    visible vectors. Returns (positions, scores) per query, best first."""
    total = index.ntotal
    depth = min(total, max(k, int(np.ceil(1.5 * k * total / visible.sum()))))
    out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(queries)
    pending = np.arange(len(queries))
    while len(pending):
        scores, positions = index.search(queries[pending], depth)
        short = []
        for row, q in enumerate(pending):
            keep = (positions[row] >= 0) & visible[np.maximum(positions[row], 0)]
            found_p, found_s = positions[row][keep][:k], scores[row][keep][:k]
            out[q] = (found_p, found_s)
            if len(found_p) < k:
                short.append(q)
        if not short:
            break
        pending = np.array(short)
        if depth >= total:  # the graph returned all it could reach: scan the visible vectors
            for q in pending:
                out[q] = _exact(index, queries[q], k, visible)
            break
        depth = min(total, depth * 2)
    return out


def _exact(index, query: np.ndarray, k: int, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positions = np.flatnonzero(visible)
    vectors = stored_vectors(index, positions)
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return positions[order], scores[order]


def open_with_encoder(folder: Path) -> tuple[DenseIndex, object, DenseIndexManifest]:
    """Load an index artifact with the encoder that built it, at the precision it was built
    with, checking the encoder's content hash against the manifest: queries must be encoded by
    the very model (and arithmetic) that built the index. Returns the index, the encoder and
    the index's manifest (its ``with_title`` says how to render passages for it)."""
    from ..manifests import DenseIndexManifest, read_manifest
    from .encoder import load_encoder, model_fingerprint

    manifest = read_manifest(folder, DenseIndexManifest)
    if model_fingerprint(manifest.encoder_path) != manifest.encoder_sha256:
        raise ValueError(f"the encoder at {manifest.encoder_path} changed since the index in {folder} was built")
    encoder = load_encoder(manifest.encoder_path, manifest.max_seq_length, precision=manifest.precision)
    return DenseIndex.load(Path(folder)), encoder, manifest


def all_vectors(index: "DenseIndex") -> np.ndarray:
    """Every stored vector, in id-map order (see :func:`stored_vectors`)."""
    return stored_vectors(index.index)


def stored_vectors(index, positions: np.ndarray | None = None) -> np.ndarray:
    """The vectors at ``positions`` (all when None) as the index stores them: exact for flat and
    HNSW-flat indexes, decoded for a compressed one (8-bit scalar quantisation moves a unit
    vector's cosines by about 1e-3). An IVF index gets the direct map that reconstruction needs
    (8 bytes a vector) the first time."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index) if isinstance(index, faiss.Index) else None
    if ivf is not None and ivf.direct_map.no():
        ivf.make_direct_map()
    if positions is None:
        return index.reconstruct_n(0, index.ntotal)
    return index.reconstruct_batch(np.asarray(positions, dtype=np.int64))
