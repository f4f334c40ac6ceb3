"""One settings source: the Dagster config classes define every knob and its default; the
core's settings dataclasses are derived from them and hold no default of their own for a knob."""

import dataclasses
import importlib
import inspect
import pkgutil
import typing

import pytest

import domret_pipeline.core
from domret_pipeline.config import (
    SETTINGS_SOURCES, FineTuneConfig, IndexConfig, MiningConfig, RerankerConfig, ServingSelectionConfig, TunedIndexConfig,
    derive,
)


def _settings_class(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@pytest.mark.parametrize("config_cls, path, prefix", SETTINGS_SOURCES, ids=[p.split(":")[1] for _, p, _ in SETTINGS_SOURCES])
def test_every_settings_field_has_exactly_one_default_source(config_cls, path, prefix):
    settings_cls = _settings_class(path)
    for f in dataclasses.fields(settings_cls):
        in_config = prefix + f.name in config_cls.model_fields
        assert in_config != _has_default(f), (
            f"{settings_cls.__name__}.{f.name}: " + ("a default here and a knob in " + config_cls.__name__ if in_config
                                                     else "no default here and no knob in " + config_cls.__name__))


@pytest.mark.parametrize("config_cls, path, prefix", SETTINGS_SOURCES, ids=[p.split(":")[1] for _, p, _ in SETTINGS_SOURCES])
def test_derived_settings_carry_the_config_values_with_the_core_types(config_cls, path, prefix):
    settings_cls = _settings_class(path)
    hints = typing.get_type_hints(settings_cls)
    config = config_cls()
    settings = derive(config, settings_cls, prefix)
    for f in dataclasses.fields(settings_cls):
        if prefix + f.name not in config_cls.model_fields:
            continue
        value = getattr(config, prefix + f.name)
        assert getattr(settings, f.name) == value, f.name
        expected = typing.get_origin(hints[f.name]) or hints[f.name]  # list[str] -> list
        # an int default is a valid float (pydantic and the core both accept it)
        assert isinstance(value, expected) or (expected is float and isinstance(value, int)), (f.name, value, hints[f.name])


def test_every_core_settings_dataclass_is_derived_from_a_config():
    from domret_pipeline.config import ENV_SETTINGS

    listed = {path for _, path, _ in SETTINGS_SOURCES} | set(ENV_SETTINGS)
    found = set()
    for module in pkgutil.walk_packages(domret_pipeline.core.__path__, "domret_pipeline.core."):  # subpackages too
        mod = importlib.import_module(module.name)
        for name, obj in inspect.getmembers(mod, dataclasses.is_dataclass):
            if name.endswith("Settings") and obj.__module__ == mod.__name__:
                found.add(f"{mod.__name__}:{name}")
    assert found == listed


def test_a_knob_changed_in_the_config_reaches_the_core():
    assert FineTuneConfig(epochs=7, lora_target_modules=["query"]).settings().lora_target_modules == ["query"]
    assert MiningConfig(num_negatives=5).settings().num_negatives == 5
    assert ServingSelectionConfig(answer_passages=4).answer_settings().passages == 4
    # the core once copied epochs=2 where the config says 1: there is only the config's now
    assert RerankerConfig().settings().epochs == RerankerConfig().epochs
    # core-only fields pass through; a knob cannot be set around the config
    assert FineTuneConfig().settings(logging_steps=1).logging_steps == 1
    with pytest.raises(TypeError, match="epochs"):
        FineTuneConfig().settings(epochs=3)


def test_derived_lists_are_not_shared_with_the_config():
    config = FineTuneConfig()
    settings = config.settings()
    settings.lora_target_modules.append("extra")
    assert "extra" not in config.lora_target_modules


def test_values_crossing_assets_are_read_back_from_the_manifest_that_recorded_them():
    from domret_pipeline.core.answers.extractive import AnswerSettings
    from domret_pipeline.core.manifests import DenseIndexManifest, HardNegativesManifest, ManifestError

    # hard_negatives' manifest records its settings; embedding_checkpoint reads the row width back
    manifest = {**MiningConfig(num_negatives=5).model_dump(), "labeled_queries": "l", "corpus_chunks": "c",
                "base_faiss_index": "b", "encoder": "e", "removed": {}, "queries_without_negatives": [],
                "positive_rules": {}}
    assert HardNegativesManifest.from_dict(manifest).settings == MiningConfig(num_negatives=5).settings()
    with pytest.raises(ManifestError, match="num_negatives"):
        HardNegativesManifest.from_dict({k: v for k, v in manifest.items() if k != "num_negatives"})
    bundle = {"answer": {"passages": 4, "max_sentences": 1, "threshold": 0.3, "scorer": "encoder"}}
    assert AnswerSettings.from_bundle(bundle) == AnswerSettings(4, 1, 0.3)
    index = {"role": "base", "encoder": "e", "encoder_path": "/e", "encoder_sha256": "h", "max_seq_length": 8,
             "index_type": "flat", "corpus_chunks": "c", "n_vectors": 1, "dim": 2}
    assert DenseIndexManifest.from_dict({**index, "with_title": False}).with_title is False
    with pytest.raises(ManifestError, match="with_title"):
        DenseIndexManifest.from_dict(index)  # no reader guesses a default of its own


def test_with_title_is_defined_once_by_the_base_index():
    assert IndexConfig().with_title is True
    # the tuned index inherits the base index's value unless told (and then it must agree)
    assert TunedIndexConfig().with_title is None
    assert set(IndexConfig.model_fields) == set(TunedIndexConfig.model_fields)
