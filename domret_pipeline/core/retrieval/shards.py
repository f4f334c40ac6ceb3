"""The corpus in shards: which shard a chunk belongs to, what one shard's embeddings artifact
holds, and how the index's vectors are assembled back from the shards.

A chunk's shard is a hash of its *document id* modulo the shard count, so every chunk of a
document lands in the same shard, the assignment never depends on the order or size of the
corpus, and adding or editing a document changes exactly one shard (the others' inputs, and so
their artifacts, stay byte for byte the same). The shard count is fixed per deployment:
changing it reassigns almost every document (a full re-encode, cheap with the embedding cache).

A shard artifact (``embeddings.npy``, ``chunk_ids.json``, ``shard.json``) records the shard's
*input hash*: the encoder's content hash, the precision, the passage rendering and the chunk ids
and texts it encoded. A shard whose input hash is what the published artifact recorded is
current and is not encoded again (:func:`shard_input_hash`); the artifact holds no timing or
run id, so encoding the same input twice writes the same bytes and the same content hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

SHARD_FORMAT = "domret-embedding-shard-v1"


def shard_names(count: int) -> list[str]:
    if count < 1:
        raise ValueError(f"the shard count must be at least 1, not {count}")
    return [f"shard-{i:03d}" for i in range(count)]


def shard_of(doc_id: str, count: int) -> str:
    """The shard of a document: stable across runs, machines and Python versions (no ``hash()``)."""
    digest = hashlib.sha256(f"domret-shard\0{doc_id}".encode("utf-8")).digest()
    return shard_names(count)[int.from_bytes(digest[:8], "big") % count]


def chunks_of_shard(chunks: Sequence, shard: str, count: int) -> list:
    """The chunks of ``shard`` in corpus order."""
    return [c for c in chunks if shard_of(c.doc_id, count) == shard]


def shard_input_hash(encoder_sha256: str, precision: str, with_title: bool, max_seq_length: int,
                     chunk_ids: Sequence[str], texts: Sequence[str]) -> str:
    digest = hashlib.sha256(json.dumps([SHARD_FORMAT, encoder_sha256, precision, with_title, max_seq_length])
                            .encode("utf-8"))
    for chunk_id, text in zip(chunk_ids, texts, strict=True):
        digest.update(b"\0" + chunk_id.encode("utf-8") + b"\0" + hashlib.sha256(text.encode("utf-8")).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class ShardManifest:
    shard: str
    shard_count: int
    encoder: str
    encoder_sha256: str
    precision: str
    with_title: bool
    max_seq_length: int
    input_sha256: str
    n_chunks: int
    dim: int


def write_shard(folder: Path, manifest: ShardManifest, chunk_ids: list[str], vectors: np.ndarray) -> None:
    folder = Path(folder)
    np.save(folder / "embeddings.npy", np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    (folder / "chunk_ids.json").write_text(json.dumps(chunk_ids), encoding="utf-8")
    (folder / "shard.json").write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True), encoding="utf-8")


def read_manifest(folder: str | Path) -> ShardManifest:
    return ShardManifest(**json.loads((Path(folder) / "shard.json").read_text(encoding="utf-8")))


def read_shard(folder: str | Path) -> tuple[ShardManifest, list[str], np.ndarray]:
    folder = Path(folder)
    ids = json.loads((folder / "chunk_ids.json").read_text(encoding="utf-8"))
    return read_manifest(folder), ids, np.load(folder / "embeddings.npy", allow_pickle=False)


def assemble(chunks: Sequence, shard_folders: dict[str, str | Path], expect: dict) -> tuple[np.ndarray, ShardManifest]:
    """The vectors of ``chunks`` in corpus order, read from one artifact per shard.

    ``expect``: manifest fields every shard must have (encoder hash, precision, rendering, shard
    count): a shard encoded with another encoder or for another corpus is an error naming it,
    never a silently mixed index. Every chunk must come from its own shard's artifact, once."""
    count = expect["shard_count"]
    missing = sorted(set(shard_names(count)) - set(shard_folders))
    if missing:
        raise ValueError(f"{len(missing)} of {count} shards have no embeddings yet ({', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}): encode them first (`domret shards encode`)")
    position = {c.chunk_id: i for i, c in enumerate(chunks)}
    parts: list[tuple[list[int], np.ndarray]] = []
    first: ShardManifest | None = None
    for shard in shard_names(count):
        manifest, ids, shard_vectors = read_shard(shard_folders[shard])
        wrong = {k: (getattr(manifest, k), v) for k, v in expect.items() if getattr(manifest, k) != v}
        if wrong:
            raise ValueError(f"{shard} was encoded for other settings than this index: "
                             + "; ".join(f"{k} {got!r}, expected {want!r}" for k, (got, want) in wrong.items()))
        expected_ids = [c.chunk_id for c in chunks_of_shard(chunks, shard, count)]
        if ids != expected_ids:
            raise ValueError(f"{shard} holds {len(ids)} chunks, but the corpus puts {len(expected_ids)} there: "
                             "it was encoded from another corpus_chunks (re-encode the stale shards)")
        if ids:
            parts.append(([position[i] for i in ids], shard_vectors))
            first = first or manifest
    if first is None:
        raise ValueError("every shard is empty: there is nothing to index")
    vectors = np.zeros((len(chunks), first.dim), dtype=np.float32)
    seen = np.zeros(len(chunks), dtype=bool)
    for rows, shard_vectors in parts:
        vectors[rows] = shard_vectors
        seen[rows] = True
    if not seen.all():
        raise ValueError(f"{int((~seen).sum())} chunks are in no shard")
    return vectors, first


def stale(current: Iterable[tuple[str, str]], published: dict[str, str]) -> list[str]:
    """The shards whose input hash differs from the published artifact's (or that have none)."""
    return [shard for shard, input_hash in current if published.get(shard) != input_hash]
