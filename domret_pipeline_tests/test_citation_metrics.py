"""Citation metrics against hand-computed cases."""

import math

import pytest

from domret_pipeline.core.answers.citation_metrics import Answer, AnswerSentence, aggregate, score_answer

TEXT = {("d1", 0): "The SLO is 99.9%.", ("d1", 1): "Exceptions need the SRE lead.", ("d2", 0): "Forklifts drive at 8 km/h.",
        ("d3", 0): "Lyon batteries charge in Zone 4."}
GOLD = {("d1", 0), ("d1", 1)}
RELEVANT = {"d1"}


def span_text(span):
    return TEXT[span]


def test_a_span_cited_twice_counts_once():
    answer = Answer("q", False, [AnswerSentence("The SLO is 99.9%.", [("d1", 0)]),
                                 AnswerSentence("The SLO is 99.9%.", [("d1", 0)])])
    row = score_answer(answer, GOLD, RELEVANT, span_text)
    assert row["citation_precision"] == 1.0  # one distinct span, gold
    assert row["citation_recall"] == 0.5  # one of two gold spans
    assert row["citation_recall_doc"] == 1.0 and row["citation_precision_doc"] == 1.0
    assert row["faithfulness"] == 1.0


def test_a_citation_to_an_irrelevant_document():
    answer = Answer("q", False, [AnswerSentence("The SLO is 99.9%.", [("d1", 0)]),
                                 AnswerSentence("Forklifts drive at 8 km/h.", [("d2", 0)])])
    row = score_answer(answer, GOLD, RELEVANT, span_text)
    assert row["citation_precision"] == 0.5 and row["citation_precision_doc"] == 0.5
    assert row["citation_recall"] == 0.5
    assert row["faithfulness"] == 1.0  # each sentence is its own citation's text: faithful, though off-target


def test_no_citation_scores_zero_instead_of_being_left_out():
    answer = Answer("q", False, [AnswerSentence("The SLO is 99.9%.", [])])
    row = score_answer(answer, GOLD, RELEVANT, span_text)
    assert row["citation_precision"] == 0.0 and row["citation_recall"] == 0.0 and row["faithfulness"] == 0.0


def test_unsupported_sentence_lowers_faithfulness_and_a_judge_overrides_exact_match():
    answer = Answer("q", False, [AnswerSentence("The SLO is 99.99%.", [("d1", 0)]),
                                 AnswerSentence("Exceptions need the SRE lead.", [("d1", 1)])])
    assert score_answer(answer, GOLD, RELEVANT, span_text)["faithfulness"] == 0.5
    answer.sentences[0].supported = True  # e.g. an entailment judge for a generated paraphrase
    assert score_answer(answer, GOLD, RELEVANT, span_text)["faithfulness"] == 1.0


def test_abstention_on_an_answerable_query_covers_nothing():
    row = score_answer(Answer("q", True), GOLD, RELEVANT, span_text)
    assert row["citation_recall"] == 0.0 and row["citation_recall_doc"] == 0.0
    assert row["citation_precision"] is None and row["abstention_correct"] == 0.0


def test_abstention_metrics_over_queries():
    rows = {
        "answerable-answered": score_answer(Answer("a", False, [AnswerSentence("The SLO is 99.9%.", [("d1", 0)])]),
                                            GOLD, RELEVANT, span_text),
        "answerable-abstained": score_answer(Answer("b", True), GOLD, RELEVANT, span_text),
        "unanswerable-abstained": score_answer(Answer("c", True), set(), {"d3"}, span_text),
        "unanswerable-answered": score_answer(Answer("d", False, [AnswerSentence("Lyon batteries charge in Zone 4.",
                                                                                 [("d3", 0)])]), set(), {"d3"}, span_text),
    }
    assert rows["unanswerable-answered"]["citation_precision"] == 0.0  # no gold span to cite
    assert rows["unanswerable-answered"]["citation_precision_doc"] == 1.0  # on topic, still
    summary = aggregate(rows)
    assert summary["abstention_accuracy"] == 0.5
    assert summary["abstention_precision"] == 0.5  # 1 of 2 abstentions was right
    assert summary["abstention_recall"] == 0.5  # 1 of 2 unanswerable queries abstained on
    assert summary["citation_recall"] == pytest.approx((0.5 + 0.0) / 2)  # answerable queries only
    assert summary["citation_precision"] == pytest.approx((1.0 + 0.0) / 2)  # answers that cite
    assert summary["answered_rate"] == 0.5
    assert math.isnan(aggregate({})["abstention_accuracy"])


def test_span_coverage_counts_gold_sentences_inside_the_chunks_handed_to_the_answer_step():
    from types import SimpleNamespace

    from domret_pipeline.core.data.documents import Document
    from domret_pipeline.core.evaluation.answers import span_coverage

    text = "The SLO is 99.9%. Exceptions need the SRE lead. Freezes start at 75%."
    doc = Document("d1", text, title="SLO", sentences=[(0, 17), (18, 47), (48, 70)])
    assert doc.sentence_text(2) == "Freezes start at 75%."
    documents = {"d1": doc, "d2": Document("d2", "Forklifts drive at 8 km/h.", sentences=[(0, 26)])}
    chunks = {"d1#0": SimpleNamespace(doc_id="d1", start=0, end=47),  # sentences 0 and 1
              "d1#1": SimpleNamespace(doc_id="d1", start=18, end=70),  # sentences 1 and 2
              "d2#0": SimpleNamespace(doc_id="d2", start=0, end=26)}
    gold = {("d1", 0), ("d1", 2)}
    assert span_coverage(["d1#0"], gold, chunks, documents) == 0.5  # sentence 2 lies outside
    assert span_coverage(["d2#0", "d1#1"], gold, chunks, documents) == 0.5  # sentence 0 lies outside
    assert span_coverage(["d1#1", "d1#0"], gold, chunks, documents) == 1.0
    assert span_coverage(["d2#0"], gold, chunks, documents) == 0.0  # right topic, wrong document
    assert span_coverage(["d1#0"], set(), chunks, documents) is None  # nothing to cover: an abstention case
