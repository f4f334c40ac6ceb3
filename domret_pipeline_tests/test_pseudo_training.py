"""Pseudo-queries as training data (issue 17, item 2): mined by the labeled rules, rows that
train on the pair's own passage, and the recipe (labels, pseudo, pseudo_then_labels) chosen on dev."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from domret_pipeline.config import FineTuneConfig, MiningConfig
from domret_pipeline.core.data.chunking import Chunk, passage_text
from domret_pipeline.core.data.labels import normalized_text
from domret_pipeline.core.training import recipes as recipes_module
from domret_pipeline.core.training.bi_encoder import DEV_METRIC, TrainingOutcome
from domret_pipeline.core.training.mining import MinedQuery
from domret_pipeline.core.training.pseudo_pairs import PAIR_CHUNK, build_pseudo_rows, mine_pseudo, sample_pairs
from domret_pipeline.core.training.recipes import NO_LABELS, plan_recipes, recipe_table, train_recipes
from domret_pipeline.core.weak.pseudo_queries import PseudoPair

from .settings_helpers import settings_for
from .test_pseudo_queries import chunks_of, corpus, generate
from .test_training import DEV, ROWS


def _unit(angle: float) -> np.ndarray:
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


class FakeEncoder:
    """Encodes each known text to a fixed unit vector (the query vectors of the mining test)."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def encode(self, texts, **_):
        return np.array([self.vectors[t] for t in texts])


def _index(chunk_vectors: dict[str, np.ndarray]):
    import faiss

    flat = faiss.IndexFlatIP(2)
    flat.add(np.array(list(chunk_vectors.values()), dtype=np.float32))
    return SimpleNamespace(chunk_ids=list(chunk_vectors), index=flat)


def _chunk(doc: str, i: int) -> Chunk:
    return Chunk(f"{doc}#{i}", doc, i, 0, 1, 0, 0, 1, f"text of {doc}#{i}")


def test_pseudo_mining_never_returns_a_chunk_of_the_pairs_document_and_obeys_the_margin():
    # Query at angle 0. Cosines: a#0 0.80 (the ICT pair's chunk), a#1 0.99 (same document: never a
    # negative), b#0 0.98 (above 0.95 * 0.80: the margin drops it), c#0 0.70 and d#0 0.50 (negatives).
    # The crop has no chunk: its positive is a's best chunk for it, a#1 (best_match).
    angles = {"a#0": np.arccos(0.80), "a#1": np.arccos(0.99), "b#0": np.arccos(0.98), "c#0": np.arccos(0.70),
              "d#0": np.arccos(0.50)}
    chunks = [_chunk("a", 0), _chunk("a", 1), _chunk("b", 0), _chunk("c", 0), _chunk("d", 0)]
    pairs = [PseudoPair("a:inverse_cloze:0", "inverse_cloze", "the ict query", "rest of a#0", "A", "a", "a#0",
                        (0, 5), (0, 20)),
             PseudoPair("a:crop:0", "crop", "the crop query", "a span of a", "A", "a", None, (0, 5), (6, 20))]
    encoder = FakeEncoder({"the ict query": _unit(0.0), "the crop query": _unit(0.0)})
    settings = settings_for(MiningConfig, range_min=0, range_max=10, max_positive_ratio=0.95, num_negatives=5)
    result = mine_pseudo(pairs, chunks, _index({c: _unit(a) for c, a in angles.items()}), encoder, settings)

    ict, crop = result.queries
    assert ict.positives[0][:1] == ("a#0",) and ict.positives[0][2] == PAIR_CHUNK
    assert crop.positives[0][0] == "a#1" and crop.positives[0][2] == "best_match"
    for mined in result.queries:
        negatives = [n["chunk_id"] for n in mined.negatives]
        assert not [c for c in negatives if c.startswith("a#")]  # nothing of the pair's own document
        floor = settings.max_positive_ratio * min(s for _, s, _ in mined.positives)
        assert all(n["score"] <= floor for n in mined.negatives)
    # b#0 falls to the margin for both (0.98 > 0.95 * 0.80 and > 0.95 * 0.99); both chunks of a, twice
    assert [n["chunk_id"] for n in ict.negatives] == [n["chunk_id"] for n in crop.negatives] == ["c#0", "d#0"]
    assert result.removed["labeled_positive"] == 4 and result.removed["margin"] == 2


def test_sampling_pairs_is_seeded_keeps_order_and_zero_mines_none():
    pairs = generate(corpus(6)).pairs
    sample = sample_pairs(pairs, 5, seed=3)
    assert sample == sample_pairs(pairs, 5, seed=3) and len(sample) == 5
    assert [pairs.index(p) for p in sample] == sorted(pairs.index(p) for p in sample)
    assert sample_pairs(pairs, 0, seed=3) == [] and sample_pairs(pairs, 10**6, seed=3) == pairs


@pytest.mark.parametrize("with_title", [True, False])
def test_a_pseudo_row_trains_on_the_pairs_passage_never_on_the_chunk_that_holds_the_query(with_title):
    docs = corpus(4)
    pairs = generate(docs).pairs
    by_id = {c.chunk_id: c for c in chunks_of(docs)}
    negative = next(iter(by_id))
    mined = [MinedQuery(p.pair_id, [(p.chunk_id or negative, 0.9, PAIR_CHUNK)], [{"chunk_id": negative, "score": 0.1}])
             for p in pairs]
    rows = build_pseudo_rows(mined, {p.pair_id: p for p in pairs}, by_id, with_title)
    assert len(rows) == len(pairs) and {p.kind for p in pairs} == {"inverse_cloze", "title", "crop"}
    for pair, (query, positive, negatives) in zip(pairs, rows):
        assert query == pair.query and positive == pair.passage(with_title)
        assert normalized_text(query) not in normalized_text(positive)
        if pair.kind == "inverse_cloze":  # the whole chunk would hold the query verbatim
            assert normalized_text(query) in normalized_text(by_id[pair.chunk_id].text)
        assert negatives == [passage_text(by_id[negative], with_title)]
    # a pair mined without negatives trains nothing, as a labeled query without negatives
    assert build_pseudo_rows([MinedQuery(pairs[0].pair_id, [], [])], {pairs[0].pair_id: pairs[0]}, by_id, True) == []


class FakeModel:
    def __init__(self, name):
        self.name = name

    def save(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "from").write_text(self.name)


def _fake_trainer(scores: dict[str, float], calls: list):
    """A train_encoder whose dev score after training is ``scores[<start>+<data>]``: start is base
    or pseudo (a folder the pseudo stage's model was saved to), data is labels or pseudo."""

    def train(base_model, rows, num_negatives, dev, settings, work_dir, progress_sink=None):
        start = "pseudo" if Path(base_model, "from").exists() else "base"
        data = "pseudo" if rows and rows[0][0].startswith("pseudo") else "labels"
        calls.append((start, data, settings.epochs))
        begin = 0.5 if start == "base" else scores["base+pseudo"]
        score = scores[f"{start}+{data}"]
        return TrainingOutcome(model=FakeModel(f"{start}+{data}"), base_dev_score=begin, dev_score=score, best_epoch=1.0,
                               dev_history=[{"epoch": 0.0, DEV_METRIC: begin}, {"epoch": 1.0, DEV_METRIC: score}],
                               loss_history=[], trainable_parameters=1, total_parameters=1, seconds=2.0)

    return train


LABEL_ROWS = [(f"labeled {i}", "positive", ["negative"]) for i in range(3)]
PSEUDO_ROWS = [(f"pseudo {i}", "positive", ["negative"]) for i in range(5)]


@pytest.mark.parametrize("scores, chosen, why", [
    ({"base+labels": 0.60, "base+pseudo": 0.55, "pseudo+labels": 0.66}, "pseudo_then_labels", "+0.0600 over labels"),
    ({"base+labels": 0.60, "base+pseudo": 0.60, "pseudo+labels": 0.60}, "labels", "no other recipe beats the simplest"),
    ({"base+labels": 0.60, "base+pseudo": 0.62, "pseudo+labels": 0.62}, "pseudo", "+0.0200 over labels"),
    ({"base+labels": 0.70, "base+pseudo": 0.62, "pseudo+labels": 0.65}, "labels", "no other recipe beats the simplest"),
])
def test_the_recipe_with_the_best_dev_score_is_kept_a_tie_goes_to_the_simplest(monkeypatch, tmp_path, scores, chosen, why):
    calls = []
    monkeypatch.setattr(recipes_module, "train_encoder", _fake_trainer(scores, calls))
    config = FineTuneConfig(recipes=["pseudo_then_labels", "pseudo", "labels"], pseudo_epochs=2, pseudo_max_rows=4)
    choice = train_recipes("base-model", LABEL_ROWS, PSEUDO_ROWS, 1, DEV, config.settings(), config.recipe_settings(),
                           tmp_path)
    assert choice.chosen == chosen and why in choice.reason, choice.reason
    assert [r.recipe for r in choice.runs] == ["labels", "pseudo", "pseudo_then_labels"]
    assert choice.outcome.dev_score == max(r.dev_score for r in choice.runs)
    # the pseudo stage is trained once, with its own epochs and row cap, and the labeled stage continues from it
    assert calls == [("base", "labels", config.epochs), ("base", "pseudo", 2), ("pseudo", "labels", config.epochs)]
    staged = choice.runs[2]
    assert [(s.data, s.rows) for s in staged.stages] == [("pseudo", 4), ("labels", 3)] and staged.seconds == 4.0
    header, rows = recipe_table(choice.as_dict())
    assert header[0] == "recipe" and [r[5] for r in rows].count("yes") == 1
    assert rows[0][3] == "–" and "on the dev task" in choice.reason  # no choice_dev: the epochs' task decides
    assert "pseudo: 0.5000 → " in rows[2][2] and rows[2][1] == "pseudo 4 → labels 3"


def test_over_every_chunk_the_choice_can_overturn_the_dev_task(monkeypatch, tmp_path):
    """The dev task ranks pseudo first; the dev queries over every chunk rank it below labels and
    below the untrained model (what SciFact showed): the choice follows every chunk and says so."""
    calls = []
    monkeypatch.setattr(recipes_module, "train_encoder", _fake_trainer({"base+labels": 0.60, "base+pseudo": 0.65}, calls))
    full = {"base-model": 0.58, "base+labels": 0.62, "base+pseudo": 0.55}
    scored = []

    def scorer(dev, settings):
        def score(model):
            name = model if isinstance(model, str) else model.name
            scored.append(name)
            return full[name]
        return score

    monkeypatch.setattr(recipes_module, "full_dev_scorer", scorer)
    config = FineTuneConfig(recipes=["labels", "pseudo"])
    choice = train_recipes("base-model", LABEL_ROWS, PSEUDO_ROWS, 1, DEV, config.settings(), config.recipe_settings(),
                           tmp_path, choice_dev=DEV)
    assert choice.chosen == "labels" and "over every chunk" in choice.reason and "labels 0.6200" in choice.reason
    assert [r.outcome.dev_score for r in choice.runs] == [0.60, 0.65]  # the epochs' task said otherwise
    assert choice.base_full_dev_score == 0.58 and sorted(scored) == ["base+labels", "base+pseudo", "base-model"]
    header, rows = recipe_table(choice.as_dict())
    assert rows[0][:4] == ["(untrained)", "", "", "0.5800"] and rows[2][3] == "0.5500"
    # one recipe: nothing to choose between, no corpus encoding
    scored.clear()
    single = train_recipes("base-model", LABEL_ROWS, PSEUDO_ROWS, 1, DEV, config.settings(),
                           FineTuneConfig().recipe_settings(), tmp_path / "one", choice_dev=DEV)
    assert not scored and single.base_full_dev_score is None and single.runs[0].full_dev_score is None


def test_zero_label_mode_trains_pseudo_though_not_asked_and_nothing_at_all_is_one_error(monkeypatch, tmp_path):
    run, skipped, note = plan_recipes(["labels", "pseudo_then_labels"], 0, 5)
    assert run == ["pseudo"] and skipped == {"labels": NO_LABELS, "pseudo_then_labels": NO_LABELS}
    assert "not asked for" in note
    with pytest.raises(ValueError, match="nothing to train the encoder on") as error:
        plan_recipes(["labels"], 0, 0)
    assert "\n" not in str(error.value)
    calls = []
    monkeypatch.setattr(recipes_module, "train_encoder", _fake_trainer({"base+pseudo": 0.6}, calls))
    config = FineTuneConfig()  # recipes: labels only
    choice = train_recipes("base-model", [], PSEUDO_ROWS, 1, DEV, config.settings(), config.recipe_settings(), tmp_path)
    assert choice.chosen == "pseudo" and calls == [("base", "pseudo", config.pseudo_epochs)]
    assert "only recipe" in choice.reason and "labels" in choice.skipped
    assert any("skipped: " + NO_LABELS == row[6] for row in recipe_table(choice.as_dict())[1])


def test_two_real_recipes_on_the_tiny_encoder_keep_the_better_on_dev(tiny_encoder, tmp_path):
    pseudo_rows = [(positive.split(" ", 3)[-1], positive, negatives) for _, positive, negatives in ROWS]
    config = FineTuneConfig(recipes=["labels", "pseudo"], epochs=1, learning_rate=5e-3, batch_size=4, max_seq_length=32,
                            warmup_ratio=0.0)
    choice = train_recipes(str(tiny_encoder), ROWS, pseudo_rows, 2, DEV, config.settings(), config.recipe_settings(),
                           tmp_path, choice_dev=DEV)
    labels, pseudo = choice.runs
    # scored again on the choice's corpus (here the same task): the kept state scores as the epoch did
    assert labels.full_dev_score == pytest.approx(labels.outcome.dev_score, abs=1e-6)
    assert choice.base_full_dev_score == pytest.approx(choice.base_dev_score, abs=1e-6)
    assert (labels.recipe, pseudo.recipe) == ("labels", "pseudo")
    assert len(labels.stages[0].dev_history) == len(pseudo.stages[0].dev_history) == 2  # the start, then the epoch
    assert labels.stages[0].dev_history[0] == pseudo.stages[0].dev_history[0] == choice.base_dev_score
    best = pseudo if pseudo.dev_score > labels.dev_score else labels
    assert choice.chosen == best.recipe and choice.outcome is best.outcome
    assert f"labels {labels.dev_score:.4f}" in choice.reason and f"pseudo {pseudo.dev_score:.4f}" in choice.reason


def test_zero_label_graph_mines_only_pseudo_queries_and_trains_pseudo(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    """No train query (split_salt t1 at 0.45/0.45 puts every query in dev or test): hard_negatives
    mines the pairs alone, and embedding_checkpoint trains pseudo though recipes lists labels only."""
    import json

    import dagster as dg

    from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
    from domret_pipeline.assets.indexes import base_faiss_index, bm25_index
    from domret_pipeline.assets.labels import labeled_queries
    from domret_pipeline.assets.pseudo_queries import pseudo_queries
    from domret_pipeline.assets.training import embedding_checkpoint, hard_negatives
    from domret_pipeline.core.manifests import HardNegativesManifest, read_manifest

    from .conftest import make_resources
    from .graph_helpers import run_config

    assets = [corpus_documents, corpus_chunks, labeled_queries, pseudo_queries, base_faiss_index, bm25_index,
              hard_negatives, embedding_checkpoint]
    ops = run_config(small_dataset, tiny_encoder, dev_fraction=0.45, test_fraction=0.45)["ops"]
    config = {"ops": {a.key.to_user_string(): ops[a.key.to_user_string()] for a in assets
                      if a.key.to_user_string() in ops}}
    # every document is relevant to a dev or test query here: allowed, so that pairs exist (a leak, in a test)
    config["ops"]["pseudo_queries"] = {"config": {"min_query_words": 3, "allow_eval_documents": True}}
    config["ops"]["base_faiss_index"] = {"config": {"precision": "fp32"}}  # no parity trials: not what is tested
    result = dg.materialize(assets, resources=make_resources(tmp_path, tiny_encoder, mlflow_uri), run_config=config)
    assert result.success
    meta = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    mined = Path(meta["hard_negatives"]["artifact_path"].value)
    manifest = read_manifest(mined, HardNegativesManifest)
    assert (mined / "mined.jsonl").read_text() == "" and meta["hard_negatives"]["queries"].value == 0
    pseudo_rows = [json.loads(line) for line in (mined / "mined_pseudo.jsonl").read_text().splitlines()]
    assert pseudo_rows and manifest.pseudo["mined"] == len(pseudo_rows) == meta["hard_negatives"]["pseudo_queries_mined"].value
    assert manifest.pseudo["pseudo_queries"] == meta["pseudo_queries"]["content_sha256"].value
    for row in pseudo_rows:  # the pair's own document (the pair id starts with it) is never a negative
        assert not [n for n in row["negatives"] if n["chunk_id"].split("#")[0] == row["query_id"].split(":")[0]]
    card = json.loads((Path(meta["embedding_checkpoint"]["artifact_path"].value) / "card.json").read_text())
    assert card["recipe"] == "pseudo" and set(card["recipes"]["skipped"]) == {"labels"}
    assert "not asked for" in card["recipe_reason"] and "| pseudo |" in meta["embedding_checkpoint"]["recipes"].value


def test_pseudo_mining_that_keeps_no_negative_leaves_the_labeled_rows_to_train(tmp_path, tiny_encoder, mlflow_uri,
                                                                               small_dataset, monkeypatch):
    """A corpus whose pairs all fail the filters must not fail a run that has labels to train
    on: hard_negatives records why there is no pseudo row, and the labeled rows are kept."""
    import dagster as dg

    from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
    from domret_pipeline.assets.indexes import base_faiss_index, bm25_index
    from domret_pipeline.assets.labels import labeled_queries
    from domret_pipeline.assets.pseudo_queries import pseudo_queries
    from domret_pipeline.assets.training import hard_negatives
    from domret_pipeline.core.manifests import HardNegativesManifest, read_manifest
    from domret_pipeline.core.training import pseudo_pairs
    from domret_pipeline.core.training.mining import NoNegativesError

    from .conftest import make_resources
    from .graph_helpers import run_config

    def no_negatives(*args, **kwargs):
        raise NoNegativesError("hard-negative mining kept no negative for any of 3 queries")

    monkeypatch.setattr(pseudo_pairs, "mine_pseudo", no_negatives)
    assets = [corpus_documents, corpus_chunks, labeled_queries, pseudo_queries, base_faiss_index, bm25_index,
              hard_negatives]
    ops = run_config(small_dataset, tiny_encoder)["ops"]
    config = {"ops": {a.key.to_user_string(): ops[a.key.to_user_string()] for a in assets
                      if a.key.to_user_string() in ops}}
    config["ops"]["pseudo_queries"] = {"config": {"min_query_words": 3, "allow_eval_documents": True}}
    config["ops"]["base_faiss_index"] = {"config": {"precision": "fp32"}}
    result = dg.materialize(assets, resources=make_resources(tmp_path, tiny_encoder, mlflow_uri), run_config=config)
    assert result.success
    meta = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "hard_negatives")
    manifest = read_manifest(Path(meta["artifact_path"].value), HardNegativesManifest)
    assert meta["queries"].value > 0 and manifest.pseudo["mined"] == 0
    assert "kept no negative" in manifest.pseudo["failed"]
