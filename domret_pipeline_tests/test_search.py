"""The query-time pipeline and the dev choice of what serves."""

import numpy as np
import pytest

from domret_pipeline.core.data.chunking import Chunk
from domret_pipeline.core.serving.dev_choice import SplitRankings, choose, evaluate_config, grid
from domret_pipeline.core.serving.fusion import apply_rerank, rrf_fuse, zscore
from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig, StageOutputs


def test_rrf_rewards_agreement_and_breaks_ties_by_id():
    fused = rrf_fuse([[("a", 9.0), ("b", 8.0), ("c", 7.0)], [("c", 3.0), ("b", 2.0)]], rrf_k=60)
    assert [c for c, _ in fused] == ["c", "b", "a"]  # c: 1/63 + 1/61 > b: 1/62 + 1/62 > a: 1/61
    assert dict(fused) == pytest.approx({"c": 1 / 63 + 1 / 61, "b": 2 / 62, "a": 1 / 61})
    assert [c for c, _ in rrf_fuse([[("y", 1.0)], [("x", 1.0)]])] == ["x", "y"]


def test_rerank_reorders_the_head_and_keeps_the_tail_below_it():
    first = [("a", 0.9), ("b", 0.8), ("c", 0.7), ("d", 0.6)]
    ranked = apply_rerank(first, {"a": -2.0, "b": 1.0, "c": 3.0}, candidates=3, fusion_weight=None)
    assert [c for c, _ in ranked] == ["c", "b", "a", "d"]
    assert ranked[-1][1] < ranked[-2][1]
    # Fusion z(first) + w z(rerank): z(first) = (1.38, -0.57, -0.81), z(rerank) = (-1.22, 1.22, 0).
    first, logits = [("a", 0.9), ("b", 0.1), ("c", 0.0)], {"a": 0.0, "b": 0.2, "c": 0.1}
    assert [c for c, _ in apply_rerank(first, logits, 3, fusion_weight=0.25)] == ["a", "b", "c"]
    assert [c for c, _ in apply_rerank(first, logits, 3, fusion_weight=1.0)] == ["b", "a", "c"]
    np.testing.assert_allclose(zscore(np.array([1.0, 1.0])), [0.0, 0.0])


def _chunks():
    texts = {"d1": "Forklifts at Leeds drive at 8 km/h.", "d2": "Forklifts at Lyon drive at 6 km/h.",
             "d3": "OBX-3 carries the LOINC code."}
    return [Chunk(f"{d}#0", d, 0, 0, len(t), 0, 0, 8, t, d.upper()) for d, t in texts.items()]


class FixedIndex:
    """An index whose answer is fixed: the dense stage under test is the ranking, not FAISS."""

    def __init__(self, ranking):
        self.ranking = ranking

    def search(self, vectors, k):
        return [self.ranking[:k] for _ in range(len(vectors))]


class OneHotEncoder:
    def encode(self, texts, **kwargs):
        return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)


class KeywordReranker:
    """Scores a passage by whether it names Leeds: stands in for a trained cross-encoder."""

    def predict(self, pairs, **kwargs):
        return np.array([5.0 if "Leeds" in p else -1.0 for _, p in pairs], dtype=np.float32)


def test_pipeline_returns_spans_scores_and_stage_timings():
    chunks = _chunks()
    index = FixedIndex([("d2#0", 0.9), ("d1#0", 0.8), ("d3#0", 0.1)])
    dense = SearchPipeline(chunks, index, OneHotEncoder(), ServingConfig("dense", top_n=2))
    result = dense.search(["Leeds forklift speed"])[0]
    assert [h.doc_id for h in result.hits] == ["d2", "d1"]  # the bi-encoder's mistake
    assert set(result.timings) == {"ann", "total"}

    reranked = SearchPipeline(chunks, index, OneHotEncoder(), ServingConfig("dense", rerank=True, candidates=3, top_n=2),
                              reranker=KeywordReranker())
    result = reranked.search(["Leeds forklift speed"])[0]
    assert [h.doc_id for h in result.hits] == ["d1", "d2"]  # fixed by the reranker
    top = result.hits[0]
    assert (top.start, top.end, top.title) == (0, len(top.text), "D1")
    assert set(top.scores) == {"dense", "rerank", "final"}
    assert {"ann", "rerank", "total"} <= set(result.timings)


def test_pipeline_refuses_missing_parts():
    with pytest.raises(ValueError, match="BM25"):
        SearchPipeline(_chunks(), FixedIndex([]), OneHotEncoder(), ServingConfig("hybrid"))
    with pytest.raises(ValueError, match="no reranker"):
        SearchPipeline(_chunks(), FixedIndex([]), OneHotEncoder(), ServingConfig("dense", rerank=True))


def _rankings(rerank_logits):
    dense = [[("d2#0", 0.9), ("d1#0", 0.8), ("d3#0", 0.1)]]
    hybrid = [[("d2#0", 0.03), ("d3#0", 0.02), ("d1#0", 0.01)]]
    stages = StageOutputs(["Leeds forklift speed"], 100, 60, dense=dense, hybrid=hybrid,
                          rerank={ServingConfig().variant(): [rerank_logits]})
    return SplitRankings(["q"], stages)


def test_configs_are_scored_at_document_level():
    chunk_to_doc = {c.chunk_id: c.doc_id for c in _chunks()}
    rankings = _rankings({"d1#0": 3.0, "d2#0": 0.0, "d3#0": 0.0})
    qrels = {"q": {"d1": 1}}
    assert evaluate_config(qrels, rankings, ServingConfig("dense"), chunk_to_doc)["q"]["mrr@10"] == 0.5
    assert evaluate_config(qrels, rankings, ServingConfig("hybrid"), chunk_to_doc)["q"]["mrr@10"] == pytest.approx(1 / 3)
    assert evaluate_config(qrels, rankings, ServingConfig("dense", True, 3), chunk_to_doc)["q"]["mrr@10"] == 1.0


def test_reranking_serves_only_when_it_beats_the_first_stage_on_dev():
    configs = grid([20], [None, 1.0], with_reranker=True, depth=100, rrf_k=60)
    scores = {c.label(): 0.50 for c in configs}
    scores["dense"], scores["hybrid"] = 0.60, 0.55
    chosen = choose(scores, configs)
    assert (chosen.first_stage, chosen.rerank) == ("dense", False)
    assert any(r.startswith("rerank off") and "0.5000" in r and "0.6000" in r for r in chosen.reasons)
    assert any(r.startswith("hybrid off") for r in chosen.reasons)

    better = ServingConfig("hybrid", True, 20, 1.0).label()
    scores[better] = 0.65
    chosen = choose(scores, configs)
    assert (chosen.first_stage, chosen.rerank, chosen.fusion_weight) == ("hybrid", True, 1.0)
    assert any(r.startswith("rerank on") for r in chosen.reasons)
    # A gain inside the tolerance is not enough.
    assert not choose(scores, configs, min_gain=0.1).rerank


def test_the_latency_budget_picks_the_best_dev_configuration_that_fits():
    from domret_pipeline.core.serving.latency import over_budget

    variants = [("fp32", None), ("int8", None), ("int8", 128)]
    configs = grid([20], [None], with_reranker=True, depth=100, rrf_k=60, variants=variants)
    by = {(c.first_stage, c.rerank, c.rerank_precision, c.rerank_max_length): c.label() for c in configs}
    scores = {c.label(): 0.50 for c in configs}
    scores.update({"dense": 0.60, "hybrid": 0.55})
    scores[by[("dense", True, "fp32", None)]] = 0.70  # the best on dev, but too slow
    scores[by[("dense", True, "int8", None)]] = 0.69
    scores[by[("dense", True, "int8", 128)]] = 0.66
    p95 = {label: 100.0 for label in scores}
    p95[by[("dense", True, "fp32", None)]] = 800.0
    p95[by[("hybrid", True, "fp32", None)]] = 820.0
    latency = {label: {"p95_ms": v} for label, v in p95.items()}

    excluded = over_budget(configs, latency, 300.0)
    assert set(excluded) == {by[("dense", True, "fp32", None)], by[("hybrid", True, "fp32", None)]}
    assert excluded[by[("dense", True, "fp32", None)]] == "p95 800 ms > budget 300 ms"
    chosen = choose(scores, configs, excluded=excluded)
    assert (chosen.rerank, chosen.rerank_precision, chosen.rerank_max_length) == (True, "int8", None)
    assert any("latency budget: 2 of 6" in r and "p95 800 ms > budget 300 ms" in r for r in chosen.reasons)
    # No budget: the fastest path is not preferred over the best one.
    assert choose(scores, configs).rerank_precision == "fp32"
    # Nothing fits: the first stage serves, and says why.
    everything = over_budget(configs, {label: {"p95_ms": 900.0} for label in scores}, 300.0)
    none_fit = choose(scores, configs, excluded=everything)
    assert not none_fit.rerank and any("no reranking configuration fits the latency budget" in r for r in none_fit.reasons)
    assert over_budget(configs, latency, None) == {}


def test_reranker_variants_have_their_own_labels_and_scores():
    fast = ServingConfig("dense", True, 3, None, rerank_precision="int8", rerank_max_length=128)
    assert fast.label() == "dense+rerank@3 (rerank only) [int8, 128 tokens]"
    assert ServingConfig("dense", True, 3).label() == "dense+rerank@3 (rerank only)"
    chunk_to_doc = {c.chunk_id: c.doc_id for c in _chunks()}
    rankings = _rankings({"d1#0": -1.0, "d2#0": 1.0, "d3#0": 0.0})
    rankings.stages.rerank[fast.variant()] = [{"d1#0": 3.0, "d2#0": 0.0, "d3#0": 0.0}]
    qrels = {"q": {"d1": 1}}
    assert evaluate_config(qrels, rankings, fast, chunk_to_doc)["q"]["mrr@10"] == 1.0
    assert evaluate_config(qrels, rankings, ServingConfig("dense", True, 3), chunk_to_doc)["q"]["mrr@10"] == pytest.approx(1 / 3)


def test_progress_reports_elapsed_and_what_is_left():
    from domret_pipeline.core.progress import Progress

    now = [0.0]
    lines: list[str] = []
    progress = Progress("encoding", 100, "chunks", lines.append, interval=10.0, clock=lambda: now[0])
    now[0] = 5.0
    progress.advance(10)
    assert lines == []  # within the interval
    now[0] = 20.0
    progress.advance(15)
    assert lines[-1] == "encoding: 25/100 chunks (25%), 20s elapsed, about 1m00s left"
    now[0] = 80.0
    progress.advance(75)
    assert lines[-1].startswith("encoding: 100/100 chunks (100%), 1m20s elapsed")


class CountingReranker(KeywordReranker):
    def __init__(self):
        self.pairs = 0

    def predict(self, pairs, **kwargs):
        self.pairs += len(pairs)
        return super().predict(pairs, **kwargs)


@pytest.mark.parametrize("score_over_budget", [True, False])
def test_variants_over_the_budget_are_timed_and_scored_only_when_asked(monkeypatch, score_over_budget):
    from domret_pipeline.core.serving import dev_choice
    from domret_pipeline.core.serving.search import variant_key

    chunks = _chunks()
    index = FixedIndex([("d2#0", 0.9), ("d1#0", 0.8), ("d3#0", 0.1)])
    bm25 = FixedIndex([("d2#0", 3.0), ("d3#0", 2.0), ("d1#0", 1.0)])
    slow, fast = CountingReranker(), CountingReranker()
    rerankers = {variant_key("fp32", None): slow, variant_key("int8", 128): fast}

    def fake_timing(configs, make_pipeline, queries, progress=None):  # the fp32 variant is over any budget
        return {c.label(): {"p95_ms": 900.0 if c.rerank and c.rerank_precision == "fp32" else 50.0} for c in configs}

    monkeypatch.setattr(dev_choice, "time_reranking", fake_timing)
    qrels, queries = {"q1": {"d1": 1}, "q2": {"d1": 1}}, {"q1": "forklift speed", "q2": "aisle speed"}
    chosen, scored = dev_choice.select_on_dev(qrels, queries, chunks, index, OneHotEncoder(), bm25, rerankers, [3], [None],
                                              budget_ms=300.0, budget_queries=2, score_over_budget=score_over_budget)
    assert (chosen.rerank, chosen.rerank_precision, chosen.rerank_max_length) == (True, "int8", 128)
    slow_rows = [s for s in scored.values() if s["config"].rerank and s["config"].rerank_precision == "fp32"]
    assert slow_rows and all(s["ruled_out"] == "p95 900 ms > budget 300 ms" for s in slow_rows)
    assert fast.pairs > 0
    if score_over_budget:
        assert slow.pairs > 0 and all(s["metrics"]["ndcg@10"] > 0 for s in slow_rows)
    else:  # no dev pass for a variant that cannot be chosen; its rows say so
        assert slow.pairs == 0 and all(s["metrics"] is None for s in slow_rows)
        rows = [{"ndcg@10": s["metrics"]["ndcg@10"] if s["metrics"] else None} for s in scored.values()]
        assert sorted(rows, key=dev_choice.dev_order)[-1]["ndcg@10"] is None
