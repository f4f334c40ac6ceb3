"""One ranking path: the figures of the dev choice, the frozen-split report, the release gate
and the labeling queue are those of ``SearchPipeline.search``, the code users are served by.

Each test ranks the same queries twice: through the evaluation under test, and through
``search`` with ``top_n`` as deep as the configuration retrieves (the served ranking, uncut)."""

from types import SimpleNamespace

import pytest

from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig, final_order
from domret_pipeline.core.serving.dev_choice import (
    collect_rankings, document_metrics, evaluate_serving, pipeline_metrics, select_on_dev,
)
from domret_pipeline_tests.test_search import FixedIndex, KeywordReranker, OneHotEncoder, _chunks

QUERIES = {"q1": "Leeds forklift speed", "q2": "Leeds forklift rules", "q3": "LOINC code"}
QRELS = {"q1": {"d1": 1}, "q2": {"d1": 1}, "q3": {"d3": 1}}


def _fakes():
    """Dense puts d2 first, BM25 d3, the reranker d1 (it reads "Leeds"): every configuration
    of the grid ranks differently."""
    return (_chunks(), FixedIndex([("d2#0", 0.9), ("d1#0", 0.8), ("d3#0", 0.1)]), OneHotEncoder(),
            FixedIndex([("d3#0", 3.0), ("d1#0", 2.0), ("d2#0", 1.0)]), KeywordReranker())


def _served(chunks, index, encoder, bm25, reranker, config: ServingConfig, qids) -> list[list[tuple[str, float]]]:
    pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker if config.rerank else None)
    results = pipeline.search([QUERIES[q] for q in qids], top_n=config.retrieval_depth())
    return [[(h.chunk_id, h.scores["final"]) for h in r.hits] for r in results]


def _table(scored: dict) -> list[dict]:
    """The dev table as serving_config stores it (what evaluate_serving reads)."""
    return [{"config": label, "settings": s["config"].as_dict(), **(s["metrics"] or {"ndcg@10": None})}
            for label, s in scored.items()]


@pytest.mark.parametrize("depth", [100, 2])  # 2: the reranked head (3) is deeper than the first stage
def test_every_dev_configuration_scores_what_search_serves(depth):
    parts = _fakes()
    chunks, index, encoder, bm25, reranker = parts
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    qids = sorted(QRELS)
    _, scored = select_on_dev(QRELS, QUERIES, chunks, index, encoder, bm25, reranker, [2, 3], [None, 0.5, 2.0],
                              depth=depth)
    rankings = collect_rankings(qids, QUERIES, chunks, index, encoder, bm25, reranker, 3, depth)
    assert len(scored) == 2 + 2 * 2 * 3
    orders = set()
    for label, entry in scored.items():
        config = entry["config"]
        served = _served(*parts, config, qids)
        assert [final_order(rankings.stages, i, config) for i in range(len(qids))] == served, label
        assert entry["per_query"] == document_metrics(QRELS, qids, served, chunk_to_doc), label
        pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker if config.rerank else None)
        assert pipeline_metrics(pipeline, QRELS, QUERIES) == entry["per_query"], label  # the release gate's path
        orders.add(tuple(tuple(c for c, _ in r) for r in served))
    assert len(orders) >= 3  # the configurations really rank differently


def test_the_report_rows_are_the_served_pipelines_figures():
    parts = _fakes()
    chunks, index, encoder, bm25, reranker = parts
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    chosen, scored = select_on_dev(QRELS, QUERIES, chunks, index, encoder, bm25, reranker, [2, 3], [None, 0.5])
    assert chosen.rerank  # the keyword reranker fixes q1 and q2: the served row reranks
    serving = {"config": chosen.as_dict(), "dev": {"table": _table(scored)}}
    report, per_query = evaluate_serving(QRELS, QUERIES, chunks, index, encoder, bm25, reranker, serving,
                                         latency_queries=0)
    qids = sorted(QRELS)
    assert set(per_query) == {"dense", "hybrid", "dense+rerank", "hybrid+rerank", "served"}
    for name, rows in per_query.items():
        config = chosen if name == "served" else next(
            s["config"] for s in scored.values() if s["config"].label() == report["rows"][name]["config"])
        assert rows == document_metrics(QRELS, qids, _served(*parts, config, qids), chunk_to_doc), name
    assert report["rows"]["served"]["config"] == chosen.label()


def test_the_labeling_queue_reads_the_served_results():
    from domret_pipeline.core.answers.extractive import AnswerSettings
    from domret_pipeline.core.data.documents import Document
    from domret_pipeline.core.feedback.active_learning import labeling_queue

    chunks, index, encoder, bm25, reranker = _fakes()
    config = ServingConfig("hybrid", rerank=True, candidates=2, fusion_weight=0.5)
    pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker)
    documents = {c.doc_id: Document(c.doc_id, c.text, c.title, [(0, len(c.text))]) for c in chunks}
    opened = SimpleNamespace(pipeline=pipeline, chunks=chunks, scorer=lambda: (lambda q, s: [1.0] * len(s)))
    rows = labeling_queue(opened, QUERIES, documents, 0.0, AnswerSettings(3, 2), top_k=10)
    served = {q: [h.doc_id for h in r.hits[:5]] for q, r in zip(sorted(QUERIES), pipeline.search(
        [QUERIES[q] for q in sorted(QUERIES)], top_n=10))}
    assert {r["query_id"]: r["top_documents"] for r in rows} == served
    # Dense ranks d2, d1, d3 and BM25 d3, d1, d2: the same three documents, no disagreement.
    assert all(r["disagreement"] == 0.0 for r in rows)


def test_tiny_real_models_rank_the_same_in_the_report_and_in_search(tiny_encoder, tiny_reranker_base, tmp_path):
    """The tiny real models: a random MiniLM-tokenized bi-encoder, exact FAISS, bm25s, and a
    cross-encoder with a random head (its logits differ by pair, which is all this needs)."""
    from domret_pipeline.config import BM25Config
    from domret_pipeline.core.data.chunking import Chunk, passage_text
    from domret_pipeline.core.data.labels import LabeledQueries
    from domret_pipeline.core.data.serialization import read_jsonl
    from domret_pipeline.core.evaluation.retrievers import DenseSystem, evaluate_retrieval
    from domret_pipeline.core.retrieval.bm25 import BM25Index
    from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index
    from domret_pipeline.core.retrieval.encoder import encode, load_encoder
    from domret_pipeline.core.retrieval.cross_encoder import load_cross_encoder
    from domret_pipeline_tests.conftest import make_small_dataset

    data = make_small_dataset(tmp_path / "data")
    docs = list(read_jsonl(data["corpus"]))
    chunks = [Chunk(f"{d['_id']}#0", d["_id"], 0, 0, len(d["text"]), 0, 0, 30, d["text"], d["title"]) for d in docs]
    queries = {q["_id"]: q["text"] for q in read_jsonl(data["queries"])}
    qrels = {q: {d: 1} for q, d in (("q1", "slo-a"), ("q2", "slo-b"), ("q3", "fl-a"), ("q4", "fl-b"),
                                    ("q5", "hl7-a"), ("q6", "hl7-b"))}
    encoder = load_encoder(str(tiny_encoder), 64)
    index = DenseIndex(build_index(encode(encoder, [passage_text(c) for c in chunks]), "flat"),
                       [c.chunk_id for c in chunks])
    bm25 = BM25Index.build([passage_text(c) for c in chunks], [c.chunk_id for c in chunks], BM25Config().k1, BM25Config().b)
    reranker = load_cross_encoder(str(tiny_reranker_base), 64, seed=1)
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    qids = sorted(qrels)

    _, scored = select_on_dev(qrels, queries, chunks, index, encoder, bm25, reranker, [3, 6], [None, 1.0])
    for label, entry in scored.items():
        config = entry["config"]
        pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker if config.rerank else None)
        served = [[(h.chunk_id, h.scores["final"]) for h in r.hits]
                  for r in pipeline.search([queries[q] for q in qids], top_n=config.retrieval_depth())]
        # The reranker scored other batches here than in search: the same logits up to float noise.
        for q, row in document_metrics(qrels, qids, served, chunk_to_doc).items():
            assert row == pytest.approx(entry["per_query"][q], abs=1e-6), (label, q)

    labels = LabeledQueries(queries, {q: "test" for q in queries}, qrels)
    _, per_query, _ = evaluate_retrieval(labels, "test", chunks, [DenseSystem("dense", index, encoder, "tiny", "flat")],
                                         bm25, latency_queries=2)
    for name, config in (("dense", ServingConfig("dense")), ("bm25", ServingConfig("bm25"))):
        pipeline = SearchPipeline(chunks, index if name == "dense" else None, encoder, config, bm25)
        served = [[(h.chunk_id, h.scores["final"]) for h in r.hits] for r in pipeline.search([queries[q] for q in qids])]
        expected = document_metrics(qrels, qids, served, chunk_to_doc)
        assert {q: per_query[name][q]["ndcg@10"] for q in qids} == pytest.approx(
            {q: expected[q]["ndcg@10"] for q in qids}), name
