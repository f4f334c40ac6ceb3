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
