"""Which FAISS index a corpus gets for its size, and what building it measured.

Up to ``exact_max_vectors`` an exact flat index; up to ``compressed_min_vectors`` an HNSW graph
over full float32 vectors; above, a compressed index made by ``faiss.index_factory`` from
``compressed_factory`` (by default ``IVF{nlist},SQ8``: an inverted file over 8-bit scalar-quantised
vectors, a quarter of float32's memory). Why that default: SQ8 loses little to quantisation
(cosines between unit vectors move by at most 0.002, p99 0.001, on the synthetic vectors), so
the recall target is a matter of how many lists are probed; PQ codes are smaller still but cap recall@10 against exact search below
what probing more lists can recover (BENCHMARKS.md, "Indexes for scale", has the figures
measured here); HNSW with SQ8 keeps the graph (about 256 bytes a vector at M=32) and its slow
build.

The compressed index's coarse quantiser and scalar quantiser are trained on a sample of the
vectors (``train_sample``). Its search depth (IVF ``nprobe``, or HNSW ``efSearch`` for an
``HNSW…`` factory) is then the smallest value whose recall@10 against exact search meets
``compressed_recall_target`` on held-out queries: real query vectors when given, else ``compressed_recall_queries``
corpus vectors kept out of the training sample, each searched for its nearest *other* vectors.
Recall counts a returned vector as right when its exact score reaches the exact 10th-best
score (so a tie among duplicate chunks is not a miss). A target that the largest depth cannot
meet fails the build, naming what was reached: a quiet fallback to HNSW would need four times
or more the memory that was planned for, and a quiet index below the target would serve worse results
than the run's settings promise. The chosen depth is stored in the index file (FAISS
serialises ``nprobe`` and ``efSearch``), so a loaded index searches as tuned.

Every build returns an :class:`IndexBuild`: type, factory string, search depth, recall, the
sample sizes, the serialised size and build seconds, and both per million vectors.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np

RECALL_K = 10
MAX_EF_SEARCH = 4096  # the largest efSearch tried for an HNSW factory
MIN_POINTS_PER_LIST = 39  # FAISS's k-means warns below 39 training points per centroid


@dataclass(frozen=True)
class CompressedSettings:
    """The compressed index's settings (defaults: config.data._DenseIndexConfig, ``compressed_*``)."""

    factory: str  # faiss.index_factory string; {nlist} is filled in from the corpus size
    train_sample: int
    recall_target: float
    recall_queries: int
    seed: int = 0


@dataclass
class IndexBuild:
    """What one index build measured (recorded in the manifest and the asset metadata)."""

    index_type: str  # flat, hnsw or compressed
    factory: str
    n_vectors: int
    build_seconds: float  # training and adding
    search_parameter: str | None = None  # nprobe or efSearch
    search_value: int | None = None
    recall_at_10: float | None = None  # against exact search on the held-out queries
    recall_target: float | None = None
    recall_queries: int = 0
    recall_query_source: str | None = None
    train_sample: int = 0
    tune_seconds: float = 0.0
    bytes: int | None = None  # the serialised index (set once it is written)

    def with_bytes(self, size: int) -> "IndexBuild":
        self.bytes = int(size)
        return self

    def as_dict(self) -> dict:
        per_million = 1e6 / max(1, self.n_vectors)
        return {**asdict(self), "build_seconds": round(self.build_seconds, 2), "tune_seconds": round(self.tune_seconds, 2),
                "recall_at_10": None if self.recall_at_10 is None else round(self.recall_at_10, 4),
                "build_seconds_per_million_vectors": round(self.build_seconds * per_million, 1),
                "bytes_per_million_vectors": None if self.bytes is None else int(self.bytes * per_million)}


def choose_index_type(n_vectors: int, exact_max_vectors: int, compressed_min_vectors: int) -> str:
    if n_vectors <= exact_max_vectors:
        return "flat"
    return "hnsw" if n_vectors <= compressed_min_vectors else "compressed"


def nlist_for(n_vectors: int, train_sample: int) -> int:
    """Inverted lists: 4 sqrt(n) (FAISS's guideline is 4 to 16 sqrt(n)), fewer when the training
    sample would leave under 39 points per list."""
    return max(1, min(int(4 * math.sqrt(n_vectors)), min(train_sample, n_vectors) // MIN_POINTS_PER_LIST))


def build_sized_index(vectors: np.ndarray, index_type: str, hnsw_m: int, ef_construction: int, ef_search: int,
                      compressed: CompressedSettings, queries: np.ndarray | None = None):
    """The index of ``index_type`` over ``vectors`` and its :class:`IndexBuild` (bytes unset)."""
    from .dense_index import build_index

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if index_type == "compressed":
        return build_compressed_index(vectors, compressed, ef_construction, queries)
    started = time.perf_counter()
    index = build_index(vectors, index_type, hnsw_m, ef_construction, ef_search)
    factory = "Flat" if index_type == "flat" else f"HNSW{hnsw_m},Flat"
    build = IndexBuild(index_type, factory, len(vectors), time.perf_counter() - started)
    if index_type == "hnsw":  # not tuned, but measured: the recall its efSearch gives
        build.search_parameter, build.search_value = "efSearch", ef_search
        probe = RecallProbe.for_index(vectors, compressed.recall_queries, queries, compressed.seed)
        build.recall_at_10, build.recall_queries, build.recall_query_source = probe.recall(index), probe.size, probe.source
    return index, build


def build_compressed_index(vectors: np.ndarray, settings: CompressedSettings, ef_construction: int = 40,
                           queries: np.ndarray | None = None):
    """Train ``settings.factory`` on a sample, add every vector, then choose the search depth
    (see the module docstring). Raises ValueError when the recall target cannot be met."""
    import faiss

    n, dim = vectors.shape
    probe = RecallProbe.for_index(vectors, settings.recall_queries, queries, settings.seed)
    rng = np.random.default_rng(settings.seed + 1)
    pool = np.setdiff1d(np.arange(n), probe.self_positions) if probe.self_positions is not None else np.arange(n)
    sample = np.sort(rng.choice(pool, min(settings.train_sample, len(pool)), replace=False))
    factory = settings.factory.format(nlist=nlist_for(n, len(sample)))
    started = time.perf_counter()
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    hnsw = _hnsw_of(index)
    if hnsw is not None:
        hnsw.efConstruction = ef_construction
    index.train(vectors[sample])
    index.add(vectors)
    build_seconds = time.perf_counter() - started
    parameter, most = _search_parameter(index)
    started = time.perf_counter()
    value, recall = smallest_depth(lambda depth: probe.recall(index, parameter, depth), settings.recall_target,
                                   RECALL_K if parameter == "efSearch" else 1, most)
    build = IndexBuild("compressed", factory, n, build_seconds, parameter, value, recall, settings.recall_target,
                       probe.size, probe.source, len(sample), time.perf_counter() - started)
    if recall < settings.recall_target:
        raise ValueError(
            f"the compressed index {factory} reaches recall@10 {recall:.3f} at most ({parameter}={value}) on "
            f"{probe.size} {probe.source}, under compressed_recall_target {settings.recall_target}: choose a less lossy "
            "compressed_factory (e.g. IVF{nlist},SQ8 over PQ, or IVF{nlist},Flat), lower compressed_recall_target, or raise "
            "compressed_min_vectors to keep an HNSW index")
    _set(index, parameter, value)
    return index, build


def smallest_depth(recall_at, target: float, lowest: int, highest: int) -> tuple[int, float]:
    """The smallest depth in [lowest, highest] whose recall meets ``target`` (doubling, then
    bisecting: recall grows with depth), with its recall; or ``highest`` and its recall."""
    depth, recall = lowest, recall_at(lowest)
    below = lowest - 1
    while recall < target and depth < highest:
        below, depth = depth, min(highest, depth * 2)
        recall = recall_at(depth)
    if recall < target:
        return depth, recall
    while depth - below > 1:  # recall(below) < target <= recall(depth)
        middle = (below + depth) // 2
        middle_recall = recall_at(middle)
        if middle_recall >= target:
            depth, recall = middle, middle_recall
        else:
            below = middle
    return depth, recall


@dataclass
class RecallProbe:
    """Held-out queries with their exact neighbours, to score an approximate index against."""

    vectors: np.ndarray
    queries: np.ndarray
    self_positions: np.ndarray | None  # corpus vectors used as queries: their own position is excluded
    kth_score: np.ndarray  # the exact 10th-best score per query
    source: str

    @property
    def size(self) -> int:
        return len(self.queries)

    @classmethod
    def for_index(cls, vectors: np.ndarray, n_queries: int, queries: np.ndarray | None = None, seed: int = 0):
        import faiss

        if queries is not None and len(queries):
            queries, positions, source = np.ascontiguousarray(queries, dtype=np.float32), None, "given query vectors"
        else:
            rng = np.random.default_rng(seed)
            positions = np.sort(rng.choice(len(vectors), min(n_queries, len(vectors)), replace=False))
            queries, source = vectors[positions], "held-out corpus vectors (own position excluded)"
        extra = 0 if positions is None else 1
        k = min(RECALL_K + extra, len(vectors))
        scores, found = faiss.knn(queries, vectors, k, metric=faiss.METRIC_INNER_PRODUCT)
        kth = np.array([_without(row_p, row_s, p)[1][: RECALL_K][-1]
                        for row_p, row_s, p in zip(found, scores, _own(positions, len(queries)))], dtype=np.float32)
        return cls(vectors, queries, positions, kth, source)

    def recall(self, index, parameter: str | None = None, depth: int | None = None) -> float:
        """Recall@10 of ``index`` (at ``parameter`` = ``depth`` when given) on these queries."""
        if parameter is not None:
            _set(index, parameter, depth)
        extra = 0 if self.self_positions is None else 1
        _, found = index.search(self.queries, min(RECALL_K + extra, index.ntotal))
        hits = 0
        for row, query, own, kth in zip(found, self.queries, _own(self.self_positions, len(self.queries)), self.kth_score):
            row = row[(row >= 0) & (row != own)][:RECALL_K]
            hits += min(RECALL_K, int(np.sum(self.vectors[row] @ query >= kth - 1e-5)))
        return hits / (RECALL_K * len(self.queries))


def _own(positions, n):
    return positions if positions is not None else [-1] * n


def _without(positions, scores, own):
    keep = (positions >= 0) & (positions != own)
    return positions[keep], scores[keep]


def _hnsw_of(index):
    import faiss

    inner = faiss.downcast_index(index)
    return inner.hnsw if isinstance(inner, faiss.IndexHNSW) else None


def _search_parameter(index) -> tuple[str, int]:
    """The depth knob of ``index`` and its largest useful value."""
    import faiss

    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return "nprobe", int(ivf.nlist)
    if _hnsw_of(index) is not None:
        return "efSearch", MAX_EF_SEARCH
    raise ValueError("a compressed_factory must make an IVF or HNSW index (it has no search depth to tune)")


def _set(index, parameter: str, value: int) -> None:
    import faiss

    faiss.ParameterSpace().set_index_parameter(index, parameter, int(value))
