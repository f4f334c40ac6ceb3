"""Synthetic "real-looking" embeddings for index benchmarks and tests at sizes no corpus here has.

Unit vectors drawn as a corpus of chunk embeddings looks: topics (Gaussian clusters of
Zipf-distributed sizes, each with its own spread, about 100 chunks per topic so the number of
topics grows with the corpus), documents inside topics, about two chunks per document close to
their document, an anisotropic spectrum (variance falling as ``rank ** -0.7``) rotated at random,
and a shared mean direction (embedding models have one). The parameters were set so that 11,506
vectors match the statistics of SciFact's 11,506 base-encoder chunk vectors (all-MiniLM-L6-v2,
measured when this was written, seed 0): median cosine to the nearest other chunk 0.89
(SciFact 0.85), to the 10th 0.52 (0.55), of random pairs 0.11 (0.11), and 33 of 384 principal
directions holding half the variance (32). Uniform random vectors would be far easier
for IVF to partition and far harder for HNSW than text embeddings.
"""

from __future__ import annotations

import numpy as np

SPECTRUM_DECAY = 0.35  # per-dimension scale rank ** -0.35 (variance ** -0.7)
TOPIC_SPREAD = 1.1  # chunk spread around its topic, relative to the spectrum
CHUNK_SPREAD = 0.5  # chunk spread around its document, relative to its topic's spread
MEAN_WEIGHT = 0.35  # the shared direction every vector leans towards
CHUNKS_PER_TOPIC = 100
BLOCK = 65_536  # rows drawn at a time: 1 M x 384 float32 is 1.5 GiB; temporaries stay small


def synthetic_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``n`` L2-normalised float32 vectors of ``dim`` dimensions (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, dim + 1) ** -SPECTRUM_DECAY).astype(np.float32)
    rotation = np.linalg.qr(rng.normal(size=(dim, dim)))[0].astype(np.float32)
    mean = rng.normal(size=dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    topics = max(1, n // CHUNKS_PER_TOPIC)
    centers = rng.normal(size=(topics, dim)).astype(np.float32) * scale
    spread = (TOPIC_SPREAD * rng.uniform(0.5, 1.5, topics)).astype(np.float32)
    weights = 1.0 / np.arange(1, topics + 1) ** 0.7
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, BLOCK):
        m = min(BLOCK, n - start)
        # a document per two rows of the block, each row a chunk of its document or the next
        doc_topic = rng.choice(topics, (m + 1) // 2 + 1, p=weights / weights.sum())
        docs = centers[doc_topic] + spread[doc_topic, None] * rng.normal(size=(len(doc_topic), dim)).astype(np.float32) * scale
        doc_of = np.arange(m) // 2 + rng.integers(0, 2, m)
        rows = docs[doc_of] + (CHUNK_SPREAD * spread[doc_topic[doc_of], None]
                               * rng.normal(size=(m, dim)).astype(np.float32) * scale)
        rows = rows @ rotation.T
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        rows += MEAN_WEIGHT * mean
        out[start:start + m] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out
