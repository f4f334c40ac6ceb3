"""The embedding cache: identical vectors for identical inputs, misses on a changed text,
model or precision, and tampered or foreign entries rejected and recomputed."""

from __future__ import annotations

import shutil

import numpy as np

from domret_pipeline.core.retrieval.embedding_cache import EmbeddingCache


class CountingEncoder:
    """Deterministic vectors from the text, and a record of what it was asked to encode."""

    def __init__(self, salt: str = ""):
        self.calls: list[list[str]] = []
        self.salt = salt

    def __call__(self, texts):
        self.calls.append(list(texts))
        rows = [np.random.default_rng(abs(hash(self.salt + t)) % 2**32).normal(size=8) for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_identical_inputs_hit_and_return_identical_vectors(tmp_path):
    encoder = CountingEncoder()
    first, stats = EmbeddingCache(tmp_path, "model-a", "fp32").encode(["a", "b", "c"], encoder)
    assert (stats.hits, stats.misses) == (0, 3)
    again, stats = EmbeddingCache(tmp_path, "model-a", "fp32").encode(["c", "a", "b"], encoder)
    assert (stats.hits, stats.misses, stats.rejected) == (3, 0, 0)
    assert encoder.calls == [["a", "b", "c"]]  # nothing encoded the second time
    assert np.array_equal(again, first[[2, 0, 1]])


def test_a_changed_text_model_or_precision_misses(tmp_path):
    encoder = CountingEncoder()
    EmbeddingCache(tmp_path, "model-a", "fp32").encode(["a", "b"], encoder)
    _, stats = EmbeddingCache(tmp_path, "model-a", "fp32").encode(["a", "b edited"], encoder)
    assert (stats.hits, stats.misses) == (1, 1) and encoder.calls[-1] == ["b edited"]
    _, stats = EmbeddingCache(tmp_path, "model-b", "fp32").encode(["a"], encoder)
    assert (stats.hits, stats.misses) == (0, 1)
    _, stats = EmbeddingCache(tmp_path, "model-a", "bf16").encode(["a"], encoder)
    assert (stats.hits, stats.misses) == (0, 1)


def test_a_tampered_entry_is_rejected_and_recomputed(tmp_path):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, "model-a", "fp32")
    original, _ = cache.encode(["a", "b"], encoder)
    shard = next(cache.folder.glob("shard-*.npz"))
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["vectors"] = arrays["vectors"].copy()
    arrays["vectors"][0] += 1.0  # a flipped value: the check no longer matches
    with open(shard, "wb") as handle:
        np.savez(handle, **arrays)
    vectors, stats = EmbeddingCache(tmp_path, "model-a", "fp32").encode(["a", "b"], encoder)
    assert stats.rejected == 1 and stats.misses == 1 and stats.hits == 1
    assert np.array_equal(vectors, original)  # recomputed, never served from the bad entry
    assert encoder.calls[-1] == ["a"]


def test_a_foreign_shard_is_never_served(tmp_path):
    other = EmbeddingCache(tmp_path, "model-b", "fp32")
    other.encode(["a"], CountingEncoder(salt="other model"))
    mine = EmbeddingCache(tmp_path, "model-a", "fp32")
    mine.folder.mkdir(parents=True)
    for shard in other.folder.glob("shard-*.npz"):  # copied in by hand
        shutil.copy(shard, mine.folder / shard.name)
    encoder = CountingEncoder()
    vectors, stats = mine.encode(["a"], encoder)
    assert stats.rejected == 1 and stats.misses == 1 and "another encoder" in stats.reasons[0]
    assert np.array_equal(vectors, encoder(["a"]))


def test_an_unreadable_shard_is_skipped(tmp_path):
    cache = EmbeddingCache(tmp_path, "model-a", "fp32")
    cache.folder.mkdir(parents=True)
    (cache.folder / "shard-broken.npz").write_bytes(b"not a zip")
    vectors, stats = cache.encode(["a"], CountingEncoder())
    assert stats.misses == 1 and "unreadable" in stats.reasons[0] and vectors.shape == (1, 8)
