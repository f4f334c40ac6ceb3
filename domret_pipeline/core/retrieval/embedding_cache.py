"""A content-addressed cache of chunk embeddings, shared by the index assets across runs.

An entry is keyed by ``sha256(namespace, text)`` where the namespace is the encoder's content
hash and the precision: a changed model, precision or text (title rule, chunking, one edited
character) is a different key, so it misses and is encoded afresh. A re-run, a ``--select``
run or a feedback retrain over an unchanged corpus and base model encodes nothing.

Layout: ``<root>/<namespace[:24]>/shard-<hash>.npz``, each shard holding ``keys`` (N x 32
bytes), ``vectors`` (N x dim float32) and ``checks`` (N x 32 bytes, ``sha256(key, vector)``),
plus the namespace it was written for. Shards are only ever added (written to a temporary
name and renamed, so a killed run leaves no half shard). On read, an entry whose check does
not match its bytes (a corrupted file) or a shard written for another namespace (a foreign
file copied in) is rejected and counted, and its texts are encoded again: a cache entry is
never served on trust.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


def namespace(encoder_sha256: str, precision: str) -> str:
    return hashlib.sha256(f"domret-embeddings-v1\0{encoder_sha256}\0{precision}".encode("utf-8")).hexdigest()


def entry_check(key: bytes, vector: np.ndarray) -> bytes:
    return hashlib.sha256(key + np.ascontiguousarray(vector, dtype=np.float32).tobytes()).digest()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    rejected: int = 0  # entries that failed their check, or sat in a foreign shard
    shards: int = 0
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "rejected": self.rejected, "shards": self.shards,
                "reasons": self.reasons[:10]}


class EmbeddingCache:
    def __init__(self, root: str | Path, encoder_sha256: str, precision: str):
        self.namespace = namespace(encoder_sha256, precision)
        self.folder = Path(root) / self.namespace[:24]

    def key(self, text: str) -> bytes:
        return hashlib.sha256(self.namespace.encode("ascii") + b"\0" + text.encode("utf-8")).digest()

    def _read(self, stats: CacheStats) -> dict[bytes, np.ndarray]:
        entries: dict[bytes, np.ndarray] = {}
        if not self.folder.is_dir():
            return entries
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    if str(data["namespace"]) != self.namespace:
                        stats.rejected += len(data["keys"])
                        stats.reasons.append(f"{shard.name}: written for another encoder or precision")
                        continue
                    keys, vectors, checks = data["keys"], data["vectors"], data["checks"]
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
                stats.reasons.append(f"{shard.name}: unreadable ({type(error).__name__})")
                continue
            stats.shards += 1
            for key, vector, check in zip(keys, vectors, checks):
                key_bytes = key.tobytes()
                if entry_check(key_bytes, vector) != check.tobytes():
                    stats.rejected += 1
                    continue
                entries[key_bytes] = vector
        if stats.rejected and not stats.reasons:
            stats.reasons.append(f"{stats.rejected} entries failed their check")
        return entries

    def _write(self, keys: list[bytes], vectors: np.ndarray) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        key_array = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 32)
        checks = np.frombuffer(b"".join(entry_check(k, v) for k, v in zip(keys, vectors)), dtype=np.uint8)
        digest = hashlib.sha256(key_array.tobytes()).hexdigest()[:16]
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}.npz"
        with open(tmp, "wb") as handle:
            np.savez(handle, namespace=np.array(self.namespace), keys=key_array,
                     vectors=np.ascontiguousarray(vectors, dtype=np.float32), checks=checks.reshape(len(keys), 32))
        os.replace(tmp, self.folder / f"shard-{digest}.npz")

    def encode(self, texts: list[str], encode_fn: Callable[[list[str]], np.ndarray]) -> tuple[np.ndarray, CacheStats]:
        """Vectors for ``texts`` in order: cached ones read, the rest encoded by ``encode_fn``
        (called once, on the missing texts only) and added to the cache."""
        stats = CacheStats()
        entries = self._read(stats)
        keys = [self.key(t) for t in texts]
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, texts):
            if key not in entries and key not in missing:
                missing[key] = text
        if missing:
            fresh = np.asarray(encode_fn(list(missing.values())), dtype=np.float32)
            new_keys = list(missing)
            self._write(new_keys, fresh)
            entries.update(zip(new_keys, fresh))
        stats.misses = len(missing)
        stats.hits = len(texts) - sum(1 for k in keys if k in missing)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), stats
        return np.ascontiguousarray(np.stack([entries[k] for k in keys]), dtype=np.float32), stats
