import math

import pytest

from domret_pipeline.core.evaluation.metrics import evaluate_run, latency_summary, mean_metrics
from domret_pipeline.core.retrieval.document_ranking import aggregate_max, top_documents


def test_ndcg_recall_mrr_match_hand_computation():
    qrels = {"q1": {"d1": 1, "d3": 1}}
    run = {"q1": {"d2": 3.0, "d1": 2.0, "d3": 1.0}}
    row = evaluate_run(qrels, run, (1, 10))["q1"]
    dcg = 1 / math.log2(3) + 1 / math.log2(4)  # relevant at ranks 2 and 3
    idcg = 1 + 1 / math.log2(3)
    assert row["ndcg@10"] == pytest.approx(dcg / idcg)
    assert row["ndcg@1"] == 0.0
    assert row["recall@1"] == 0.0 and row["recall@10"] == 1.0
    assert row["mrr@10"] == pytest.approx(0.5)


def test_mrr_is_cut_at_k():
    qrels = {"q": {"hit": 1}}
    run = {"q": {**{f"miss{i}": 100.0 - i for i in range(10)}, "hit": 1.0}}  # relevant at rank 11
    row = evaluate_run(qrels, run, (10, 100))["q"]
    assert row["mrr@10"] == 0.0
    assert row["recall@100"] == 1.0 and row["recall@10"] == 0.0


def test_query_with_no_results_scores_zero_and_counts():
    qrels = {"a": {"d": 1}, "b": {"d": 1}}
    per_query = evaluate_run(qrels, {"a": {"d": 1.0}}, (10,))
    assert per_query["b"] == {"ndcg@10": 0.0, "recall@10": 0.0, "mrr@10": 0.0}
    assert mean_metrics(per_query)["ndcg@10"] == pytest.approx(0.5)


def test_chunks_aggregate_to_documents_by_max():
    chunk_to_doc = {"a#0": "a", "a#1": "a", "b#0": "b"}
    assert aggregate_max([("a#0", 0.2), ("b#0", 0.5), ("a#1", 0.9)], chunk_to_doc) == {"a": 0.9, "b": 0.5}


def test_top_documents_widens_until_enough_documents():
    chunk_to_doc = {f"a#{i:02d}": "a" for i in range(30)} | {"b#0": "b", "c#0": "c"}
    ranked = sorted(chunk_to_doc, key=lambda c: (c[0] != "a", c))  # thirty chunks of "a" first
    calls = []

    def search(k):
        calls.append(k)
        return [[(c, 1.0 - i / 100) for i, c in enumerate(ranked[:k])]]

    docs = top_documents(search, chunk_to_doc, n_chunks=len(chunk_to_doc), k_docs=3)[0]
    assert list(docs) == ["a", "b", "c"]
    assert len(calls) > 1  # the first window only held chunks of "a"


def test_latency_percentiles():
    summary = latency_summary([0.001 * i for i in range(1, 101)])
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p99_ms"] == pytest.approx(99.01)
