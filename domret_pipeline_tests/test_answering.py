"""The extractive answer step and its abstention threshold."""

import numpy as np

from domret_pipeline.config import ServingSelectionConfig
from domret_pipeline.core.answers.extractive import (
    ABSTENTION_TEXT, calibrate_threshold, extractive_answer, threshold_curve,
)
from domret_pipeline.core.data.documents import Document, split_sentences
from domret_pipeline.core.serving.search import SearchHit

from .settings_helpers import settings_for

TEXT = "The checkout-api SLO is 99.9%. Exceptions need the SRE lead. Pages go to on-call."
DOCS = {"slo": Document("slo", TEXT, "SLO", split_sentences(TEXT))}


def _settings(**values):
    return settings_for(ServingSelectionConfig, "answer_settings", **values)


def _hit(start=0, end=len(TEXT)):
    return SearchHit(1, "slo#0", "slo", "SLO", start, end, TEXT[start:end], {"final": 1.0})


def word_overlap(query, sentences):
    q = set(query.lower().split())
    return np.array([len(q & set(s.lower().rstrip(".").split())) for s in sentences], dtype=float)


def test_answer_cites_the_best_sentences_as_spans():
    answer = extractive_answer("q", "who approves exceptions need", [_hit()], DOCS, word_overlap,
                               _settings(answer_max_sentences=1, threshold=1.0))
    assert not answer.abstained
    assert [(s.text, s.citations) for s in answer.sentences] == [("Exceptions need the SRE lead.", [("slo", 1)])]
    assert answer.retrieved == ["slo#0"] and answer.evidence_score == 2.0


def test_abstains_below_the_threshold():
    answer = extractive_answer("q", "forklift battery bay", [_hit()], DOCS, word_overlap, _settings(threshold=1.0))
    assert answer.abstained and answer.sentences[0].text == ABSTENTION_TEXT and answer.cited() == set()
    assert answer.evidence_score == 0.0


def test_only_sentences_inside_the_chunk_are_candidates():
    second = TEXT.index("Exceptions")
    answer = extractive_answer("q", "exceptions SRE lead", [_hit(0, second - 1)], DOCS, word_overlap,
                               _settings(threshold=1.0))
    assert answer.abstained  # the matching sentence is outside the retrieved span


def test_calibration_maximises_dev_accuracy():
    assert calibrate_threshold([0.9, 0.8], [0.2, 0.4]) == (0.8, 1.0)
    # 0.3 and 0.8 both get 4 of 5 right; the tie goes to the lower threshold (answer more)
    threshold, accuracy = calibrate_threshold([0.9, 0.8, 0.3], [0.2, 0.4])
    assert threshold == 0.3 and accuracy == 0.8
    assert calibrate_threshold([0.5], []) == (float("-inf"), 1.0)
    grid, acc, answered = threshold_curve([0.9, 0.8, 0.3], [0.2, 0.4], points=5)
    assert len(grid) == 5 and answered[0] == 1.0 and acc.max() <= accuracy


def test_the_abstention_threshold_reaches_a_citation_precision_target_answering_as_much_as_it_allows():
    """A synthetic dev set: a query's best evidence score, and whether its answer cites gold
    evidence. Higher scores cite better; the target is met by the lowest threshold that gets
    there, and a target nothing reaches is reported as missed, with the best threshold."""
    import random

    from domret_pipeline.core.answers.extractive import lowest_threshold_reaching

    rng = random.Random(3)
    dev = [(s, rng.random() < s) for s in (rng.random() for _ in range(400))]  # P(correct) = score

    def precision_at(t):
        answered = [correct for s, correct in dev if s >= t]
        return sum(answered) / len(answered) if answered else float("nan")

    scores = [s for s, _ in dev]
    for target in (0.6, 0.75, 0.9):
        t, value, reached = lowest_threshold_reaching(scores, precision_at, target)
        assert reached and value >= target and precision_at(t) == value
        below = [s for s in scores if s < t]
        assert not below or precision_at(max(below)) < target  # no lower threshold reaches it
    t, value, reached = lowest_threshold_reaching(scores, precision_at, 1.01)
    assert not reached and value == max(precision_at(s) for s in scores)


def test_choose_threshold_calibrates_answers_for_the_users_target():
    from domret_pipeline.core.answers.citation_metrics import Answer, AnswerSentence
    from domret_pipeline.core.answers.extractive import AbstentionSettings
    from domret_pipeline.core.evaluation.answers import choose_threshold

    # four answerable queries cite gold at high scores and a wrong sentence at low ones; two
    # unanswerable queries score low
    cites = {"a": (0.9, ("d", 0)), "b": (0.8, ("d", 0)), "c": (0.4, ("d", 1)), "d": (0.3, ("d", 1)),
             "u1": (0.35, ("d", 1)), "u2": (0.2, ("d", 1))}
    raw = {q: Answer(q, False, [AnswerSentence("x", [span])], [], score) for q, (score, span) in cites.items()}
    gold = {q: ({("d", 0)} if q in "abcd" else set()) for q in cites}
    relevant = {q: {"d"} for q in cites}
    span_text = lambda span: "x"  # noqa: E731
    t, reached = choose_threshold(raw, gold, relevant, span_text, AbstentionSettings("citation_precision", 0.9))
    assert t == 0.8 and reached == {"target": "citation_precision >= 0.9", "dev_citation_precision": 1.0, "reached": True}
    t, reached = choose_threshold(raw, gold, relevant, span_text, AbstentionSettings("accuracy", 0.0))
    # 0.3 and 0.4 both get 5 of 6 right; ties go to the lower threshold (answer more)
    assert reached["target"] == "accuracy" and t == 0.3


def test_the_reliability_curve_rises_when_the_score_separates_answerable_queries():
    from domret_pipeline.core.answers.extractive import reliability_bins

    curve = reliability_bins([0.6, 0.7, 0.8, 0.9], [0.1, 0.2, 0.3, 0.65], bins=4)
    assert curve["count"] == [2.0, 2.0, 2.0, 2.0]
    assert curve["answerable_share"] == [0.0, 0.5, 0.5, 1.0]  # the middle bins mix (0.3, 0.6) and (0.65, 0.7)
    assert curve["score"] == sorted(curve["score"])
    assert reliability_bins([], []) == {"score": [], "answerable_share": [], "count": []}


def test_the_selectors_sentence_threshold_is_refined_on_the_dev_answers():
    from dataclasses import dataclass

    from domret_pipeline.core.data.documents import Evidence
    from domret_pipeline.core.data.labels import LabeledQueries
    from domret_pipeline.core.evaluation.answers import calibrate_answer_step

    @dataclass
    class Result:
        hits: list

    class OneChunkPipeline:  # every query retrieves the SLO page
        def search(self, queries):
            return [Result([_hit()]) for _ in queries]

    labels = LabeledQueries({"q1": "who approves", "q2": "what is the SLO"}, {"q1": "dev", "q2": "dev"},
                            {"q1": {"slo": 1}, "q2": {"slo": 1}},
                            [Evidence("q1", "slo", "SUPPORT", (1,)), Evidence("q2", "slo", "SUPPORT", (0,))])
    by_query = {"who approves": [0.5, 0.9, 0.1], "what is the SLO": [0.8, 0.2, 0.6]}  # per sentence of TEXT
    sentences = [DOCS["slo"].sentence_text(i) for i in range(3)]
    score = lambda query, texts: np.array([by_query[query][sentences.index(t)] for t in texts])  # noqa: E731
    settings = _settings(answer_max_sentences=3, sentence_threshold=0.0)  # the selector's own: cites all three
    kept = calibrate_answer_step(OneChunkPipeline(), labels, "dev", DOCS, score, settings)
    assert kept.sentence_threshold == 0.0 and round(kept.summary["citation_precision"], 4) == 0.3333
    refined = calibrate_answer_step(OneChunkPipeline(), labels, "dev", DOCS, score, settings, sentence_candidates=5)
    # only the best sentence of each answer is evidence: the grid finds it, precision and recall 1
    assert refined.sentence_threshold > 0.6 and refined.settings_tried > 2
    assert (refined.summary["citation_precision"], refined.summary["citation_recall"]) == (1.0, 1.0)


def test_the_passage_weight_lets_the_retrieval_order_pick_between_near_copies():
    from dataclasses import dataclass

    from domret_pipeline.core.data.documents import Evidence
    from domret_pipeline.core.data.labels import LabeledQueries
    from domret_pipeline.core.evaluation.answers import calibrate_answer_step

    # two near-copies for two sites; retrieval puts the right site first, but the sentence
    # scorer slightly prefers the other site's sentence (what a template corpus does to it)
    leeds, lyon = "Forklifts at Leeds drive at 8 km/h.", "Forklifts at Lyon drive at 6 km/h."
    docs = {d: Document(d, t, d, split_sentences(t)) for d, t in (("leeds", leeds), ("lyon", lyon))}

    @dataclass
    class Result:
        hits: list

    def hit(doc, rank):
        return SearchHit(rank, f"{doc}#0", doc, doc, 0, len(docs[doc].text), docs[doc].text, {"final": 1.0})

    class Pipeline:
        def search(self, queries):
            return [Result([hit("leeds", 1), hit("lyon", 2)]) for _ in queries]

    labels = LabeledQueries({"q": "Leeds forklift speed"}, {"q": "dev"}, {"q": {"leeds": 1}},
                            [Evidence("q", "leeds", "SUPPORT", (0,))])
    score = lambda query, texts: np.array([0.50 if "Leeds" in t else 0.55 for t in texts])  # noqa: E731
    settings = _settings(answer_max_sentences=1)
    unweighted = extractive_answer("q", "Leeds forklift speed", Pipeline().search(["x"])[0].hits, docs, score, settings)
    assert unweighted.sentences[0].citations == [("lyon", 0)]
    chosen = calibrate_answer_step(Pipeline(), labels, "dev", docs, score, settings)
    assert chosen.passage_weight > 0 and chosen.summary["citation_precision"] == 1.0
    from dataclasses import replace

    weighted = extractive_answer("q", "Leeds forklift speed", Pipeline().search(["x"])[0].hits, docs, score,
                                 replace(settings, passage_weight=chosen.passage_weight))
    assert weighted.sentences[0].citations == [("leeds", 0)]


def test_remembered_search_searches_each_query_once_and_returns_what_the_pipeline_did():
    from domret_pipeline.core.evaluation.answers import RememberedSearch

    class Counting:
        chunks = {"c": "chunk"}

        def __init__(self):
            self.searched = []

        def search(self, queries, top_n=None, principal=None):
            self.searched += [(q, top_n, principal) for q in queries]
            return [f"{q}@{top_n}@{principal}" for q in queries]

    pipeline = Counting()
    remembered = RememberedSearch(pipeline)
    assert remembered.search(["a", "b", "a"]) == ["a@None@None", "b@None@None", "a@None@None"]
    assert remembered.search(["b", "c"]) == ["b@None@None", "c@None@None"]
    assert remembered.search(["a"], principal=["hr"]) == ["a@None@['hr']"]  # another principal: searched again
    assert pipeline.searched == [("a", None, None), ("b", None, None), ("c", None, None), ("a", None, ["hr"])]
    assert remembered.chunks == {"c": "chunk"}  # everything else is the pipeline's


def test_abstention_may_be_decided_by_another_scorer_when_it_separates_better_on_dev():
    from dataclasses import dataclass, replace

    from domret_pipeline.core.answers.extractive import AbstainingScorer
    from domret_pipeline.core.data.documents import Evidence
    from domret_pipeline.core.data.labels import LabeledQueries
    from domret_pipeline.core.evaluation.answers import calibrate_answer_step

    @dataclass
    class Result:
        hits: list

    class OneChunkPipeline:
        def search(self, queries):
            return [Result([_hit()]) for _ in queries]

    queries = {"q1": "who approves", "q2": "what is the SLO", "q3": "forklift speed", "q4": "parking rules"}
    labels = LabeledQueries(queries, dict.fromkeys(queries, "dev"), {q: {"slo": 1} for q in queries},
                            [Evidence("q1", "slo", "SUPPORT", (1,)), Evidence("q2", "slo", "SUPPORT", (0,))])
    sentences = [DOCS["slo"].sentence_text(i) for i in range(3)]
    # the citing scorer ranks the evidence first, but is as sure of itself on q3 and q4 (no evidence)
    cite_by = {"who approves": [0.2, 0.9, 0.1], "what is the SLO": [0.8, 0.2, 0.1],
               "forklift speed": [0.1, 0.2, 0.95], "parking rules": [0.9, 0.1, 0.3]}
    # the other scorer cites badly (its best is never the evidence) but its best tells q3, q4 apart
    abstain_by = {"who approves": [0.7, 0.1, 0.2], "what is the SLO": [0.1, 0.2, 0.6],
                  "forklift speed": [0.1, 0.2, 0.3], "parking rules": [0.2, 0.1, 0.1]}

    def table(by):
        return lambda query, texts: np.array([by[query][sentences.index(t)] for t in texts])

    settings = _settings(answer_max_sentences=1)
    own = calibrate_answer_step(OneChunkPipeline(), labels, "dev", DOCS, table(cite_by), settings)
    assert own.abstention_scorer is None and own.summary["abstention_accuracy"] < 1.0
    chosen = calibrate_answer_step(OneChunkPipeline(), labels, "dev", DOCS, table(cite_by), settings,
                                   abstainers={"encoder": table(abstain_by)})
    assert chosen.abstention_scorer == "encoder" and chosen.settings_tried == 2 * own.settings_tried
    assert chosen.summary["abstention_accuracy"] == 1.0 and chosen.summary["citation_precision"] == 1.0
    # served the same way: cite with one, abstain on the other's best score at the dev threshold
    scorer = AbstainingScorer(table(cite_by), table(abstain_by), "encoder")
    served = replace(settings, threshold=chosen.threshold, passage_weight=chosen.passage_weight)
    answered = extractive_answer("q1", "who approves", [_hit()], DOCS, scorer, served)
    assert not answered.abstained and answered.sentences[0].citations == [("slo", 1)] and answered.evidence_score == 0.7
    assert extractive_answer("q3", "forklift speed", [_hit()], DOCS, scorer, served).abstained
    # an abstainer no better than the citing scorer's own is not kept (ties keep its own)
    tie = calibrate_answer_step(OneChunkPipeline(), labels, "dev", DOCS, table(cite_by), settings,
                                abstainers={"copy": table(cite_by)})
    assert tie.abstention_scorer is None and tie.threshold == own.threshold


def test_a_bundle_that_abstains_on_another_scorer_serves_both():
    from pathlib import Path

    from domret_pipeline.core.answers.extractive import AbstainingScorer
    from domret_pipeline.core.serving.bundle import OpenBundle

    def bundle(answer):  # the scorers are only built here, not called: stand-ins for the models do
        return OpenBundle(Path("b"), {"answer": answer}, None, None, object(), None, object(), [], None)

    composite = bundle({"scorer": "reranker", "abstention_scorer": "encoder"}).scorer()
    assert isinstance(composite, AbstainingScorer) and composite.name == "encoder"
    assert not isinstance(bundle({"scorer": "reranker", "abstention_scorer": None}).scorer(), AbstainingScorer)
    assert not isinstance(bundle({"scorer": "encoder"}).scorer(), AbstainingScorer)
    named = bundle({"scorer": "reranker", "abstention_scorer": "encoder"}).scorer("reranker", "encoder")
    assert isinstance(named, AbstainingScorer)
    assert not isinstance(bundle({"scorer": "reranker", "abstention_scorer": "encoder"}).scorer("encoder"),
                          AbstainingScorer)
