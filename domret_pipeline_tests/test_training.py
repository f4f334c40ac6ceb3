"""Fine-tuning on a tiny set with the tiny random encoder."""

import numpy as np

from domret_pipeline.config import FineTuneConfig
from domret_pipeline.core.retrieval.encoder import encode, load_encoder
from domret_pipeline.core.training.bi_encoder import DevSet, train_encoder

from .settings_helpers import settings_for


def _training(**values):
    return settings_for(FineTuneConfig, **values)

ROWS = [
    ("forklift speed in aisles", "Forklifts drive at most 8 km/h in aisles.", ["OBX-3 maps to a CUI.", "SLO exceptions need approval."]),
    ("who approves SLO exceptions", "SLO exceptions need the SRE lead's approval.", ["Forklifts charge in Bay C.", "PID-3 carries the MRN."]),
    ("OBX-3 CUI mapping", "OBX-3 carries the LOINC code mapped to a CUI.", ["Canary on 5% of traffic.", "Forklifts drive at 6 km/h."]),
    ("where are batteries charged", "Batteries are charged in Bay C with ventilation.", ["Retention is 90 days.", "Pages escalate after 10 minutes."]),
]
DEV = DevSet(
    queries={"d1": "forklift aisle speed", "d2": "SLO exception approver"},
    corpus={"c1": "Forklifts drive at most 8 km/h in aisles.", "c2": "SLO exceptions need the SRE lead's approval.",
            "c3": "OBX-3 maps to a CUI.", "c4": "Retention is 90 days."},
    relevant={"d1": {"c1"}, "d2": {"c2"}},
)


def test_training_lowers_the_loss_and_the_checkpoint_reloads_identically(tiny_encoder, tmp_path):
    settings = _training(epochs=8, learning_rate=5e-3, batch_size=4, max_seq_length=32, warmup_ratio=0.0,
                         logging_steps=1, early_stopping_patience=100)
    outcome = train_encoder(str(tiny_encoder), ROWS, 2, DEV, settings, tmp_path / "work")
    losses = [e["loss"] for e in outcome.loss_history]
    assert len(losses) == 8
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    assert len(outcome.dev_history) == 9  # the base model, then every epoch
    assert outcome.trainable_parameters == outcome.total_parameters  # full fine-tuning

    outcome.model.save(str(tmp_path / "checkpoint"))
    texts = ["forklift speed", "OBX-3 mapping to CUI"]
    before = encode(outcome.model, texts)
    after = encode(load_encoder(str(tmp_path / "checkpoint"), 32), texts)
    np.testing.assert_allclose(before, after, atol=1e-5)


def test_lora_trains_only_adapters_saves_them_apart_and_merges(tiny_encoder, tmp_path):
    settings = _training(epochs=2, learning_rate=5e-3, batch_size=4, max_seq_length=32, lora=True, lora_r=4,
                         lora_alpha=8, lora_target_modules=["query", "value"], early_stopping_patience=100)
    outcome = train_encoder(str(tiny_encoder), ROWS, 2, DEV, settings, tmp_path / "work")
    # 2 layers x (query, value) x (A: r x hidden + B: hidden x r) with hidden 32, r 4
    assert outcome.trainable_parameters == 2 * 2 * (4 * 32 + 32 * 4)
    adapter = tmp_path / "work" / "lora_adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    # the merged model is a plain encoder again: saving and reloading gives the same embeddings
    outcome.model.save(str(tmp_path / "merged"))
    assert not any("lora" in k for k in outcome.model.state_dict())
    texts = ["forklift speed"]
    np.testing.assert_allclose(encode(outcome.model, texts), encode(load_encoder(str(tmp_path / "merged"), 32), texts), atol=1e-5)


def test_training_device_auto_follows_torch_and_cuda_without_a_gpu_is_refused(monkeypatch):
    import pytest
    import torch

    from domret_pipeline.core.training.bi_encoder import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="sees no GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown training device"):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_symmetric_loss_directions_reach_the_loss_and_still_train(tiny_encoder, tmp_path, monkeypatch):
    from sentence_transformers.sentence_transformer import losses

    seen = []
    original = losses.MultipleNegativesRankingLoss.__init__

    def spy(self, model, **kwargs):
        seen.append(kwargs.get("directions"))
        original(self, model, **kwargs)

    monkeypatch.setattr(losses.MultipleNegativesRankingLoss, "__init__", spy)
    directions = ["query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc"]
    settings = _training(epochs=4, learning_rate=5e-3, batch_size=4, max_seq_length=32, warmup_ratio=0.0,
                         logging_steps=1, early_stopping_patience=100, loss_directions=directions)
    outcome = train_encoder(str(tiny_encoder), ROWS, 2, DEV, settings, tmp_path / "work")
    assert seen == [tuple(directions)]
    losses_seen = [e["loss"] for e in outcome.loss_history]
    assert np.mean(losses_seen[-2:]) < losses_seen[0], losses_seen


def test_unknown_or_query_less_loss_directions_are_refused_before_training(tmp_path):
    import pytest

    for bad in (["query_to_doc", "doc_to_passage"], ["doc_to_doc"]):
        settings = _training(loss_directions=bad)
        with pytest.raises(ValueError, match="loss_directions"):
            train_encoder("no-such-model", ROWS, 2, DEV, settings, tmp_path / "work")


def test_bf16_mixed_precision_trains_and_keeps_fp32_weights(tiny_encoder, tmp_path):
    import pytest
    import torch

    from domret_pipeline.core.retrieval.precision import unavailable_reason

    if unavailable_reason("bf16"):
        pytest.skip(unavailable_reason("bf16"))
    settings = _training(epochs=8, learning_rate=5e-3, batch_size=4, max_seq_length=32, warmup_ratio=0.0,
                         logging_steps=1, early_stopping_patience=100, train_precision="bf16")
    lines: list[str] = []
    outcome = train_encoder(str(tiny_encoder), ROWS, 2, DEV, settings, tmp_path / "work", progress_sink=lines.append)
    assert outcome.train_precision == "bf16"
    losses = [e["loss"] for e in outcome.loss_history]
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in outcome.model.parameters())  # autocast: master weights stay fp32
    assert any(line.startswith("training the encoder: 8/8 steps (100%)") for line in lines), lines
    assert any("evaluated on dev" in line for line in lines)


def test_frozen_lower_layers_stay_fixed_while_the_top_trains(tiny_encoder, tmp_path):
    import pytest
    import torch

    from domret_pipeline.core.retrieval.encoder import load_encoder as load

    before = {k: v.clone() for k, v in load(str(tiny_encoder), 32).state_dict().items()}
    settings = _training(epochs=2, learning_rate=5e-3, batch_size=4, max_seq_length=32, warmup_ratio=0.0,
                         early_stopping_patience=100, freeze_layers=1)
    outcome = train_encoder(str(tiny_encoder), ROWS, 2, DEV, settings, tmp_path / "work")
    after = outcome.model.state_dict()
    frozen = [k for k in after if ".embeddings." in k or ".layer.0." in k]
    trained = [k for k in after if ".layer.1." in k and after[k].is_floating_point()]
    assert frozen and trained
    assert all(torch.equal(after[k], before[k]) for k in frozen)
    assert any(not torch.equal(after[k], before[k]) for k in trained)
    assert outcome.trainable_parameters < outcome.total_parameters
    with pytest.raises(ValueError, match="only 2 layers"):
        train_encoder(str(tiny_encoder), ROWS, 2, DEV, _training(freeze_layers=3, max_seq_length=32), tmp_path / "w2")
