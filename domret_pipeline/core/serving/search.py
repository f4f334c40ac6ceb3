"""The query-time retrieval pipeline: dense ANN, an optional BM25 hybrid fused by reciprocal
rank, an optional cross-encoder rerank of the top ``candidates``, and the top ``top_n``
chunks with every score, the document id and the character span.

This is the only code that ranks. ``search`` serves users; the dev choice of what serves, the
frozen-split report, the release gate and active learning call the same pipeline through its
batched API: :meth:`SearchPipeline.run_stages` returns what each stage produced for many
queries (one encode call, the reranker scoring many pairs per call, possibly several first
stages, query rewrites and reranker variants at once), and :func:`.ranking.final_order` derives a configuration's
ranking from those outputs, the same function ``search`` orders its results with. So a grid of configurations
costs one first-stage pass and one reranker pass per variant, and what is measured is what
is served.

Stages, per query batch:

1. **ann** (dense or hybrid): encode the queries and search the FAISS index (``depth`` chunks);
   **rewrite** (when on, see :mod:`.rewrite`): the query vectors move toward their top ``prf_k``
   dense hits (``prf``), or are those of the query followed by a passage an LLM wrote for it
   (``llm``), and the index is searched again with them; that ranking is the dense one;
2. **bm25** (hybrid or bm25 first stage, or when asked): BM25 top ``depth`` chunks;
3. **fusion** (hybrid only): reciprocal rank fusion, ``sum 1 / (rrf_k + rank)``;
4. **rerank** (when on): the first ``candidates`` chunks are scored by the cross-encoder.
   With ``fusion_weight`` unset the reranker's logit orders them; with a weight ``w`` the
   order is ``z(first stage) + w * z(reranker)`` (z-scores within the query's candidates), so
   a reranker that carries signal the retriever lacks helps even when it is weaker alone.
   Chunks below the reranked head keep their first-stage order.

A ``bm25`` first stage (BM25 alone) is the lexical baseline the report scores; the dev choice
never serves it.

**Access control.** Every search runs as a principal (``core.retrieval.access``): the one it
names, else the pipeline's (public only, unless an evaluation built the pipeline to run as
another). Chunks the principal may not read are filtered inside the indexes (FAISS and BM25
get a visibility mask), then every stage's output, the reranker's head and the results are
checked again against the chunks' own groups, so a bug in one layer does not leak a passage.
When the principal may read every chunk, none of this runs: the ranking is the one computed
before access control existed.

Every stage is timed per batch (seconds), so the cost of reranking is visible next to its gain.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.chunking import Chunk, passage_text
from ..data.groups import PUBLIC_GROUPS
from ..retrieval.access import ChunkAccess, GroupTable, Principal, check_same_groups
from ..retrieval.encoder import encode
from .fusion import rrf_fuse
from .ranking import StageOutputs, final_order, final_ranking
from .rewrite import REWRITERS, Expansion, Feedback, Rewrite, prf_query_vectors


@dataclass
class ServingConfig:
    """Which stages serve. Chosen on the dev split (see :mod:`.dev_choice`) and stored with the
    model; ``reasons`` says why each stage is on or off."""

    first_stage: str = "dense"  # "dense", "hybrid" or "bm25" (the report's baseline)
    rerank: bool = False
    candidates: int = 20  # chunks the reranker scores
    fusion_weight: float | None = None  # None: the reranker's score alone orders the head
    rrf_k: int = 60
    depth: int = 100  # chunks each first-stage retriever returns
    top_n: int = 10
    rerank_precision: str = "fp32"  # the reranker's inference precision (see core.retrieval.precision)
    rerank_max_length: int | None = None  # tokens the reranker reads; None: what it was trained with
    rewrite: str = "none"  # "none", "prf" (pseudo-relevance feedback) or "llm" (see .rewrite); bundles without it: none
    prf_k: int | None = None  # prf: feedback chunks (tried on dev: serving_config's prf_depths)
    prf_weight: float | None = None  # prf: how far the query moves toward them (prf_weights)
    rewrite_model: str | None = None  # llm: the endpoint's model that writes the expansion
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ServingConfig":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def label(self) -> str:
        first = self.first_stage + (f"+{self.query_rewrite().label()}" if self.rewrite != "none" else "")
        if not self.rerank:
            return first
        how = "rerank only" if self.fusion_weight is None else f"w={self.fusion_weight:g}"
        variant = ""
        if self.rerank_precision != "fp32" or self.rerank_max_length is not None:
            variant = f" [{self.rerank_precision}" + (f", {self.rerank_max_length} tokens]" if self.rerank_max_length else "]")
        return f"{first}+rerank@{self.candidates} ({how}){variant}"

    def query_rewrite(self) -> Rewrite | None:
        """The query rewrite's parameters; None when the query is not rewritten."""
        if self.rewrite not in REWRITERS:
            raise ValueError(f"rewrite must be one of {', '.join(REWRITERS)}, not {self.rewrite!r}")
        if self.rewrite == "none":
            return None
        if self.rewrite == "llm":
            if not self.rewrite_model:
                raise ValueError("rewrite llm needs rewrite_model")
            return Expansion(self.rewrite_model)
        if self.prf_k is None or self.prf_weight is None:
            raise ValueError("rewrite prf needs prf_k and prf_weight")
        return Feedback(self.prf_k, self.prf_weight)

    def rewrite_key(self) -> str:
        """Which rewritten first-stage rankings this configuration reads ("none": the query's own)."""
        rewrite = self.query_rewrite()
        return "none" if rewrite is None else rewrite.key()

    def retrieval_depth(self) -> int:
        """Chunks each first-stage retriever returns: ``depth``, or the reranked head when it is deeper."""
        return max(self.depth, self.candidates if self.rerank else 0)

    def variant(self) -> str:
        """Which loaded reranker this configuration reads: precision and token limit."""
        return variant_key(self.rerank_precision, self.rerank_max_length)


def variant_key(precision: str = "fp32", max_length: int | None = None) -> str:
    return f"{precision}/{max_length or 'trained'}"


FIRST_STAGES = ("dense", "hybrid", "bm25")


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
    groups: tuple[str, ...] = PUBLIC_GROUPS  # the access groups of its document


@dataclass
class SearchResult:
    query: str
    hits: list[SearchHit]
    timings: dict[str, float]  # seconds per stage for the batch this query was in

    def as_dict(self) -> dict:
        return asdict(self)


# Pairs per reranker call when progress is reported: the cross-encoder sorts a call's pairs by
# length, so larger calls pad less; progress needs the pass cut into a few calls.
PAIRS_PER_CALL = 512


class SearchPipeline:
    """Loaded artifacts plus a :class:`ServingConfig`; ``search`` runs the stages for users,
    ``run_stages`` and ``rankings`` give the evaluations the same stages, batched.

    ``principal``: who a call that names none runs as; public only by default (what a user
    request without a principal sees). An evaluation that runs as a principal passes it here.
    ``expander``: the ``llm`` rewrite's endpoint (:class:`.llm_rewrite.OpenAICompatibleExpander`),
    needed only when a configuration run rewrites with it."""

    def __init__(self, chunks: list[Chunk], index, encoder, config: ServingConfig, bm25=None, reranker=None,
                 with_title: bool = True, batch_size: int = 32, principal=None, expander=None):
        if config.first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {', '.join(FIRST_STAGES)}, not {config.first_stage!r}")
        if config.first_stage in ("hybrid", "bm25") and bm25 is None:
            raise ValueError(f"a {config.first_stage} first stage needs a BM25 index")
        if config.rerank and reranker is None:
            raise ValueError("reranking is on but no reranker was given")
        if config.query_rewrite() is not None and config.first_stage == "bm25":
            raise ValueError(f"{config.rewrite} rewrites the query's dense vector: a bm25 first stage does not read it")
        if isinstance(config.query_rewrite(), Expansion) and expander is None:
            raise ValueError("the llm rewrite serves, but no expander (its OpenAI-compatible endpoint) was given")
        self.chunks = {c.chunk_id: c for c in chunks}
        self.index, self.encoder, self.config = index, encoder, config
        self.bm25, self.reranker, self.expander = bm25, reranker, expander
        self.with_title, self.batch_size = with_title, batch_size
        self.principal = Principal.of(principal)
        self._position = {c: i for i, c in enumerate(self.chunks)}
        self._groups = GroupTable([c.groups for c in self.chunks.values()])
        self._restrictions: dict[frozenset[str], ChunkAccess | None] = {}
        for what, store in (("dense index", index), ("BM25 index", bm25)):  # access is decided by both: they must agree
            if isinstance(getattr(store, "groups", None), GroupTable):
                check_same_groups(store.groups, store.chunk_ids, self.chunks, what)

    def restriction(self, principal=None) -> ChunkAccess | None:
        """What ``principal`` (None: the pipeline's) may read; None when it may read every chunk."""
        who = self.principal if principal is None else Principal.of(principal)
        if who.groups not in self._restrictions:
            mask = self._groups.mask(who)
            self._restrictions[who.groups] = None if mask is None else ChunkAccess(self._position, mask)
        return self._restrictions[who.groups]

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        return encode(self.encoder, queries, self.batch_size)

    def run_stages(self, queries: list[str], *, first_stages: tuple[str, ...] | None = None,
                   candidates: int | None = None, rerankers: dict | None = None, depth: int | None = None,
                   lexical: bool = False, query_vectors: np.ndarray | None = None, progress=None,
                   principal=None, rewrites: tuple[Rewrite | None, ...] | None = None) -> StageOutputs:
        """Run the stages once for every query. By default those of the served configuration;
        an evaluation may ask for several ``first_stages`` at once, the reranker ``rerankers``
        (variant key -> model) over the union of their top ``candidates``, BM25 even where no
        first stage reads it (``lexical``), and pass ``query_vectors`` it already encoded.
        ``progress`` (a :class:`.progress.Progress` over queries x variants) follows the
        reranker, the slow stage on a CPU. ``principal``: who the queries run as (None: the
        pipeline's principal); every stage returns only what it may read. ``rewrites``: the
        query rewrites whose first-stage rankings to produce as well (None in it: the queries
        as written, which always run since the rewrite's feedback comes from them; by default
        the served configuration's), and whose heads the reranker scores."""
        config = self.config
        who = self.principal if principal is None else Principal.of(principal)
        access = self.restriction(who)
        first_stages = tuple(first_stages or (config.first_stage,))
        if candidates is None:
            candidates = config.candidates if config.rerank else 0
        if rerankers is None:
            rerankers = {config.variant(): self.reranker} if config.rerank else {}
        depth = depth or max(config.retrieval_depth(), candidates)
        rewrites = tuple(dict.fromkeys(rewrites if rewrites is not None else (config.query_rewrite(),)))
        feedbacks = [f for f in rewrites if f is not None]
        if feedbacks and not {"dense", "hybrid"} & set(first_stages):
            raise ValueError("a query rewrite was asked for but no first stage reads the query's dense vector")
        stages = StageOutputs(list(queries), depth, config.rrf_k, principal=who)
        timings = stages.timings
        if {"dense", "hybrid"} & set(first_stages):
            started = time.perf_counter()
            stages.query_vectors = self.encode_queries(queries) if query_vectors is None else query_vectors
            stages.dense = self._dense_search(stages.query_vectors, depth, access)
            timings["ann"] = time.perf_counter() - started
        if feedbacks:
            started = time.perf_counter()
            for rewrite in feedbacks:
                if isinstance(rewrite, Expansion):  # the query and the passage the endpoint wrote for it
                    if self.expander is None:
                        raise ValueError("the llm rewrite was asked for but the pipeline has no expander")
                    vectors = self.encode_queries(self.expander(list(queries)))
                else:  # the feedback: the plain dense ranking, readable chunks only (checked again)
                    vectors = prf_query_vectors(self.index, stages.query_vectors, stages.dense, rewrite,
                                                None if access is None else access.readable)
                stages.rewritten[rewrite.key()] = {"dense": self._dense_search(vectors, depth, access)}
            timings["rewrite"] = time.perf_counter() - started
        if lexical or {"hybrid", "bm25"} & set(first_stages):
            if self.bm25 is None:
                raise ValueError("the BM25 stage was asked for but the pipeline has no BM25 index")
            started = time.perf_counter()
            if access is None:
                stages.lexical = self.bm25.search(queries, depth)
            else:  # masked inside bm25s, then verified
                stages.lexical = access.only(self.bm25.search(queries, depth, visible=access.over(self.bm25)))
            timings["bm25"] = time.perf_counter() - started
        if "hybrid" in first_stages:
            started = time.perf_counter()
            stages.hybrid = [rrf_fuse([d, b], config.rrf_k)[:depth] for d, b in zip(stages.dense, stages.lexical)]
            for rankings in stages.rewritten.values():
                rankings["hybrid"] = [rrf_fuse([d, b], config.rrf_k)[:depth] for d, b in zip(rankings["dense"], stages.lexical)]
            timings["fusion"] = time.perf_counter() - started
        if rerankers and candidates > 0:
            started = time.perf_counter()
            keys = ["none" if f is None else f.key() for f in rewrites]
            # BM25 reads the query's words, which no rewrite changes
            heads = [list(dict.fromkeys(c for key in keys for f in first_stages
                                        for c, _ in stages.first(f, "none" if f == "bm25" else key)[i][:candidates]
                                        if access is None or access.readable(c)))  # the reranker re-checks
                     for i in range(len(stages.queries))]
            for variant, model in rerankers.items():
                stages.rerank[variant] = self._score_heads(model, stages.queries, heads, progress)
            timings["rerank"] = time.perf_counter() - started
        return stages

    def _dense_search(self, vectors: np.ndarray, depth: int, access: ChunkAccess | None) -> list[list[tuple[str, float]]]:
        if access is None:
            return self.index.search(vectors, depth)
        # filtered inside FAISS, then verified
        return access.only(self.index.search(vectors, depth, visible=access.over(self.index)))

    def _score_heads(self, model, queries: list[str], heads: list[list[str]], progress) -> list[dict[str, float]]:
        from ..retrieval.cross_encoder import score_pair_list

        widest = max((len(h) for h in heads), default=1) or 1
        step = max(1, PAIRS_PER_CALL // widest) if progress is not None else max(len(queries), 1)
        out: list[dict[str, float]] = []
        for start in range(0, len(queries), step):
            part = list(zip(queries[start:start + step], heads[start:start + step]))
            pairs = [(q, passage_text(self.chunks[c], self.with_title)) for q, head in part for c in head]
            logits = iter(map(float, score_pair_list(model, pairs, self.batch_size)))
            out.extend({c: next(logits) for c in head} for _, head in part)
            if progress is not None:
                progress.advance(len(part))
        return out

    def results(self, stages: StageOutputs, top_n: int | None = None) -> list[SearchResult]:
        """The served configuration's top ``top_n`` hits of each query, from stage outputs it
        ran (ranked as deep as they ran, as ``search`` does)."""
        top_n = top_n or self.config.top_n
        access = self.restriction(stages.principal)
        results = []
        for position, query in enumerate(stages.queries):
            hits = []
            ranked = final_ranking(stages, position, self.config, stages.depth)
            if access is not None:  # the last check before anything leaves the pipeline
                ranked = [cand for cand in ranked if access.readable(cand.chunk_id)]
            for rank, cand in enumerate(ranked[:top_n], start=1):
                chunk = self.chunks[cand.chunk_id]
                hits.append(SearchHit(rank, chunk.chunk_id, chunk.doc_id, chunk.title, chunk.start, chunk.end,
                                      chunk.text, cand.scores, chunk.groups))
            results.append(SearchResult(query, hits, dict(stages.timings)))
        return results

    def search(self, queries: list[str], top_n: int | None = None, principal=None) -> list[SearchResult]:
        """The top ``top_n`` hits of each query that ``principal`` (a :class:`Principal` or its
        groups; None: the pipeline's, public only by default) may read."""
        top_n = top_n or self.config.top_n
        started = time.perf_counter()
        stages = self.run_stages(queries, depth=max(self.config.retrieval_depth(), top_n), principal=principal)
        results = self.results(stages, top_n)
        total = time.perf_counter() - started
        for result in results:
            result.timings["total"] = total
        return results

    def rankings(self, queries: list[str], depth: int | None = None, query_vectors: np.ndarray | None = None,
                 principal=None) -> list[list[tuple[str, float]]]:
        """Every query's served ranking, ``depth`` chunks deep (the configuration's own depth by
        default), as (chunk id, final score): what ``search`` returns, uncut, for evaluations."""
        stages = self.run_stages(queries, depth=depth, query_vectors=query_vectors, principal=principal)
        ranked = [final_order(stages, i, self.config, stages.depth) for i in range(len(stages.queries))]
        access = self.restriction(stages.principal)
        return ranked if access is None else access.only(ranked)
