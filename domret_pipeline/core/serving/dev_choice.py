"""Scoring every serving configuration on one split, and choosing what serves on dev.

The served pipeline (:class:`.search.SearchPipeline`) runs its stages once per split, for
every configuration at once: dense and hybrid first stages, and the reranker's logits for
the union of their heads, per reranker variant. Each configuration's ranking is then derived
by the function the served pipeline orders its results with (:func:`.search.final_order`),
so a grid over candidates and fusion weights costs one pass of the cross-encoder per variant,
and the figures are those of the code users are served by. Rankings are of chunks; metrics
are of documents (a document scores as its best chunk), as everywhere else in the project.

Choice rule (dev split only):

1. the first stage is hybrid only when hybrid beats dense on dev nDCG@10 by more than
   ``min_gain``;
2. reranking serves only when the best reranking configuration beats the chosen first stage
   on dev nDCG@10 by more than ``min_gain``; otherwise it is off, and the reason (with both
   figures) is recorded with the configuration;
3. when query rewrites were tried (:mod:`.rewrite`), the configuration chosen by 1-2 is
   rewritten only when its best rewritten twin (the same stages, the query rewritten) beats
   it on dev nDCG@10 by more than ``min_gain``.

Rules 1-2 read only the configurations without a rewrite, so a grid without rewrites chooses
as it did before rewriting existed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..data.chunking import Chunk
from ..evaluation.metrics import evaluate_run, mean_metrics
from ..retrieval.document_ranking import aggregate_max
from .latency import over_budget, time_pipeline, time_reranking, timing_group
from .rewrite import Expansion, Rewrite
from .search import SearchPipeline, ServingConfig, StageOutputs, final_order, variant_key

PIPELINE_K = (10,)  # rankings stop at `depth` chunks: Recall@100 would not be comparable


@dataclass
class SplitRankings:
    """The pipeline's stage outputs for a split's queries (see
    :meth:`.search.SearchPipeline.run_stages`), with the query ids they are aligned with."""

    qids: list[str]
    stages: StageOutputs


def as_variants(reranker) -> dict:
    """Rerankers by variant: a dict as given, one model as the default variant (fp32, its
    trained length), None as none."""
    if reranker is None:
        return {}
    return dict(reranker) if isinstance(reranker, dict) else {variant_key(): reranker}


def collect_rankings(
    qids: list[str], queries: dict[str, str], chunks: list[Chunk], index, encoder, bm25, reranker,
    max_candidates: int, depth: int = 100, rrf_k: int = 60, with_title: bool = True, batch_size: int = 32,
    progress=None, principal=None, rewrites: list[Rewrite] | tuple = (), expander=None,
) -> SplitRankings:
    """One run of the served pipeline's stages for every configuration of a grid: dense and
    hybrid first stages, of the queries as written and of each query rewrite in ``rewrites``,
    and each reranker variant over the union of their top ``max_candidates`` chunks.
    ``reranker``: one model, or models by variant (see :func:`as_variants`). ``progress`` (a
    :class:`.progress.Progress` over queries x variants) is advanced as they are scored.
    ``principal``: who the queries run as (None: public only). ``expander``: the ``llm``
    rewrite's endpoint, when ``rewrites`` holds it."""
    pipeline = SearchPipeline(chunks, index, encoder, ServingConfig("hybrid", depth=depth, rrf_k=rrf_k), bm25,
                              with_title=with_title, batch_size=batch_size, principal=principal, expander=expander)
    stages = pipeline.run_stages([queries[q] for q in qids], first_stages=("dense", "hybrid"),
                                 candidates=max_candidates, rerankers=as_variants(reranker),
                                 depth=max(depth, max_candidates), progress=progress, rewrites=(None, *rewrites))
    return SplitRankings(list(qids), stages)


def document_metrics(qrels: dict[str, dict[str, int]], qids: list[str], rankings: list[list[tuple[str, float]]],
                     chunk_to_doc: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per-query document metrics of chunk rankings aligned with ``qids`` (a document scores as its best chunk)."""
    return evaluate_run(qrels, {q: aggregate_max(r, chunk_to_doc) for q, r in zip(qids, rankings)}, PIPELINE_K)


def evaluate_config(qrels: dict[str, dict[str, int]], rankings: SplitRankings, config: ServingConfig,
                    chunk_to_doc: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per-query document metrics of one configuration, ranked by the served pipeline's own
    :func:`.search.final_order`."""
    ranked = [final_order(rankings.stages, i, config) for i in range(len(rankings.qids))]
    return document_metrics(qrels, rankings.qids, ranked, chunk_to_doc)


def pipeline_metrics(pipeline: SearchPipeline, qrels: dict[str, dict[str, int]],
                     queries: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per-query document metrics of a pipeline's served ranking, all queries in one batch."""
    qids = sorted(qrels)
    return document_metrics(qrels, qids, pipeline.rankings([queries[q] for q in qids]),
                            {c.chunk_id: c.doc_id for c in pipeline.chunks.values()})


def grid(candidates: list[int], fusion_weights: list[float | None], with_reranker: bool, depth: int, rrf_k: int,
         variants: list[tuple[str, int | None]] | None = None, rewrites: list[Rewrite] | tuple = ()) -> list[ServingConfig]:
    """Dense, hybrid, and with a reranker every (first stage, candidates, fusion weight,
    reranker variant); ``variants`` are (precision, max_length) pairs, by default fp32 at the
    trained length. Then each of those again with each query rewrite of ``rewrites``."""
    configs = [ServingConfig("dense", depth=depth, rrf_k=rrf_k), ServingConfig("hybrid", depth=depth, rrf_k=rrf_k)]
    if with_reranker:
        for first in ("dense", "hybrid"):
            for k in candidates:
                for precision, max_length in variants or [("fp32", None)]:
                    for w in fusion_weights:
                        configs.append(ServingConfig(first, True, k, w, rrf_k, depth, rerank_precision=precision,
                                                     rerank_max_length=max_length))
    return configs + [rewritten(c, feedback) for feedback in rewrites for c in configs]


def rewritten(config: ServingConfig, rewrite: Rewrite | None) -> ServingConfig:
    """``config`` with the query rewritten by ``rewrite`` (None: as written), no reasons."""
    plain = replace(config, rewrite="none", prf_k=None, prf_weight=None, rewrite_model=None, reasons=[])
    if rewrite is None:
        return plain
    if isinstance(rewrite, Expansion):
        return replace(plain, rewrite="llm", rewrite_model=rewrite.model)
    return replace(plain, rewrite="prf", prf_k=rewrite.k, prf_weight=rewrite.weight)


def uncached(expander):
    """The ``llm`` rewrite's endpoint as a timed request meets it: without the expansions
    remembered from the dev pass (a remembered one would time as free)."""
    return None if expander is None else expander.uncached()


def cheaper_first(config: ServingConfig) -> tuple:
    """The tie-break of rewritten twins on dev (larger is preferred): the cheaper rewrite."""
    return tuple(-x for x in config.query_rewrite().cost())


def same_stages(a: ServingConfig, b: ServingConfig) -> bool:
    """Whether two configurations differ at most in the query rewrite (and their reasons and
    ``top_n``, which the served one takes from the settings)."""
    return ({**rewritten(a, None).as_dict(), "top_n": None} == {**rewritten(b, None).as_dict(), "top_n": None})


def choose(scores: dict[str, float], configs: list[ServingConfig], min_gain: float = 0.0,
           excluded: dict[str, str] | None = None) -> ServingConfig:
    """The serving configuration from dev nDCG@10 per configuration label (see module doc).
    ``excluded``: configurations ruled out (by the latency budget), label -> why."""
    plain = [c for c in configs if c.rewrite == "none"]
    chosen = _choose_stages(scores, plain, min_gain, excluded or {})
    rewrites = [c for c in configs if c.rewrite != "none" and same_stages(c, chosen)]
    if not any(c.rewrite != "none" for c in configs):
        return chosen
    reasons, base = chosen.reasons, scores[chosen.label()]
    fits = [c for c in rewrites if c.label() not in (excluded or {}) and c.label() in scores]
    if not fits:
        reasons.append(f"rewrite off: no rewrite of {chosen.label()} "
                       + ("fits the latency budget" if rewrites else "was tried"))
        return chosen
    # Ties go to the cheaper rewrite: prf before the LLM, fewer feedback chunks, the smaller move.
    best = max(fits, key=lambda c: (scores[c.label()], *cheaper_first(c)))
    best_score = scores[best.label()]
    if best_score > base + min_gain:
        reasons.append(f"rewrite on: {best.label()} dev nDCG@10 {best_score:.4f} > {chosen.label()} {base:.4f}")
        return ServingConfig(**{**best.as_dict(), "reasons": reasons})
    reasons.append(f"rewrite off: the best rewrite, {best.label()}, scored dev nDCG@10 {best_score:.4f}, not above "
                   f"{chosen.label()} {base:.4f} by more than {min_gain:g}")
    return chosen


def _choose_stages(scores: dict[str, float], configs: list[ServingConfig], min_gain: float,
                   excluded: dict[str, str]) -> ServingConfig:
    """Rules 1 and 2 of the module doc over configurations without a query rewrite."""
    by_label = {c.label(): c for c in configs}
    dense, hybrid = scores["dense"], scores["hybrid"]
    if hybrid > dense + min_gain:
        first, reasons = by_label["hybrid"], [f"hybrid on: dev nDCG@10 {hybrid:.4f} > dense {dense:.4f}"]
    else:
        first, reasons = by_label["dense"], [f"hybrid off: dev nDCG@10 {hybrid:.4f} does not beat dense {dense:.4f} by more than {min_gain:g}"]
    first_score = scores[first.label()]
    reranked = [c for c in configs if c.rerank]
    excluded = {label: why for label, why in excluded.items() if label in by_label}
    if excluded:
        reasons.append(f"latency budget: {sum(c.label() in excluded for c in reranked)} of {len(reranked)} reranking "
                       "configurations ruled out (" + "; ".join(f"{k}: {v}" for k, v in list(excluded.items())[:3])
                       + ("; …" if len(excluded) > 3 else "") + ")")
    fits = [c for c in reranked if c.label() not in excluded]
    if not reranked:
        chosen = first
        reasons.append("rerank off: no reranker")
    elif not fits:
        chosen = first
        reasons.append("rerank off: no reranking configuration fits the latency budget")
    else:
        # Ties go to the cheaper configuration: fewer candidates first, as listed in the grid.
        best = max(fits, key=lambda c: (scores[c.label()], -c.candidates))
        best_score = scores[best.label()]
        if best_score > first_score + min_gain:
            chosen = best
            reasons.append(f"rerank on: {best.label()} dev nDCG@10 {best_score:.4f} > {first.label()} {first_score:.4f}")
        else:
            chosen = first
            reasons.append(f"rerank off: the best reranking configuration, {best.label()}, scored dev nDCG@10 "
                           f"{best_score:.4f}, not above {first.label()} {first_score:.4f} by more than {min_gain:g}")
    return ServingConfig(**{**chosen.as_dict(), "reasons": reasons})


def best_per_family(scores: dict[str, float], configs: list[ServingConfig]) -> dict[str, ServingConfig]:
    """The best dev configuration of each family (dense, hybrid, dense+rerank, hybrid+rerank,
    and each with ``+prf`` or ``+llm`` where query rewrites were tried): the report shows each family with
    its dev-chosen candidates, weight and rewrite."""
    families: dict[str, ServingConfig] = {}
    for config in configs:
        if scores.get(config.label()) is None:  # not scored on dev (over the latency budget)
            continue
        family = config.first_stage + (f"+{config.rewrite}" if config.rewrite != "none" else "") + ("+rerank" if config.rerank else "")
        if family not in families or scores[config.label()] > scores[families[family].label()]:
            families[family] = config
    return families


def dev_order(row: dict) -> tuple:
    """Sort key of dev-choice table rows: best dev nDCG@10 first, rows not scored (over the
    latency budget) last."""
    return (row["ndcg@10"] is None, -(row["ndcg@10"] or 0.0))


def score_all(qrels, rankings: SplitRankings, configs: list[ServingConfig], chunk_to_doc) -> dict[str, dict]:
    """label -> {"config", "per_query", "metrics"} for every configuration."""
    out = {}
    for config in configs:
        per_query = evaluate_config(qrels, rankings, config, chunk_to_doc)
        out[config.label()] = {"config": config, "per_query": per_query, "metrics": mean_metrics(per_query)}
    return out


def evaluate_serving(
    qrels: dict[str, dict[str, int]], queries: dict[str, str], chunks: list[Chunk], index, encoder, bm25, reranker,
    serving: dict, latency_queries: int = 100, with_title: bool = True, principal=None, expander=None,
) -> tuple[dict, dict[str, dict[str, dict[str, float]]]]:
    """Every configuration family at its dev-chosen settings, and the served configuration, on
    one (frozen) split; plus per-stage latency of the served pipeline and of the full one
    (hybrid + rerank), one query at a time. ``serving`` is the ``serving.json`` document;
    ``principal`` who the queries run as (None: public only); ``expander`` the ``llm``
    rewrite's endpoint, needed when a configuration evaluated rewrites with it."""
    from ..evaluation.significance import paired_test

    dev_rows = serving["dev"]["table"]
    dev_scores = {r["config"]: r["ndcg@10"] for r in dev_rows}
    configs = [ServingConfig.from_dict(r["settings"]) for r in dev_rows]
    served = ServingConfig.from_dict(serving["config"])
    families = best_per_family(dev_scores, configs)
    rerankers = as_variants(reranker)
    families = {k: v for k, v in families.items() if not v.rerank or v.variant() in rerankers}
    evaluated = {**{family: c for family, c in families.items()}, "served": served}
    max_candidates = max([c.candidates for c in evaluated.values() if c.rerank] or [0])
    needed = {c.variant() for c in evaluated.values() if c.rerank}
    qids = sorted(qrels)
    feedbacks = list(dict.fromkeys(c.query_rewrite() for c in evaluated.values() if c.rewrite != "none"))
    if expander is None:  # no endpoint here: a rewrite through it cannot be evaluated
        if any(isinstance(f, Expansion) for f in feedbacks) and served.rewrite == "llm":
            raise ValueError("the served configuration rewrites queries with an LLM, but no expander (endpoint) was given")
        feedbacks = [f for f in feedbacks if not isinstance(f, Expansion)]
        evaluated = {k: c for k, c in evaluated.items() if c.rewrite != "llm"}
    rankings = collect_rankings(qids, queries, chunks, index, encoder, bm25,
                                {v: m for v, m in rerankers.items() if v in needed}, max_candidates, served.depth,
                                served.rrf_k, with_title, principal=principal, rewrites=feedbacks, expander=expander)
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    per_query = {name: evaluate_config(qrels, rankings, c, chunk_to_doc) for name, c in evaluated.items()}
    rows = {
        name: {"config": c.label(), "metrics": mean_metrics(per_query[name]), "dev_ndcg@10": dev_scores.get(c.label()),
               "n_queries": len(per_query[name])}
        for name, c in evaluated.items()
    }
    significance = {
        name: paired_test({q: per_query["dense"][q]["ndcg@10"] for q in qids}, {q: per_query[name][q]["ndcg@10"] for q in qids})
        for name in evaluated if name != "dense"
    }
    latency = {}
    if latency_queries > 0:
        timed = [queries[q] for q in qids[:latency_queries]]
        setups = {"served": served}
        # the query rewrite's cost when dev left it off: the served stages with its best dev rewrite
        twins = [c for c in configs if c.rewrite != "none" and same_stages(c, served) and dev_scores.get(c.label()) is not None
                 and (expander is not None or c.rewrite != "llm")]
        if served.rewrite == "none" and twins:
            best = max(twins, key=lambda c: (dev_scores[c.label()], *cheaper_first(c)))
            setups[f"served+{best.rewrite}"] = best
        full_variant = served if served.rerank else ServingConfig()
        if full_variant.variant() in rerankers:
            setups["hybrid+rerank@20"] = ServingConfig(
                "hybrid", True, 20, served.fusion_weight if served.rerank else None, served.rrf_k, served.depth,
                rerank_precision=full_variant.rerank_precision, rerank_max_length=full_variant.rerank_max_length)
        for name, config in setups.items():
            pipeline = SearchPipeline(chunks, index, encoder, config, bm25,
                                      rerankers[config.variant()] if config.rerank else None, with_title,
                                      principal=principal, expander=uncached(expander))
            latency[name] = {"config": config.label(), "stages": time_pipeline(pipeline, timed)}
    report = {"served": served.label(), "reasons": list(served.reasons), "rows": rows,
              "significance_vs_dense": significance, "latency": latency,
              "dev_choice": {"latency_budget_ms": serving.get("latency_budget_ms"), "table": dev_rows}}
    return report, per_query


def select_on_dev(
    qrels: dict[str, dict[str, int]], queries: dict[str, str], chunks: list[Chunk], index, encoder, bm25, reranker,
    candidates: list[int], fusion_weights: list[float | None], depth: int = 100, rrf_k: int = 60,
    min_gain: float = 0.0, with_title: bool = True, budget_ms: float | None = None, budget_queries: int = 30,
    progress_sink=None, score_over_budget: bool = True, principal=None, rewrites: list[Rewrite] | None = None,
    expander=None,
) -> tuple[ServingConfig, dict[str, dict]]:
    """Time the reranking configurations one query at a time when there is a latency budget,
    rule out those over it, score the grid on the dev split and choose; returns (chosen, scored
    grid, each entry with its latency and, when ruled out, why).

    ``reranker``: one model, or models by variant key (precision/token limit): each variant is
    a dimension of the grid. ``score_over_budget`` False skips the dev pass of the variants
    whose every configuration is over the budget (their ``metrics`` are None): on a CPU that
    pass is most of this step's time, and those variants cannot be chosen anyway. ``principal``:
    who the dev queries run as (None: public only). ``rewrites``: the query rewrites tried
    beside none (every configuration again with each; see :func:`choose`); ``expander``: the
    ``llm`` rewrite's endpoint, when ``rewrites`` holds it."""
    from ..progress import Progress

    if not qrels:
        raise ValueError("the dev split has no labeled query: cannot choose what serves")
    rerankers = as_variants(reranker)
    variants = [_variant_of(v) for v in rerankers]
    configs = grid(sorted(candidates), fusion_weights, bool(rerankers), depth, rrf_k, variants, rewrites or [])
    qids = sorted(qrels)
    excluded: dict[str, str] = {}
    latency: dict[str, dict[str, float]] = {}
    if budget_ms is not None and rerankers and budget_queries > 0:
        timed = [queries[q] for q in qids[:budget_queries]]

        def timing(subset: list[ServingConfig], what: str) -> dict[str, dict[str, float]]:
            groups = len({timing_group(c) for c in subset})
            return time_reranking(
                subset, lambda c: SearchPipeline(chunks, index, encoder, c, bm25, rerankers.get(c.variant()), with_title,
                                                 principal=principal, expander=uncached(expander)),
                timed, Progress(f"serving_config: timing {what}", groups, "configurations", progress_sink))

        plain = [c for c in configs if c.rewrite == "none"]
        latency = timing(plain, "configurations")
        excluded = over_budget(plain, latency, budget_ms)
        # A rewrite only adds work (a second ANN search): one whose stages are over the budget
        # without it is over it with it, and is not timed.
        twin = {c.label(): rewritten(c, None).label() for c in configs if c.rewrite != "none"}
        excluded.update({label: f"not timed: without the rewrite {excluded[t]}" for label, t in twin.items() if t in excluded})
        to_time = [c for c in configs if c.label() in twin and c.label() not in excluded]
        if to_time:
            latency.update(timing(to_time, "rewritten configurations"))
            excluded.update(over_budget(to_time, latency, budget_ms))
    scored_variants = rerankers if score_over_budget else {
        v: m for v, m in rerankers.items() if any(c.rerank and c.variant() == v and c.label() not in excluded for c in configs)}
    progress = Progress("serving_config: reranking dev candidates", len(qids) * len(scored_variants), "query passes",
                        progress_sink) if scored_variants else None
    rankings = collect_rankings(qids, queries, chunks, index, encoder, bm25, scored_variants, max(candidates),
                                depth, rrf_k, with_title, progress=progress, principal=principal, rewrites=rewrites or [],
                                expander=expander)
    scored = score_all(qrels, rankings, [c for c in configs if not c.rerank or c.variant() in scored_variants],
                       {c.chunk_id: c.doc_id for c in chunks})
    for config in configs:
        scored.setdefault(config.label(), {"config": config, "per_query": {}, "metrics": None})
    for label, entry in scored.items():
        entry["latency"] = latency.get(label, {})
        entry["ruled_out"] = excluded.get(label)
    chosen = choose({label: s["metrics"]["ndcg@10"] for label, s in scored.items() if s["metrics"]}, configs,
                    min_gain, excluded)
    return chosen, scored


def _variant_of(key: str) -> tuple[str, int | None]:
    precision, length = key.split("/")
    return precision, None if length == "trained" else int(length)
