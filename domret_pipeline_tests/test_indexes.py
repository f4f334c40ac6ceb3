import numpy as np
import pytest

from domret_pipeline.config import BM25Config, IndexConfig
from domret_pipeline.core.manifests import DenseIndexManifest
from domret_pipeline.core.retrieval.bm25 import BM25Index
from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index
from domret_pipeline.core.retrieval.index_build import (CompressedSettings, RecallProbe, build_sized_index,
                                                        choose_index_type, smallest_depth)
from domret_pipeline.core.retrieval.synthetic_vectors import synthetic_vectors

# Thresholds lowered so that 20,000 vectors get the compressed index the defaults give past a million.
SMALL = IndexConfig(exact_max_vectors=1_000, compressed_min_vectors=5_000, compressed_train_sample=5_000,
                    compressed_recall_queries=300, hnsw_m=8, hnsw_ef_construction=40, hnsw_ef_search=32)


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_index_type_follows_size():
    assert choose_index_type(10_000, exact_max_vectors=50_000, compressed_min_vectors=1_000_000) == "flat"
    assert choose_index_type(60_000, exact_max_vectors=50_000, compressed_min_vectors=1_000_000) == "hnsw"
    assert choose_index_type(2_000_000, exact_max_vectors=50_000, compressed_min_vectors=1_000_000) == "compressed"


@pytest.fixture
def one_faiss_thread():
    """FAISS's OpenMP threads spin-wait: on a shared 2-core machine one thread builds ~10x faster."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def clustered():
    return synthetic_vectors(20_000, 64, seed=3)


def _compressed(vectors, config=SMALL):
    n = len(vectors)
    index_type = choose_index_type(n, config.exact_max_vectors, config.compressed_min_vectors)
    return build_sized_index(vectors, index_type, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search,
                             config.compressed_settings())


def test_the_compressed_index_meets_its_recall_target_with_the_smallest_nprobe(tmp_path, clustered, one_faiss_thread):
    import faiss

    index, build = _compressed(clustered)
    assert build.index_type == "compressed" and build.factory.startswith("IVF") and build.factory.endswith(",SQ8")
    assert build.search_parameter == "nprobe" and build.recall_at_10 >= SMALL.compressed_recall_target
    assert build.train_sample == SMALL.compressed_train_sample and build.recall_queries == SMALL.compressed_recall_queries
    # measured again on the same held-out queries, from the saved index: nprobe was stored with it
    DenseIndex(index, [f"c{i}" for i in range(len(clustered))]).save(tmp_path)
    loaded = DenseIndex.load(tmp_path).index
    assert faiss.extract_index_ivf(loaded).nprobe == build.search_value
    probe = RecallProbe.for_index(clustered, SMALL.compressed_recall_queries, seed=0)
    assert probe.recall(loaded) == pytest.approx(build.recall_at_10, abs=1e-9)
    assert probe.recall(loaded, "nprobe", build.search_value - 1) < SMALL.compressed_recall_target  # the smallest that meets it
    # fresh queries drawn the same way (not in the index): near the target too, and far above nprobe=1
    fresh = synthetic_vectors(20_500, 64, seed=3)[20_000:]
    assert RecallProbe.for_index(clustered, 0, fresh).recall(loaded) >= SMALL.compressed_recall_target - 0.05
    assert RecallProbe.for_index(clustered, 0, fresh).recall(loaded, "nprobe", 1) < SMALL.compressed_recall_target - 0.1
    # the build's record, as the manifest keeps it
    record = build.with_bytes((tmp_path / "index.faiss").stat().st_size).as_dict()
    assert record["bytes"] < clustered.nbytes / 3  # 8-bit codes: about a quarter of float32
    assert record["bytes_per_million_vectors"] == int(record["bytes"] * 1e6 / len(clustered))
    manifest = DenseIndexManifest.from_dict({
        "role": "base", "encoder": "e", "encoder_path": "/e", "encoder_sha256": "h", "max_seq_length": 8, "with_title": True,
        "index_type": build.index_type, "corpus_chunks": "c", "n_vectors": len(clustered), "dim": 64, "index_build": record})
    assert manifest.index_build["recall_at_10"] == round(build.recall_at_10, 4)
    assert manifest.index_build["search_value"] == build.search_value


def test_compressed_filtering_returns_k_visible_ids(clustered, one_faiss_thread):
    index, _ = _compressed(clustered)
    dense = DenseIndex(index, [f"c{i}" for i in range(len(clustered))])
    rng = np.random.default_rng(0)
    queries = synthetic_vectors(20_050, 64, seed=3)[20_000:]
    for share in (0.5, 0.01, 0.001):
        visible = rng.random(len(clustered)) < share
        allowed = {f"c{i}" for i in np.flatnonzero(visible)}
        k = min(10, len(allowed))
        for hits in dense.search(queries, 10, visible=visible):
            assert len(hits) == k and {c for c, _ in hits} <= allowed
    # the 20 visible vectors of a query's least likely lists: the tuned nprobe cannot reach them, probing more does
    import faiss

    ivf = faiss.extract_index_ivf(index)
    _, lists = ivf.quantizer.search(queries[:1], ivf.nlist)
    far = faiss.rev_swig_ptr(ivf.invlists.get_ids(int(lists[0][-1])), ivf.invlists.list_size(int(lists[0][-1])))
    visible = np.zeros(len(clustered), dtype=bool)
    visible[np.array(far)[:20]] = True
    hits = dense.search(queries[:1], 10, visible=visible)[0]
    assert len(hits) == min(10, int(visible.sum())) and {c for c, _ in hits} <= {f"c{i}" for i in np.flatnonzero(visible)}
    assert ivf.nprobe < ivf.nlist  # the tuned value itself is left as it was


def test_an_unreachable_recall_target_fails_the_build(clustered, one_faiss_thread):
    config = SMALL.model_copy(update={"compressed_factory": "IVF{nlist},PQ2x4", "compressed_recall_target": 0.95})
    with pytest.raises(ValueError, match=r"reaches recall@10 0\.\d+ at most \(nprobe=\d+\).*under compressed_recall_target 0.95"):
        _compressed(clustered[:6_000], config)


def test_smallest_depth_bisects_to_the_first_depth_that_meets_the_target():
    asked = []

    def recall(depth):
        asked.append(depth)
        return min(1.0, depth / 37)

    assert smallest_depth(recall, 0.5, 1, 128) == (19, 19 / 37)
    assert len(asked) < 19  # doubling then bisecting, not a scan
    assert smallest_depth(lambda d: 0.3, 0.5, 1, 8) == (8, 0.3)  # out of reach: the largest, and what it gave


def test_hnsw_builds_record_their_measured_recall(clustered, one_faiss_thread):
    vectors = clustered[:3_000]
    index, build = _compressed(vectors)
    assert build.index_type == "hnsw" and build.search_value == SMALL.hnsw_ef_search
    assert build.recall_at_10 == RecallProbe.for_index(vectors, SMALL.compressed_recall_queries, seed=0).recall(index)


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


def test_base_faiss_index_records_its_compressed_build(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    """The asset, thresholds lowered so that the tiny corpus gets the compressed index."""
    import dagster as dg

    from domret_pipeline.assets.indexes import base_faiss_index
    from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
    from domret_pipeline.assets.labels import labeled_queries
    from domret_pipeline.core.manifests import read_manifest

    from .conftest import make_resources
    from .graph_helpers import run_config

    config = run_config(small_dataset, tiny_encoder)
    config["ops"] = {k: v for k, v in config["ops"].items() if k in ("corpus_documents", "corpus_chunks", "labeled_queries")}
    config["ops"]["base_faiss_index"] = {"config": {
        "exact_max_vectors": 1, "compressed_min_vectors": 2, "compressed_train_sample": 100,
        "compressed_recall_queries": 4, "compressed_recall_target": 0.9, "precision": "fp32"}}
    result = dg.materialize([corpus_documents, corpus_chunks, labeled_queries, base_faiss_index],
                            resources=make_resources(tmp_path, tiny_encoder, mlflow_uri), run_config=config)
    event = result.asset_materializations_for_node("base_faiss_index")[0]
    manifest = read_manifest(result.output_for_node("base_faiss_index").path, DenseIndexManifest)
    build = manifest.index_build
    assert manifest.index_type == "compressed" and build["factory"] == "IVF1,SQ8" and build["search_parameter"] == "nprobe"
    assert build["recall_at_10"] >= 0.9 and build["recall_queries"] == 4 and build["bytes"] > 0
    assert event.metadata["index_recall_at_10"].value == build["recall_at_10"]
    assert event.metadata["index_search"].value == f"nprobe={build['search_value']}"
    hits = DenseIndex.load(result.output_for_node("base_faiss_index").path).search(np.eye(1, manifest.dim, dtype=np.float32), 3)
    assert len(hits[0]) == 3
