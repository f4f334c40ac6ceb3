"""The reranker pretrained on pseudo-pairs (core/training/reranker_pretrain.py): the pseudo
examples are mined like labeled ones and train on the pair's own passage; the dev choice keeps
the better option and says why, ties going to none; zero-label mode trains on pseudo-pairs only."""

import dataclasses

import pytest

from domret_pipeline.config import RerankerConfig
from domret_pipeline.core.data.chunking import passage_text
from domret_pipeline.core.data.labels import LabeledQueries, normalized_text
from domret_pipeline.core.training import reranker_pretrain
from domret_pipeline.core.training.reranker import (
    DISTILL_LOSS, DevSample, RerankerOutcome, RerankExample, train_reranker,
)
from domret_pipeline.core.training.reranker_data import TEACHER_SCALE, prepare, pseudo_examples
from domret_pipeline.core.training.reranker_pretrain import choose_pretraining

from .settings_helpers import settings_for
from .test_pseudo_queries import chunks_of, corpus, generate
from .test_reranker import EXAMPLES


def _settings(**overrides):
    base = dict(max_length=48, lora_r=4, lora_alpha=8, lora_dropout=0.0, epochs=2, batch_size=4, logging_steps=1,
                warmup_ratio=0.0, learning_rate=3e-3, num_negatives=2, in_batch_negatives=1)
    return settings_for(RerankerConfig, **{**base, **overrides})


@pytest.fixture(scope="module")
def weak_corpus(tiny_encoder):
    """The pseudo-query tests' corpus, its chunks and pairs, and a tiny dense index over the chunks."""
    from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index
    from domret_pipeline.core.retrieval.encoder import encode, load_encoder

    docs = corpus(6)
    chunks = chunks_of(docs)
    pairs = generate(docs).pairs
    encoder = load_encoder(str(tiny_encoder), 64)
    index = DenseIndex(build_index(encode(encoder, [passage_text(c) for c in chunks]), "flat"), [c.chunk_id for c in chunks])
    return {"docs": docs, "chunks": chunks, "pairs": pairs, "encoder": encoder, "index": index}


def test_pseudo_examples_train_on_the_pairs_passage_against_other_documents_only(weak_corpus):
    chunks, pairs = weak_corpus["chunks"], weak_corpus["pairs"]
    assert {p.kind for p in pairs} == {"inverse_cloze", "title", "crop"}
    examples, mined = pseudo_examples(pairs, chunks, weak_corpus["index"], weak_corpus["encoder"], len(chunks), 3,
                                      None, with_title=True)
    by_pair = {p.pair_id: p for p in pairs}
    doc_of = {c.chunk_id: c.doc_id for c in chunks}
    assert len(examples) == len(pairs) == len(mined.queries)  # every chunk is a candidate: each pair has negatives
    assert mined.removed["labeled_positive"] > 0  # the window held chunks of the pair's own document
    for example, row in zip(examples, mined.queries):
        pair = by_pair[row.query_id]
        own = {passage_text(c) for c in chunks if c.doc_id == pair.doc_id}
        assert example.query == pair.query and example.positives == [pair.passage(with_title=True)]
        assert normalized_text(pair.query) not in normalized_text(example.positives[0])  # never the query verbatim
        assert example.positives[0] not in own  # never a whole chunk as the retriever reads it
        assert row.negatives and all(doc_of[n["chunk_id"]] != pair.doc_id for n in row.negatives)
        assert not set(example.negatives) & own
        assert [n["rank"] for n in row.negatives] == sorted(n["rank"] for n in row.negatives)  # hardest first


def _fake_trainer(scores: dict[str, float], calls: list):
    """train_reranker standing in: the dev score of a run is ``scores[what it trained]``, where
    the pretraining is "pretrain" ("distill-pretrain" under the distillation loss), labels on a
    fresh model "none", labels after pretraining "pseudo" (or "distill")."""
    def fake(base_model, examples, dev, settings, work_dir, progress_sink=None, progress_label="", start=None):
        if examples and examples[0].query.startswith("pseudo"):
            kind = "distill-pretrain" if settings.loss == DISTILL_LOSS else "pretrain"
        else:
            kind = ("distill" if start == "model-distill-pretrain" else "pseudo") if start else "none"
        calls.append((kind, settings.epochs))
        return RerankerOutcome(model=f"model-{kind}", dev_score=scores[kind], best_epoch=1.0, dev_history=[],
                               loss_history=[], trainable_parameters=1, total_parameters=2, seconds=0.0,
                               start_dev_score=0.0, first_stage_dev_score=0.5)
    return fake


LABELED = [RerankExample("labeled q", ["p"], ["n"])]
PSEUDO = [RerankExample("pseudo q", ["p"], ["n"])]
PSEUDO_SCORED = [RerankExample("pseudo q", ["p"], ["n"], teacher=[12.0, 9.0])]


@pytest.mark.parametrize("none, pseudo, expected, said", [
    (0.50, 0.60, "pseudo", "pseudo: dev nDCG@10 0.6000 > none 0.5000"),
    (0.60, 0.50, "none", "none: dev nDCG@10 0.6000 > pseudo 0.5000"),
    (0.55, 0.55, "none", "none: dev nDCG@10 0.5500 = pseudo 0.5500 (ties go to none)"),
])
def test_the_dev_choice_keeps_the_better_option_and_ties_go_to_none(monkeypatch, tmp_path, none, pseudo, expected, said):
    calls = []
    monkeypatch.setattr(reranker_pretrain, "train_reranker", _fake_trainer({"none": none, "pseudo": pseudo,
                                                                            "pretrain": 0.4}, calls))
    choice = choose_pretraining(["pseudo", "none"], "base", LABELED, PSEUDO, [], _settings(epochs=2), 5, tmp_path)
    assert calls == [("pretrain", 5), ("pseudo", 2), ("none", 2)]  # pretraining reads its own epochs
    assert (choice.option, choice.reason, choice.zero_label) == (expected, said, False)
    assert choice.outcome.model == f"model-{expected}"
    assert (choice.pretrain_outcome.model if choice.pretrain_outcome else None) == \
        (None if expected == "none" else "model-pretrain")
    rows = {t["option"]: t for t in choice.table()}
    assert [o for o, t in rows.items() if t["chosen"]] == [expected]
    assert rows["pseudo"]["pretrain_pairs"] == 1 and rows["pseudo"]["pretrain_dev_ndcg"] == 0.4
    assert rows["none"]["pretrain_pairs"] == 0 and rows["none"]["pretrain_dev_ndcg"] is None
    assert (rows["none"]["dev_ndcg"], rows["pseudo"]["dev_ndcg"]) == (none, pseudo)
    assert rows[expected]["why"] == said and rows["none" if expected == "pseudo" else "pseudo"]["why"].startswith("dev")


def test_pseudo_without_pairs_is_reported_untrained_and_zero_label_trains_on_pairs_only(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(reranker_pretrain, "train_reranker", _fake_trainer({"none": 0.5, "pseudo": 0.9,
                                                                            "pretrain": 0.3}, calls))
    choice = choose_pretraining(["none", "pseudo"], "base", LABELED, [], [], _settings(), 1, tmp_path,
                                pseudo_missing="pseudo_queries kept no pair")
    assert choice.option == "none" and calls == [("none", 2)]
    assert choice.table()[1]["why"] == "not trained: pseudo_queries kept no pair"

    calls.clear()
    zero = choose_pretraining(["none"], "base", [], PSEUDO, [], _settings(), 3, tmp_path)
    assert calls == [("pretrain", 3)] and zero.zero_label and zero.option == "pseudo"
    assert zero.outcome is zero.pretrain_outcome and "no train-split query" in zero.reason and "overridden" in zero.reason
    with pytest.raises(ValueError, match="^nothing to train the reranker on: the labels have no train-split query and "
                                         "pseudo_queries kept no pair$"):
        choose_pretraining(["pseudo"], "base", [], [], [], _settings(), 1, tmp_path,
                           pseudo_missing="pseudo_queries kept no pair")
    with pytest.raises(ValueError, match="pretrain must list some of"):
        choose_pretraining(["distill?"], "base", LABELED, PSEUDO, [], _settings(), 1, tmp_path)


def test_distill_is_chosen_on_dev_like_pseudo_and_needs_teacher_scores(monkeypatch, tmp_path):
    calls = []
    scores = {"none": 0.5, "pseudo": 0.6, "distill": 0.7, "pretrain": 0.3, "distill-pretrain": 0.45}
    monkeypatch.setattr(reranker_pretrain, "train_reranker", _fake_trainer(scores, calls))
    choice = choose_pretraining(["none", "pseudo", "distill"], "base", LABELED, PSEUDO_SCORED, [], _settings(), 4,
                                tmp_path)
    assert calls == [("none", 2), ("pretrain", 4), ("pseudo", 2), ("distill-pretrain", 4), ("distill", 2)]
    assert choice.option == "distill" and choice.pretrain_outcome.model == "model-distill-pretrain"
    assert choice.reason == "distill: dev nDCG@10 0.7000 > none 0.5000, > pseudo 0.6000"
    assert {t["option"]: t["pretrain_dev_ndcg"] for t in choice.table()} == {"none": None, "pseudo": 0.3,
                                                                             "distill": 0.45}
    # pairs without the teacher's scores: distill is reported untrained, pseudo still runs
    calls.clear()
    choice = choose_pretraining(["distill", "pseudo"], "base", LABELED, PSEUDO, [], _settings(), 1, tmp_path)
    assert choice.option == "pseudo" and calls == [("pretrain", 1), ("pseudo", 2)]
    assert choice.table()[0]["why"] == "not trained: the pseudo-pair examples carry no teacher score"
    # zero-label mode trains each listed pair option on the pairs alone and keeps the better
    calls.clear()
    zero = choose_pretraining(["none", "distill", "pseudo"], "base", [], PSEUDO_SCORED, [], _settings(), 1, tmp_path)
    assert calls == [("distill-pretrain", 1), ("pretrain", 1)] and zero.zero_label and zero.option == "distill"
    assert zero.reason.startswith("zero-label mode") and zero.reason.endswith("distill: dev nDCG@10 0.4500 > pseudo 0.3000")
    assert zero.outcome is zero.pretrain_outcome


def test_distill_examples_carry_the_first_stages_scores_and_train_a_tiny_reranker(weak_corpus, tiny_reranker_base,
                                                                                  tmp_path):
    import numpy as np

    from domret_pipeline.core.retrieval.encoder import encode

    chunks, index, encoder, pairs = weak_corpus["chunks"], weak_corpus["index"], weak_corpus["encoder"], weak_corpus["pairs"]
    plain, _ = pseudo_examples(pairs, chunks, index, encoder, len(chunks), 3, None, True)
    scored, mined = pseudo_examples(pairs, chunks, index, encoder, len(chunks), 3, None, True, teacher=True)
    assert all(e.teacher is None for e in plain)
    assert [(e.query, e.positives, e.negatives) for e in scored] == [(e.query, e.positives, e.negatives) for e in plain]
    for example, row in zip(scored, mined.queries):
        assert len(example.teacher) == len(example.negatives) + 1
        query, passage = encode(encoder, [example.query, example.positives[0]])
        assert example.teacher[0] == pytest.approx(TEACHER_SCALE * float(query @ passage), abs=1e-3)
        assert example.teacher[1:] == pytest.approx([TEACHER_SCALE * n["score"] for n in row.negatives])
        assert example.teacher[1:] == sorted(example.teacher[1:], reverse=True)  # the retriever's own order
    # MarginMSE pulls the student's margins towards the teacher's: the loss falls on a tiny run
    dev = _dev(scored[:3])
    settings = dataclasses.replace(_settings(epochs=3), loss=DISTILL_LOSS)  # not a config choice
    outcome = train_reranker(str(tiny_reranker_base), scored, dev, settings, tmp_path / "distill")
    losses = [entry["loss"] for entry in outcome.loss_history]
    assert len(losses) > 2 and np.mean(losses[-2:]) < losses[0]


def _dev(examples):
    return [DevSample(e.query, e.negatives + e.positives, e.positives) for e in examples]


def test_a_continued_reranker_starts_from_the_pretrained_state_and_never_ends_below_it(tiny_reranker_base, tmp_path):
    dev = _dev(EXAMPLES)
    pre = train_reranker(str(tiny_reranker_base), EXAMPLES[2:], dev, _settings(epochs=3), tmp_path / "pre")
    # a learning rate that can only hurt: the continued run must hand the pretrained state back
    after = train_reranker(str(tiny_reranker_base), EXAMPLES[:2], dev, _settings(epochs=2, learning_rate=0.5),
                           tmp_path / "after", start=pre.model)
    assert after.start_dev_score == pytest.approx(pre.dev_score, abs=1e-6)
    assert after.dev_score >= after.start_dev_score
    assert len(after.dev_history) > 1


def test_real_tiny_choice_and_zero_label_run(weak_corpus, tiny_reranker_base, tmp_path):
    """One real run of both options on the tiny corpus (labels: a query per document, dev on two
    of them), then zero-label labels (dev only): prepare gives no example, the pairs train."""
    docs, chunks, index, encoder = weak_corpus["docs"], weak_corpus["chunks"], weak_corpus["index"], weak_corpus["encoder"]
    queries = {f"q{i}": d.title for i, d in enumerate(docs)}
    qrels = {f"q{i}": {d.doc_id: 1} for i, d in enumerate(docs)}
    splits = {q: "dev" if q in ("q0", "q1") else "train" for q in queries}
    labels = LabeledQueries(queries, splits, qrels)
    held_out = {"d0", "d1"}
    pairs = [p for p in weak_corpus["pairs"] if p.doc_id not in held_out]
    labeled, dev, _ = prepare(labels, chunks, index, encoder, len(chunks), 2, None, True)
    pseudo, _ = pseudo_examples(pairs, chunks, index, encoder, len(chunks), 2, None, True)
    assert labeled and dev and pseudo
    settings = _settings(epochs=1)
    choice = choose_pretraining(["none", "pseudo"], str(tiny_reranker_base), labeled, pseudo, dev, settings, 1,
                                tmp_path / "choice")
    rows = {t.option: t for t in choice.trials}
    best = max(rows.values(), key=lambda t: (t.dev_ndcg, t.option == "none"))
    assert choice.option == best.option and choice.outcome.dev_score == best.dev_ndcg
    assert rows["pseudo"].pretrain_pairs == len(pseudo) and rows["pseudo"].pretrain_dev_ndcg is not None
    assert choice.reason.startswith(f"{best.option}: dev nDCG@10 {best.dev_ndcg:.4f}")

    zero_labels = LabeledQueries(queries, {q: "dev" if s == "dev" else "test" for q, s in splits.items()}, qrels)
    none, dev, mined = prepare(zero_labels, chunks, index, encoder, len(chunks), 2, None, True)
    assert none == [] and mined.queries == [] and dev
    zero = choose_pretraining(["none", "pseudo"], str(tiny_reranker_base), none, pseudo, dev, settings, 1,
                              tmp_path / "zero")
    assert zero.zero_label and zero.option == "pseudo" and [t.option for t in zero.trials] == ["pseudo"]
    assert zero.outcome.model is not None and zero.trials[0].pretrain_pairs == len(pseudo)
