"""The LoRA cross-encoder: what trains, what is saved, what is restored, and that it learns."""

import dataclasses

import numpy as np
import pytest

from domret_pipeline.config import RerankerConfig
from domret_pipeline.core.retrieval.cross_encoder import load_adapter, load_cross_encoder, load_reranker, score_pairs
from domret_pipeline.core.training.outcome import count_parameters
from domret_pipeline.core.training.reranker import (
    DevSample, RerankExample, RerankerSettings, attach_lora, save_adapter_and_merged, train_reranker,
)

from .settings_helpers import settings_for

PAIRS = ("forklift speed at Leeds", ["Forklifts at Leeds drive at most 8 km/h.", "OBX-3 carries the LOINC code.",
                                     "Exceptions need the SRE lead."])


def _settings(**overrides) -> RerankerSettings:
    base = dict(max_length=32, lora_r=4, lora_alpha=8, lora_dropout=0.0, epochs=1, batch_size=4, logging_steps=1,
                warmup_ratio=0.0)
    return settings_for(RerankerConfig, **{**base, **overrides})


def test_only_lora_weights_and_the_head_train(tiny_reranker_base):
    settings = _settings()
    model = load_cross_encoder(str(tiny_reranker_base), settings.max_length)
    attach_lora(model, settings)
    trainable, total = count_parameters(model)
    hidden, layers, r = 32, 2, settings.lora_r
    lora = layers * len(settings.lora_target_modules) * (r * hidden + hidden * r)  # A: r x h, B: h x r
    head = (hidden + 1) + (hidden * hidden + hidden)  # classifier (h -> 1) and pooler (h -> h)
    assert trainable == lora + head
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all("lora_" in n or "classifier" in n or "pooler" in n for n in names)
    assert trainable < total / 10


def test_without_pooler_only_the_classifier_is_the_head(tiny_reranker_base):
    settings = _settings(train_pooler=False)
    model = load_cross_encoder(str(tiny_reranker_base), settings.max_length)
    attach_lora(model, settings)
    trainable, _ = count_parameters(model)
    assert trainable == 2 * 3 * (2 * 4 * 32) + 33


EXAMPLES = [
    RerankExample("forklift speed at Leeds", ["Forklifts at Leeds drive at most 8 km/h."],
                  ["Forklifts at Lyon drive at most 6 km/h.", "OBX-3 carries the LOINC code."]),
    RerankExample("who approves ledger-sync exceptions", ["ledger-sync exceptions need the VP of Engineering."],
                  ["checkout-api exceptions need the SRE lead.", "PID-3 carries the MRN."]),
    RerankExample("OBX-3 CUI mapping", ["OBX-3 is mapped to a UMLS CUI before storage."],
                  ["PID-3 unmapped values go to the queue.", "Batteries charge in Bay C."]),
    RerankExample("where are Lyon batteries charged", ["Lyon batteries charge in Zone 4."],
                  ["Leeds batteries charge in Bay C.", "The SLO is 99.9%."]),
]


def _trained(tiny_reranker_base, tmp_path, **overrides):
    examples = EXAMPLES
    dev = [DevSample(e.query, e.negatives + e.positives, e.positives) for e in examples]
    settings = _settings(**{"epochs": 30, "learning_rate": 3e-3, "num_negatives": 2, "in_batch_negatives": 2,
                            "early_stopping_patience": 100, **overrides})
    return examples, train_reranker(str(tiny_reranker_base), examples, dev, settings, tmp_path / "work"), settings


def test_training_learns_and_adapter_and_merged_model_score_alike(tiny_reranker_base, tmp_path):
    examples, outcome, settings = _trained(tiny_reranker_base, tmp_path)
    losses = [e["loss"] for e in outcome.loss_history]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    assert outcome.dev_score > outcome.first_stage_dev_score  # the positives were listed last
    assert outcome.dev_history[0]["epoch"] == 0.0 and len(outcome.dev_history) > 1

    query, passages = PAIRS
    with_adapter = score_pairs(outcome.model, query, passages)
    save_adapter_and_merged(outcome.model, tmp_path / "adapter", tmp_path / "merged")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    adapter_bytes = sum(f.stat().st_size for f in (tmp_path / "adapter").glob("*.safetensors"))
    merged_bytes = sum(f.stat().st_size for f in (tmp_path / "merged").rglob("*.safetensors"))
    assert 0 < adapter_bytes < merged_bytes / 10  # the adapter is the small artifact

    # Round trip: a fresh base (its random head drawn with another seed) + the saved adapter.
    reloaded = load_adapter(str(tiny_reranker_base), tmp_path / "adapter", settings.max_length)
    np.testing.assert_allclose(score_pairs(reloaded, query, passages), with_adapter, atol=1e-5)
    merged = load_reranker(tmp_path / "merged", settings.max_length)
    np.testing.assert_allclose(score_pairs(merged, query, passages), with_adapter, atol=1e-4)


def test_a_fresh_head_differs_so_the_round_trip_is_not_vacuous(tiny_reranker_base):
    query, passages = PAIRS
    a = score_pairs(load_cross_encoder(str(tiny_reranker_base), 32, seed=1), query, passages)
    b = score_pairs(load_cross_encoder(str(tiny_reranker_base), 32, seed=2), query, passages)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("loss", ["lambda", "bce"])
def test_other_losses_train(tiny_reranker_base, tmp_path, loss):
    _, outcome, _ = _trained(tiny_reranker_base, tmp_path, loss=loss, epochs=3)
    assert outcome.loss_history and all(np.isfinite(e["loss"]) for e in outcome.loss_history)


def test_unknown_loss_is_refused(tiny_reranker_base, tmp_path):
    with pytest.raises(ValueError, match="loss"):  # the run config refuses it first
        _settings(loss="hinge-ish")
    # and the core refuses settings built around the config (a script, a test)
    settings = dataclasses.replace(_settings(epochs=1), loss="hinge-ish")
    dev = [DevSample(e.query, e.negatives + e.positives, e.positives) for e in EXAMPLES]
    with pytest.raises(ValueError, match="unknown reranker loss"):
        train_reranker(str(tiny_reranker_base), EXAMPLES, dev, settings, tmp_path / "work")


def test_trained_reranker_fixes_what_the_bi_encoder_ranks_wrong(tiny_encoder, tiny_reranker_base, tmp_path):
    """End to end through the query-time pipeline: a real (tiny) bi-encoder and FAISS index put
    a wrong passage first for some training query; the trained cross-encoder puts it right."""
    from domret_pipeline.core.data.chunking import Chunk
    from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index
    from domret_pipeline.core.retrieval.encoder import encode, load_encoder
    from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig

    passages = sorted({p for e in EXAMPLES for p in e.positives + e.negatives})
    # Listwise over every passage, so the reranker learns the whole ordering the pipeline asks of it.
    examples = [RerankExample(e.query, e.positives, [p for p in passages if p not in e.positives]) for e in EXAMPLES]
    dev = [DevSample(e.query, passages, e.positives) for e in examples]
    settings = _settings(loss="listnet", epochs=40, learning_rate=3e-3, num_negatives=len(passages), batch_size=4,
                         early_stopping_patience=100)
    outcome = train_reranker(str(tiny_reranker_base), examples, dev, settings, tmp_path / "work2")
    chunks = [Chunk(f"p{i}", f"p{i}", 0, 0, len(t), 0, 0, 10, t) for i, t in enumerate(passages)]
    encoder = load_encoder(str(tiny_encoder), 64)
    index = DenseIndex(build_index(encode(encoder, passages), "flat"), [c.chunk_id for c in chunks])
    config = dict(first_stage="dense", candidates=len(passages), depth=len(passages), top_n=1)
    dense = SearchPipeline(chunks, index, encoder, ServingConfig(**config), with_title=False)
    reranked = SearchPipeline(chunks, index, encoder, ServingConfig(**config, rerank=True), reranker=outcome.model,
                              with_title=False)
    queries = [e.query for e in examples]
    dense_top = [r.hits[0].text for r in dense.search(queries)]
    reranked_top = [r.hits[0].text for r in reranked.search(queries)]
    wrong = [i for i, e in enumerate(examples) if dense_top[i] not in e.positives]
    assert wrong, "the tiny bi-encoder got every query right: the case no longer tests reranking"
    assert all(reranked_top[i] in examples[i].positives for i in wrong), (dense_top, reranked_top)
