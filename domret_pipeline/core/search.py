"""The query-time retrieval pipeline: dense ANN, an optional BM25 hybrid fused by reciprocal
rank, an optional cross-encoder rerank of the top ``candidates``, and the top ``top_n``
chunks with every score, the document id and the character span.

Stages, per query batch:

1. **ann**: encode the queries and search the FAISS index (``depth`` chunks);
2. **bm25** (hybrid only): BM25 top ``depth`` chunks;
3. **fusion** (hybrid only): reciprocal rank fusion, ``sum 1 / (rrf_k + rank)``;
4. **rerank** (when on): the first ``candidates`` chunks are scored by the cross-encoder.
   With ``fusion_weight`` unset the reranker's logit orders them; with a weight ``w`` the
   order is ``z(first stage) + w * z(reranker)`` (z-scores within the query's candidates), so
   a reranker that carries signal the retriever lacks helps even when it is weaker alone.
   Chunks below the reranked head keep their first-stage order.

Every stage is timed per batch (seconds), so the cost of reranking is visible next to its gain.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .chunking import Chunk, passage_text
from .encoder import encode


@dataclass
class ServingConfig:
    """Which stages serve. Chosen on the dev split (see :mod:`.serving`) and stored with the
    model; ``reasons`` says why each stage is on or off."""

    first_stage: str = "dense"  # "dense" or "hybrid"
    rerank: bool = False
    candidates: int = 20  # chunks the reranker scores
    fusion_weight: float | None = None  # None: the reranker's score alone orders the head
    rrf_k: int = 60
    depth: int = 100  # chunks each first-stage retriever returns
    top_n: int = 10
    rerank_precision: str = "fp32"  # the reranker's inference precision (see core.precision)
    rerank_max_length: int | None = None  # tokens the reranker reads; None: what it was trained with
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ServingConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def label(self) -> str:
        if not self.rerank:
            return self.first_stage
        how = "rerank only" if self.fusion_weight is None else f"w={self.fusion_weight:g}"
        variant = ""
        if self.rerank_precision != "fp32" or self.rerank_max_length is not None:
            variant = f" [{self.rerank_precision}" + (f", {self.rerank_max_length} tokens]" if self.rerank_max_length else "]")
        return f"{self.first_stage}+rerank@{self.candidates} ({how}){variant}"

    def variant(self) -> str:
        """Which loaded reranker this configuration reads: precision and token limit."""
        return variant_key(self.rerank_precision, self.rerank_max_length)


def variant_key(precision: str = "fp32", max_length: int | None = None) -> str:
    return f"{precision}/{max_length or 'trained'}"


@dataclass
class Candidate:
    chunk_id: str
    scores: dict[str, float]  # dense, bm25, rrf, rerank, final: whichever stages ran


@dataclass
class SearchHit:
    rank: int
    chunk_id: str
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    scores: dict[str, float]


@dataclass
class SearchResult:
    query: str
    hits: list[SearchHit]
    timings: dict[str, float]  # seconds per stage for the batch this query was in

    def as_dict(self) -> dict:
        return asdict(self)


def rrf_fuse(rankings: list[list[tuple[str, float]]], rrf_k: int = 60) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of ranked lists (best first); ties broken by chunk id."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def zscore(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    return (values - values.mean()) / std if std > 1e-12 else np.zeros_like(values)


def order_head(first_scores: np.ndarray, rerank_scores: np.ndarray, fusion_weight: float | None) -> np.ndarray:
    """Final scores of the reranked head: the reranker's logits, or the z-score fusion."""
    if fusion_weight is None:
        return np.asarray(rerank_scores, dtype=np.float64)
    return zscore(first_scores) + fusion_weight * zscore(rerank_scores)


def apply_rerank(first: list[tuple[str, float]], rerank_scores: dict[str, float], candidates: int,
                 fusion_weight: float | None) -> list[tuple[str, float]]:
    """Reorder the first ``candidates`` of a first-stage ranking with reranker scores (given
    for at least those chunks); the tail keeps its order, always below the head."""
    head, tail = first[:candidates], first[candidates:]
    if not head:
        return []
    final = order_head(np.array([s for _, s in head]), np.array([rerank_scores[c] for c, _ in head]), fusion_weight)
    ordered = sorted(zip([c for c, _ in head], final), key=lambda kv: (-kv[1], kv[0]))
    floor = min(f for _, f in ordered)
    # The tail gets strictly decreasing scores below the head, so any consumer that sorts by
    # score (pytrec_eval, document max-aggregation) keeps head-before-tail.
    return [(c, float(f)) for c, f in ordered] + [(c, floor - 1.0 - i) for i, (c, _) in enumerate(tail)]


class SearchPipeline:
    """Loaded artifacts plus a :class:`ServingConfig`; ``search`` runs the stages."""

    def __init__(self, chunks: list[Chunk], index, encoder, config: ServingConfig, bm25=None, reranker=None,
                 with_title: bool = True, batch_size: int = 32):
        if config.first_stage not in ("dense", "hybrid"):
            raise ValueError(f"first_stage must be 'dense' or 'hybrid', not {config.first_stage!r}")
        if config.first_stage == "hybrid" and bm25 is None:
            raise ValueError("a hybrid first stage needs a BM25 index")
        if config.rerank and reranker is None:
            raise ValueError("reranking is on but no reranker was given")
        self.chunks = {c.chunk_id: c for c in chunks}
        self.index, self.encoder, self.config = index, encoder, config
        self.bm25, self.reranker = bm25, reranker
        self.with_title, self.batch_size = with_title, batch_size

    def first_stage(self, queries: list[str], depth: int, timings: dict[str, float]) -> list[list[Candidate]]:
        started = time.perf_counter()
        dense = self.index.search(encode(self.encoder, queries, self.batch_size), depth)
        timings["ann"] = time.perf_counter() - started
        if self.config.first_stage == "dense":
            return [[Candidate(c, {"dense": s}) for c, s in hits] for hits in dense]
        started = time.perf_counter()
        lexical = self.bm25.search(queries, depth)
        timings["bm25"] = time.perf_counter() - started
        started = time.perf_counter()
        result = []
        for d_hits, b_hits in zip(dense, lexical):
            d_scores, b_scores = dict(d_hits), dict(b_hits)
            fused = rrf_fuse([d_hits, b_hits], self.config.rrf_k)[:depth]
            result.append([Candidate(c, {"rrf": s, **({"dense": d_scores[c]} if c in d_scores else {}),
                                         **({"bm25": b_scores[c]} if c in b_scores else {})}) for c, s in fused])
        timings["fusion"] = time.perf_counter() - started
        return result

    def search(self, queries: list[str], top_n: int | None = None) -> list[SearchResult]:
        config = self.config
        top_n = top_n or config.top_n
        timings: dict[str, float] = {}
        total_started = time.perf_counter()
        depth = max(config.depth, top_n, config.candidates if config.rerank else 0)
        lists = self.first_stage(queries, depth, timings)
        primary = "dense" if config.first_stage == "dense" else "rrf"
        if config.rerank:
            started = time.perf_counter()
            from .reranker import score_pairs

            for query, cands in zip(queries, lists):
                head = cands[: config.candidates]
                logits = score_pairs(self.reranker, query, [passage_text(self.chunks[c.chunk_id], self.with_title)
                                                           for c in head], self.batch_size)
                for cand, logit in zip(head, logits):
                    cand.scores["rerank"] = float(logit)
                ranked = apply_rerank([(c.chunk_id, c.scores[primary]) for c in cands],
                                      {c.chunk_id: c.scores["rerank"] for c in head}, config.candidates, config.fusion_weight)
                by_id = {c.chunk_id: c for c in cands}
                cands[:] = [by_id[c] for c, _ in ranked]
                for c, final in ranked:
                    by_id[c].scores["final"] = final
            timings["rerank"] = time.perf_counter() - started
        else:
            for cands in lists:
                for c in cands:
                    c.scores["final"] = c.scores[primary]
        timings["total"] = time.perf_counter() - total_started
        results = []
        for query, cands in zip(queries, lists):
            hits = []
            for rank, cand in enumerate(cands[:top_n], start=1):
                chunk = self.chunks[cand.chunk_id]
                hits.append(SearchHit(rank, chunk.chunk_id, chunk.doc_id, chunk.title, chunk.start, chunk.end,
                                      chunk.text, cand.scores))
            results.append(SearchResult(query, hits, dict(timings)))
        return results
