"""The evidence-trained sentence selector: its examples come from sentence evidence (never the
frozen test split), a tiny model learns a toy evidence task, and its per-sentence threshold is
chosen on dev."""

import numpy as np

from domret_pipeline.config import SelectorConfig
from domret_pipeline.core.answers.extractive import AnswerSettings, extractive_answer
from domret_pipeline.core.answers.selector import choose_sentence_threshold, fit_selector, selector_examples
from domret_pipeline.core.data.chunking import Chunk
from domret_pipeline.core.data.documents import Document, Evidence, split_sentences
from domret_pipeline.core.data.labels import LabeledQueries
from domret_pipeline.core.evaluation.answers import with_threshold
from domret_pipeline.core.retrieval.cross_encoder import score_pairs

from .settings_helpers import settings_for

SITES = ["Leeds", "Lyon", "Porto", "Memphis", "Durban", "Calgary"]


def toy_handbook():
    """Per site one page: the speed limit (evidence for the speed question), then two sentences
    on the same topic that do not answer it."""
    documents, queries, splits, qrels, evidence = {}, {}, {}, {}, []
    for i, site in enumerate(SITES):
        text = (f"Forklifts at {site} drive at most {5 + i} km/h in the aisles. "
                f"The {site} forklift fleet is serviced every quarter. "
                f"Operators at {site} renew their certificate every year.")
        doc_id = f"fl-{site.lower()}"
        documents[doc_id] = Document(doc_id, text, title=f"Forklifts at {site}", sentences=split_sentences(text))
        qid = f"q-{site.lower()}"
        queries[qid] = f"how fast may forklifts drive at {site}"
        splits[qid] = "train" if i < 4 else ("dev" if i == 4 else "test")
        qrels[qid] = {doc_id: 1}
        evidence.append(Evidence(qid, doc_id, "SUPPORT", (0,)))
    return LabeledQueries(queries, splits, qrels, evidence), documents


def test_examples_come_from_evidence_and_never_from_the_test_split():
    labels, documents = toy_handbook()
    examples = selector_examples(labels, documents)
    assert sorted(e.query for e in examples.train) == sorted(f"how fast may forklifts drive at {s}" for s in SITES[:4])
    first = next(e for e in examples.train if "Leeds" in e.query)
    assert first.positives == ["Forklifts at Leeds drive at most 5 km/h in the aisles."]
    assert first.negatives == ["The Leeds forklift fleet is serviced every quarter.",
                               "Operators at Leeds renew their certificate every year."]
    assert len(examples.dev) == 1 and examples.dev[0].relevant == [documents["fl-durban"].sentence_text(0)]
    assert all("Calgary" not in e.query for e in examples.train + examples.dev)  # Calgary is the test query
    no_evidence = LabeledQueries(labels.queries, labels.splits, labels.qrels, [])
    assert selector_examples(no_evidence, documents).train == [] and "no sentence evidence" in \
        selector_examples(no_evidence, documents).reason


def test_mined_passage_sentences_are_interleaved_with_the_documents_own():
    labels, documents = toy_handbook()
    mined = {"q-leeds": ["Lyon forklifts are serviced monthly.", "Forklifts at Leeds drive at most 5 km/h in the aisles."]}
    leeds = next(e for e in selector_examples(labels, documents, 3, mined).train if "Leeds" in e.query)
    # the trainer reads the first num_negatives: both kinds are among them; a positive is never a negative
    assert leeds.negatives == ["The Leeds forklift fleet is serviced every quarter.", "Lyon forklifts are serviced monthly.",
                               "Operators at Leeds renew their certificate every year."]


def test_a_tiny_selector_learns_the_toy_evidence_task_and_its_threshold_is_chosen_on_dev(tiny_reranker_base, tmp_path):
    labels, documents = toy_handbook()
    examples = selector_examples(labels, documents)
    settings = settings_for(SelectorConfig, max_length=48, lora_r=4, lora_alpha=8, lora_dropout=0.0, epochs=30,
                            batch_size=4, logging_steps=1, warmup_ratio=0.0, learning_rate=3e-3, num_negatives=2,
                            in_batch_negatives=2, early_stopping_patience=100)
    fit = fit_selector(examples, str(tiny_reranker_base), settings, tmp_path / "work")
    assert fit.outcome.dev_score > fit.outcome.first_stage_dev_score  # evidence listed last: it learned to lift it
    # the threshold is dev's: the one that maximises F1 over the dev query's sentences
    dev = examples.dev[0]
    dev_scores = score_pairs(fit.model, dev.query, dev.candidates)
    assert (fit.threshold, fit.dev_f1) == choose_sentence_threshold(dev_scores, [c in dev.relevant for c in dev.candidates])
    assert fit.dev_sentences == 3 and fit.dev_f1 > 0
    # held out: the test site's evidence sentence now outscores its on-topic neighbours
    calgary = documents["fl-calgary"]
    scores = score_pairs(fit.model, labels.queries["q-calgary"], [calgary.sentence_text(i) for i in range(3)])
    assert int(np.argmax(scores)) == 0, scores


def test_fit_refuses_labels_without_evidence_and_says_why(tmp_path):
    labels, documents = toy_handbook()
    examples = selector_examples(LabeledQueries(labels.queries, labels.splits, labels.qrels, []), documents)
    import pytest

    with pytest.raises(ValueError, match="no sentence evidence"):
        fit_selector(examples, "unused", None, tmp_path)


def test_the_answer_cites_what_clears_the_sentence_threshold_whenever_the_threshold_is_applied():
    doc = Document("d", "A. B. C. D.", sentences=[(0, 2), (3, 5), (6, 8), (9, 11)])
    hits = [Chunk("d#0", "d", 0, 0, 11, 0, 3, 8, "A. B. C. D.")]
    score = lambda query, sentences: np.array([{"A.": 0.9, "B.": 0.5, "C.": 0.2, "D.": 0.6}[s] for s in sentences])  # noqa: E731
    per_sentence = AnswerSettings(passages=1, max_sentences=4, sentence_threshold=0.55)
    answer = extractive_answer("q", "?", hits, {"d": doc}, score, per_sentence)
    assert [s.citations[0][1] for s in answer.sentences] == [0, 3]  # A and D clear 0.55; B and C do not
    fixed = extractive_answer("q", "?", hits, {"d": doc}, score, AnswerSettings(1, 2))
    assert [s.citations[0][1] for s in fixed.sentences] == [0, 3]  # a fixed count: the best two
    # the best sentence is always cited when answering, even below the per-sentence threshold
    high = AnswerSettings(1, 4, threshold=0.5, sentence_threshold=0.95)
    assert [s.citations[0][1] for s in extractive_answer("q", "?", hits, {"d": doc}, score, high).sentences] == [0]
    # abstaining here or afterwards (evaluation does) gives the same answer
    for threshold in (0.1, 0.55, 0.95):
        settings = AnswerSettings(1, 4, threshold=threshold, sentence_threshold=0.55)
        now = extractive_answer("q", "?", hits, {"d": doc}, score, settings)
        later = with_threshold(extractive_answer("q", "?", hits, {"d": doc}, score,
                                                 AnswerSettings(1, 4, sentence_threshold=0.55)), threshold)
        assert now == later, threshold


def test_the_sentence_threshold_maximises_dev_f1():
    scores = [0.9, 0.8, 0.7, 0.4, 0.35, 0.1]
    truth = [True, True, False, True, False, False]
    t, f1 = choose_sentence_threshold(scores, truth)
    # >= 0.8 cites two of three (F1 0.8); >= 0.4 cites all three and one wrong (F1 0.857)
    assert (t, round(f1, 3)) == (0.4, 0.857)
    assert choose_sentence_threshold([0.2, 0.1], [False, False]) == (float("inf"), 0.0)


def with_unanswerable(labels: LabeledQueries, documents: dict):
    """The toy handbook plus, per site, a question its page is on topic for but does not answer
    (no evidence): when the site's forklifts were bought. Splits as the speed questions."""
    queries, splits, qrels = dict(labels.queries), dict(labels.splits), dict(labels.qrels)
    for i, site in enumerate(SITES):
        qid = f"u-{site.lower()}"
        queries[qid] = f"when were the forklifts at {site} bought"
        splits[qid] = labels.splits[f"q-{site.lower()}"]
        qrels[qid] = {f"fl-{site.lower()}": 1}
    return LabeledQueries(queries, splits, qrels, labels.evidence), documents


def test_unanswerable_train_queries_become_rows_of_negatives_only_which_only_bce_reads():
    from domret_pipeline.config import RerankerConfig
    from domret_pipeline.core.training.reranker import _training_dataset

    labels, documents = with_unanswerable(*toy_handbook())
    plain = selector_examples(labels, documents)
    assert all(e.positives for e in plain.train) and len(plain.train) == 4
    examples = selector_examples(labels, documents, unanswerable=True)
    empty = [e for e in examples.train if not e.positives]
    # the train sites' unanswerable questions: all sentences of their page are negatives; never dev or test
    assert sorted(e.query for e in empty) == sorted(f"when were the forklifts at {s} bought" for s in SITES[:4])
    assert next(e for e in empty if "Leeds" in e.query).negatives == [
        documents["fl-leeds"].sentence_text(i) for i in range(3)]
    bce = _training_dataset(examples.train, settings_for(SelectorConfig, loss="bce", num_negatives=3))
    assert sum(1 for q, label in zip(bce["query"], bce["label"]) if "bought" in q and label == 0.0) == 12
    assert not any("bought" in q and label == 1.0 for q, label in zip(bce["query"], bce["label"]))
    mnrl = _training_dataset(examples.train, settings_for(RerankerConfig, loss="mnrl", num_negatives=2))
    assert not any("bought" in q for q in mnrl["query"])  # a softmax needs a positive to lift
    # the config asks for them only under a loss that can learn from them
    assert SelectorConfig().learns_from_unanswerable() and not SelectorConfig(loss="mnrl").learns_from_unanswerable()
    # rows without positives alone are no training set
    only = LabeledQueries(labels.queries, labels.splits, labels.qrels, [])
    assert selector_examples(only, documents, unanswerable=True).train == []


def test_a_selector_trained_on_unanswerable_questions_scores_them_below_answerable_ones(tiny_reranker_base, tmp_path):
    labels, documents = with_unanswerable(*toy_handbook())
    examples = selector_examples(labels, documents, unanswerable=True)
    settings = settings_for(SelectorConfig, loss="bce", max_length=48, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                            epochs=30, batch_size=8, logging_steps=1, warmup_ratio=0.0, learning_rate=3e-3,
                            num_negatives=3, early_stopping_patience=100)
    fit = fit_selector(examples, str(tiny_reranker_base), settings, tmp_path / "work")
    calgary = documents["fl-calgary"]
    sentences = [calgary.sentence_text(i) for i in range(3)]
    answerable = float(np.max(score_pairs(fit.model, labels.queries["q-calgary"], sentences)))
    unanswerable = float(np.max(score_pairs(fit.model, labels.queries["u-calgary"], sentences)))
    # held out: the best sentence score, what the abstention threshold reads, tells the two apart
    assert answerable > unanswerable, (answerable, unanswerable)


class KeywordScorer:
    """A stand-in cross-encoder: a sentence scores 1 when it holds the query's keyword."""

    def predict(self, pairs, **_):
        return np.array([float(q.split()[1] in s) for q, s in pairs])


def test_abstention_separation_reads_the_best_score_over_the_relevant_documents():
    from domret_pipeline.core.answers.selector import abstention_separation

    labels, documents = with_unanswerable(*toy_handbook())
    # dev: Durban's speed question (answerable) and its purchase question (not)
    queries = {**labels.queries, "q-durban": "how fast ...", "u-durban": "when bought ..."}
    relabeled = LabeledQueries(queries, labels.splits, labels.qrels, labels.evidence)
    separated = abstention_separation(KeywordScorer(), relabeled, documents, "dev")
    assert separated["queries"] == 2 and separated["unanswerable"] == 1
    # "fast" is in no sentence, "bought" in none either: a tie, half the pairs right
    assert separated["auc"] == 0.5
    documents["fl-durban"] = Document("fl-durban", "Forklifts go fast. They were bought in May.",
                                      sentences=split_sentences("Forklifts go fast. They were bought in May."))
    both = abstention_separation(KeywordScorer(), relabeled, documents, "dev")
    assert both["auc"] == 0.5  # both questions now find their word
    queries["u-durban"] = "when sold ..."
    assert abstention_separation(KeywordScorer(), relabeled, documents, "dev")["auc"] == 1.0
    assert abstention_separation(KeywordScorer(), relabeled, documents, "dev")["best_accuracy"] == 1.0
    assert abstention_separation(KeywordScorer(), labels, documents, "train")  # four of each kind
    assert abstention_separation(KeywordScorer(), toy_handbook()[0], documents, "dev") == {}  # no abstention case
