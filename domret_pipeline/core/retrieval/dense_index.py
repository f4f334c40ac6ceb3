"""FAISS indexes over chunk embeddings, with the id map from FAISS positions to chunk ids.

Exact inner-product search (``IndexFlatIP``) for corpora up to ``exact_max_vectors``; above
that an HNSW graph, which trades a little recall for sub-linear query time. Embeddings are
L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..manifests import DenseIndexManifest

INDEX_FILE = "index.faiss"
IDS_FILE = "chunk_ids.json"


def choose_index_type(n_vectors: int, exact_max_vectors: int = 50_000) -> str:
    return "flat" if n_vectors <= exact_max_vectors else "hnsw"


def build_index(embeddings: np.ndarray, index_type: str, hnsw_m: int = 32, ef_construction: int = 200, ef_search: int = 128):
    import faiss

    dim = embeddings.shape[1]
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise ValueError(f"unknown index type {index_type!r} (flat or hnsw)")
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


@dataclass
class DenseIndex:
    index: object  # faiss.Index
    chunk_ids: list[str]

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(Path(folder) / INDEX_FILE))
        (Path(folder) / IDS_FILE).write_text(json.dumps(self.chunk_ids), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "DenseIndex":
        import faiss

        index = faiss.read_index(str(Path(folder) / INDEX_FILE))
        chunk_ids = json.loads((Path(folder) / IDS_FILE).read_text(encoding="utf-8"))
        if index.ntotal != len(chunk_ids):
            raise ValueError(f"{folder}: index holds {index.ntotal} vectors but {len(chunk_ids)} chunk ids")
        return cls(index, chunk_ids)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        k = min(k, self.index.ntotal)
        scores, positions = self.index.search(np.ascontiguousarray(query_vectors, dtype=np.float32), k)
        return [
            [(self.chunk_ids[p], float(s)) for p, s in zip(row_p, row_s) if p >= 0]
            for row_p, row_s in zip(positions, scores)
        ]


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
    """Every stored vector, in id-map order (flat and HNSW-flat indexes keep them)."""
    return index.index.reconstruct_n(0, index.index.ntotal)
