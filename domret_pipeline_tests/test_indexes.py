import numpy as np

from domret_pipeline.config import BM25Config
from domret_pipeline.core.retrieval.bm25 import BM25Index
from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index, choose_index_type


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_index_type_follows_size():
    assert choose_index_type(10_000, exact_max_vectors=50_000) == "flat"
    assert choose_index_type(60_000, exact_max_vectors=50_000) == "hnsw"


def test_flat_index_finds_exact_neighbours_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(200, 16)))
    ids = [f"c{i}" for i in range(200)]
    DenseIndex(build_index(vectors, "flat"), ids).save(tmp_path)
    loaded = DenseIndex.load(tmp_path)
    queries = vectors[[3, 77]]
    hits = loaded.search(queries, 5)
    assert [h[0][0] for h in hits] == ["c3", "c77"]
    brute = np.argsort(-(vectors @ queries[1]))[:5]
    assert [cid for cid, _ in hits[1]] == [ids[i] for i in brute]


def test_hnsw_index_recalls_nearest_neighbour():
    rng = np.random.default_rng(1)
    vectors = _unit(rng.normal(size=(500, 16)))
    index = DenseIndex(build_index(vectors, "hnsw", hnsw_m=16), [str(i) for i in range(500)])
    hits = index.search(vectors[:50], 1)
    assert sum(h[0][0] == str(i) for i, h in enumerate(hits)) >= 48


def test_bm25_ranks_matching_chunk_first_and_round_trips(tmp_path):
    texts = ["forklift speed limit in aisles", "HL7 OBX mapping to CUI", "SLO exception approval", "charging forklift batteries"]
    index = BM25Index.build(texts, ["a", "b", "c", "d"], BM25Config().k1, BM25Config().b)
    index.save(tmp_path)
    loaded = BM25Index.load(tmp_path)
    hits = loaded.search(["forklifts speeds", "who approves SLO exceptions", "zzz unknownword"], 3)
    assert hits[0][0][0] == "a"  # stemming matches "forklifts"/"speeds"
    assert hits[1][0][0] == "c"
    assert hits[2] == []  # no known term: no hit rather than an error
