from collections import Counter

import numpy as np
import pytest

from domret_pipeline.config import MiningConfig
from domret_pipeline.core.data.chunking import Chunk
from domret_pipeline.core.data.documents import Evidence
from domret_pipeline.core.evaluation.significance import paired_test
from domret_pipeline.core.training.mining import NoNegativesError, mine
from domret_pipeline.core.training.positives import positive_chunks

from .settings_helpers import settings_for


def _mining(**values):
    return settings_for(MiningConfig, **values)


def _chunk(doc, i, first, last):
    return Chunk(f"{doc}#{i}", doc, i, 0, 1, first, last, 1, "x")


def _space(scores: list[float]):
    """One query vector and chunk vectors whose cosine with it equals ``scores``."""
    query = np.array([1.0, 0.0], dtype=np.float32)
    chunks = np.array([[s, np.sqrt(1 - s * s)] for s in scores], dtype=np.float32)
    return query[None, :], chunks


# chunk scores, best first: p#0 (positive) 0.9, r#0 (another relevant doc) 0.88, then negatives
IDS = ["p#0", "r#0", "n1#0", "n2#0", "n3#0", "n4#0", "n5#0"]
SCORES = [0.9, 0.88, 0.87, 0.8, 0.7, 0.6, 0.5]
DOC = {c: c.split("#")[0] for c in IDS}
QRELS = {"q": {"p": 1, "r": 1}}
POSITIVES = {"q": [("p#0", "evidence")]}


def _mine(settings, **kwargs):
    q, vectors = _space(SCORES)
    return mine(["q"], q, IDS, vectors, DOC, QRELS, POSITIVES, settings, **kwargs)


def test_mining_never_returns_a_labeled_positive():
    result = _mine(_mining(range_min=0, range_max=7, max_positive_ratio=1.0, num_negatives=10))
    negatives = [n["chunk_id"] for n in result.queries[0].negatives]
    assert "p#0" not in negatives and "r#0" not in negatives  # r is relevant too, not just the chosen positive
    assert negatives == ["n1#0", "n2#0", "n3#0", "n4#0", "n5#0"]
    assert result.removed["labeled_positive"] == 2


def test_mining_respects_the_rank_window():
    result = _mine(_mining(range_min=3, range_max=5, max_positive_ratio=1.0, num_negatives=10))
    assert [n["chunk_id"] for n in result.queries[0].negatives] == ["n2#0", "n3#0"]  # ranks 3 and 4
    assert all(3 <= n["rank"] < 5 for n in result.queries[0].negatives)
    assert result.removed["dense_above_window"] == 3


def test_margin_drops_candidates_close_to_the_positive():
    # 0.95 * 0.9 = 0.855: n1 (0.87) is too close to the positive to trust as a negative
    result = _mine(_mining(range_min=0, range_max=7, max_positive_ratio=0.95, num_negatives=2))
    assert [n["chunk_id"] for n in result.queries[0].negatives] == ["n2#0", "n3#0"]
    assert result.removed["margin"] == 1


def test_confirmed_feedback_negatives_come_first_and_never_positives():
    result = _mine(_mining(range_min=0, range_max=7, num_negatives=2),
                   confirmed_negatives={"q": ["n5#0", "r#0"]})
    negatives = result.queries[0].negatives
    assert [(n["chunk_id"], n["source"]) for n in negatives] == [("n5#0", "feedback"), ("n2#0", "dense")]


def test_empty_result_is_a_clear_error():
    with pytest.raises(NoNegativesError, match="widen the window"):
        _mine(_mining(range_min=0, range_max=3, max_positive_ratio=0.5, num_negatives=3))
    with pytest.raises(ValueError):
        _mine(_mining(range_min=5, range_max=5))


def test_random_fill_keeps_a_query_whose_candidates_all_failed():
    q, vectors = _space(SCORES)
    q2 = np.array([[0.0, 1.0]], dtype=np.float32)  # scores sqrt(1 - s^2): n5 0.87, n4 0.80, n3 0.71, ...
    qrels = {**QRELS, "q2": {"n5": 1}}
    positives = {**POSITIVES, "q2": [("n5#0", "evidence")]}
    settings = _mining(range_min=0, range_max=3, max_positive_ratio=0.95, num_negatives=1, fill_random=True)
    result = mine(["q", "q2"], np.vstack([q, q2]), IDS, vectors, DOC, qrels, positives, settings)
    by_query = {m.query_id: m.negatives for m in result.queries}
    # q: its window holds p, r (relevant) and n1 (0.87 > 0.95 * 0.9): nothing survives, so one random filler
    assert [n["source"] for n in by_query["q"]] == ["random"] and result.queries_without_negatives == ["q"]
    assert DOC[by_query["q"][0]["chunk_id"]] not in QRELS["q"]
    # q2: n4 (0.80 < 0.95 * 0.87) is a real hard negative
    assert [(n["chunk_id"], n["source"]) for n in by_query["q2"]] == [("n4#0", "dense")]
    # random filler alone is never a training set
    with pytest.raises(NoNegativesError):
        _mine(settings)


def test_bm25_candidates_are_filtered_by_the_same_rules():
    bm25 = [[("r#0", 9.0), ("n5#0", 8.0), ("n1#0", 7.0)]]
    result = _mine(_mining(range_min=0, range_max=3, max_positive_ratio=0.95, num_negatives=5, use_bm25=True),
                   bm25_hits=bm25)
    negatives = {n["chunk_id"]: n["source"] for n in result.queries[0].negatives}
    assert negatives == {"n5#0": "bm25"}  # r is relevant, n1 fails the margin; dense window held only p, r, n1


def test_positive_rule_evidence_then_single_chunk_then_best_match():
    chunks = [_chunk("a", 0, 0, 2), _chunk("a", 1, 3, 5), _chunk("b", 0, 0, 3), _chunk("c", 0, 0, 1), _chunk("c", 1, 2, 3)]
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}, "q4": {"a": 0}}
    evidence = [Evidence("q1", "a", "SUPPORT", (4,))]
    scores = {"c#0": 0.2, "c#1": 0.7}
    result = positive_chunks(qrels, chunks, evidence, lambda q, ids: [scores[i] for i in ids])
    assert result["q1"] == [("a#1", "evidence")]
    assert result["q2"] == [("b#0", "single_chunk")]
    assert result["q3"] == [("c#1", "best_match")]
    assert "q4" not in result  # a relevance of 0 is not a positive


def test_paired_test_on_a_hand_computed_case():
    a = {str(i): 0.5 for i in range(20)}
    b = {str(i): 0.5 + (0.1 if i < 15 else 0.0) for i in range(20)}
    result = paired_test(a, b, permutations=2000)
    assert result["mean_difference"] == pytest.approx(0.075)
    assert (result["wins"], result["losses"], result["ties"]) == (15, 0, 5)
    assert result["p_randomization"] < 0.001  # 15 wins and no loss: 2 of 2^15 sign patterns are as extreme
    same = paired_test(a, dict(a))
    assert same["p_randomization"] == 1.0 and same["p_wilcoxon"] == 1.0


def test_feedback_negatives_loader_expands_documents_and_names_bad_lines(tmp_path):
    import json

    from domret_pipeline.core.data.loaders import load_feedback_negatives
    from domret_pipeline.core.errors import InputDataError

    path = tmp_path / "feedback.jsonl"
    rows = [
        {"query_id": "q", "doc_id": "n1", "label": "not_relevant"},
        {"query_id": "q", "chunk_id": "n2#0", "label": "not relevant"},
        {"query_id": "q", "doc_id": "p", "label": "relevant"},  # other labels feed other stages
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    by_doc = {"n1": ["n1#0", "n1#1"], "n2": ["n2#0"], "p": ["p#0"]}
    negatives, issues = load_feedback_negatives(path, {"q"}, by_doc)
    assert negatives == {"q": ["n1#0", "n1#1", "n2#0"]} and issues == []

    path.write_text(path.read_text() + json.dumps({"query_id": "ghost", "doc_id": "n1", "label": "not_relevant"}) + "\n")
    with pytest.raises(InputDataError, match=r"feedback.jsonl:4.*unknown query id 'ghost'"):
        load_feedback_negatives(path, {"q"}, by_doc)
    kept, issues = load_feedback_negatives(path, {"q"}, by_doc, on_bad_rows="quarantine")
    assert kept == negatives and [i.line for i in issues] == [4]


def test_training_rows_pair_each_positive_with_the_query_negatives():
    from domret_pipeline.core.training.bi_encoder import training_rows
    from domret_pipeline.core.training.bi_encoder_data import build_training_rows
    from domret_pipeline.core.training.mining import MinedQuery, MiningResult

    chunks = {c: Chunk(c, c.split("#")[0], 0, 0, 4, 0, 0, 1, f"text {c}", "T") for c in ["a#0", "a#1", "n#0", "m#0"]}
    mined = MiningResult([
        MinedQuery("q1", [("a#0", 0.9, "evidence"), ("a#1", 0.8, "evidence")], [{"chunk_id": "n#0", "score": 0.5}]),
        MinedQuery("q2", [("a#0", 0.9, "evidence")], []),  # no negative: left out
    ], Counter(), ["q2"])
    rows = build_training_rows(mined, {"q1": "first query", "q2": "second"}, chunks, with_title=True)
    assert rows == [("first query", "T\ntext a#0", ["T\ntext n#0"]), ("first query", "T\ntext a#1", ["T\ntext n#0"])]
    # with_title off (the index encodes bare chunks): the rows train on the same bare texts
    untitled = build_training_rows(mined, {"q1": "first query", "q2": "second"}, chunks, with_title=False)
    assert untitled[0] == ("first query", "text a#0", ["text n#0"])
    dataset = training_rows(rows, num_negatives=2)
    assert dataset.column_names == ["anchor", "positive", "negative_1", "negative_2"]
    assert dataset[0]["negative_2"] == "T\ntext n#0"  # fixed width: the row repeats its own negative


def test_cross_encoder_check_drops_candidates_it_scores_above_the_positive():
    # The cross-encoder thinks n2 answers the query better than the labeled positive does.
    cross = {"p#0": 2.0, "n1#0": 1.0, "n2#0": 3.0, "n3#0": 1.9, "n4#0": -1.0, "n5#0": 0.0}
    calls = []

    def scorer(qid, chunk_ids):
        calls.append((qid, list(chunk_ids)))
        return [cross[c] for c in chunk_ids]

    settings = _mining(range_min=0, range_max=7, max_positive_ratio=1.0, num_negatives=2,
                       cross_encoder_candidates=3)
    result = _mine(settings, cross_scorer=scorer)
    # the positive is read first, then the 3 best survivors by dense score: n1, n2, n3
    assert calls == [("q", ["p#0", "n1#0", "n2#0", "n3#0"])]
    negatives = result.queries[0].negatives
    assert [n["chunk_id"] for n in negatives] == ["n1#0", "n3#0"]
    assert all(n["cross_score"] <= cross["p#0"] for n in negatives)
    assert result.removed["cross_encoder"] == 1 and result.cross_checked == 3

    # a margin of 0.5 also drops n3 (1.9 > 2.0 - 0.5); n4, n5 were never checked, so never kept
    strict = _mining(range_min=0, range_max=7, max_positive_ratio=1.0, num_negatives=2,
                     cross_encoder_candidates=3, cross_encoder_margin=0.5)
    result = _mine(strict, cross_scorer=scorer)
    assert [n["chunk_id"] for n in result.queries[0].negatives] == ["n1#0"]
    assert result.removed["cross_encoder"] == 2


def test_cross_encoder_check_that_leaves_nothing_is_a_clear_error():
    settings = _mining(range_min=0, range_max=7, max_positive_ratio=1.0, num_negatives=2,
                       cross_encoder_candidates=5)
    with pytest.raises(NoNegativesError, match="cross_encoder"):
        _mine(settings, cross_scorer=lambda qid, ids: [0.0] + [1.0] * (len(ids) - 1))
    with pytest.raises(ValueError, match="cross_encoder_candidates"):
        _mine(_mining(cross_encoder_candidates=0), cross_scorer=lambda qid, ids: [0.0] * len(ids))
