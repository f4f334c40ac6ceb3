"""Run configuration of the assets (editable in the Dagster Launchpad).

Defaults point at the bundled sample handbook, so the graph runs with no configuration.

These classes are the one definition of every knob and its default. The core takes plain
dataclasses (``TrainingSettings``, ``RerankerSettings``, ``MiningSettings``, ``AnswerSettings``,
``GateSettings``) that hold no default for a knob defined here: :func:`derive` fills them from a
config, and ``test_settings`` pins that each of their fields has exactly one default source.
"""

from .base import SAMPLE_DIR, derive
from .data import (BM25Config, ChunkingConfig, CorpusConfig, IndexConfig, LabelsConfig, ShardEncodingConfig,
                   TunedIndexConfig, _DenseIndexConfig, corpus_shard_count)
from .evaluation import RENAMED_KEYS, EvaluationConfig
from .serving import ServingSelectionConfig
from .training import (CrossEncoderTrainingConfig, FineTuneConfig, MiningConfig, PseudoQueriesConfig, RerankerConfig,
                       SelectorConfig)

# Every core settings dataclass and the config that defines its knobs (with the prefix of their
# names there): test_settings walks this list, and fails on a core ``*Settings`` missing from it.
SETTINGS_SOURCES = [
    (FineTuneConfig, "domret_pipeline.core.training.bi_encoder:TrainingSettings", ""),
    (FineTuneConfig, "domret_pipeline.core.training.recipes:RecipeSettings", ""),
    (RerankerConfig, "domret_pipeline.core.training.reranker:RerankerSettings", ""),
    (SelectorConfig, "domret_pipeline.core.training.reranker:RerankerSettings", ""),
    (MiningConfig, "domret_pipeline.core.training.mining:MiningSettings", ""),
    (PseudoQueriesConfig, "domret_pipeline.core.weak.pseudo_queries:PseudoQuerySettings", ""),
    (ServingSelectionConfig, "domret_pipeline.core.answers.extractive:AnswerSettings", "answer_"),
    (ServingSelectionConfig, "domret_pipeline.core.answers.extractive:AbstentionSettings", "abstention_"),
    (EvaluationConfig, "domret_pipeline.core.release.gate:GateSettings", ""),
    (IndexConfig, "domret_pipeline.core.retrieval.index_build:CompressedSettings", "compressed_"),
]

# Core settings the serving layer reads from the environment (no run config reaches a query):
# their defaults are the dataclass's own, and ``from_env`` sets only what the environment names.
ENV_SETTINGS = ["domret_pipeline.core.audit.store:AuditSettings"]

__all__ = [
    "SAMPLE_DIR", "derive", "BM25Config", "ChunkingConfig", "CorpusConfig", "IndexConfig", "LabelsConfig",
    "TunedIndexConfig", "ShardEncodingConfig", "corpus_shard_count", "RENAMED_KEYS", "EvaluationConfig", "ServingSelectionConfig", "CrossEncoderTrainingConfig",
    "FineTuneConfig", "MiningConfig", "PseudoQueriesConfig", "RerankerConfig", "SelectorConfig", "SETTINGS_SOURCES", "ENV_SETTINGS",
]
