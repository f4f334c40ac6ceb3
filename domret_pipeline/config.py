"""Run configuration of the assets (editable in the Dagster Launchpad).

Defaults point at the bundled sample handbook, so the graph runs with no configuration.

These classes are the one definition of every knob and its default. The core takes plain
dataclasses (``TrainingSettings``, ``RerankerSettings``, ``MiningSettings``, ``AnswerSettings``,
``GateSettings``) that hold no default for a knob defined here: :func:`derive` fills them from a
config, and ``test_settings`` pins that each of their fields has exactly one default source.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from .core.answers.extractive import AbstentionSettings, AnswerSettings
    from .core.release.gate import GateSettings
    from .core.training.bi_encoder import TrainingSettings
    from .core.training.mining import MiningSettings
    from .core.training.reranker import RerankerSettings

SAMPLE_DIR = Path(__file__).parent / "sample_data" / "handbook"


def derive(config: dg.Config, settings_cls, prefix: str = "", **core_only):
    """A core settings dataclass filled from ``config``: each of its fields named
    ``prefix + name`` in the config takes the config's value; ``core_only`` may set fields the
    config does not define (which keep their core default otherwise). Setting a config knob
    through ``core_only`` is refused: it would be a second source."""
    knobs = {f.name for f in dataclasses.fields(settings_cls) if prefix + f.name in type(config).model_fields}
    clash = knobs & set(core_only)
    if clash:
        raise TypeError(f"{sorted(clash)} are {type(config).__name__} knobs: set them on the config")
    # Deep copies: the dataclass must not share a list with the (frozen) config.
    return settings_cls(**{n: copy.deepcopy(getattr(config, prefix + n)) for n in knobs}, **core_only)


class CorpusConfig(dg.Config):
    path: str = Field(
        default=str(SAMPLE_DIR / "corpus.jsonl"),
        description="BEIR corpus.jsonl (or its folder), a CSV/TSV/Parquet file, or a folder of .txt/.md files.",
    )
    format: Literal["auto", "jsonl", "csv", "parquet", "folder"] = "auto"
    id_field: str = Field(default="_id", description="Column/field holding the document id.")
    text_field: str = Field(default="text", description="Column/field holding the document text.")
    title_field: str = Field(default="title", description="Column/field holding the title (optional).")
    on_bad_rows: Literal["fail", "quarantine"] = Field(
        default="fail", description="'fail' stops on the first bad file; 'quarantine' sets bad rows aside and reports them."
    )
    # Access control (core/data/groups.py): groups from the field, else a path prefix, else the default.
    groups_field: Optional[str] = Field(default=None, description="Field/column of a document's access groups (a list, "
                                        "or names separated by , ; |).")
    path_groups: dict[str, list[str]] = Field(default={}, description="Path prefix -> access groups (the longest "
                                              "prefix of the id wins; a folder corpus's id is the relative path).")
    default_groups: list[str] = Field(default=["public"], description="Groups of documents that get none from the field "
                                      "or a path rule; 'public' is readable by every request.")


class ChunkingConfig(dg.Config):
    chunk_tokens: int = Field(default=200, description="Token budget of a chunk (model tokenizer, no special tokens).")
    overlap_tokens: int = Field(default=32, description="Tokens of trailing sentences repeated at the start of the next chunk.")


class LabelsConfig(dg.Config):
    queries_path: str = str(SAMPLE_DIR / "queries.jsonl")
    qrels_path: str = Field(default=str(SAMPLE_DIR / "qrels"), description="A qrels TSV, or a folder of them.")
    evidence_path: Optional[str] = Field(
        default=str(SAMPLE_DIR / "evidence.jsonl"), description="Sentence-level evidence (optional)."
    )
    dev_fraction: float = 0.2
    test_fraction: float = 0.2
    split_salt: str = Field(default="domret", description="Changing it re-draws every split; keep it fixed.")
    frozen_test_queries_path: Optional[str] = Field(
        default=None, description="External frozen test queries; replaces the hashed test split."
    )
    frozen_test_qrels_path: Optional[str] = None
    frozen_test_evidence_path: Optional[str] = None
    drop_train_repeats_of_frozen_test: bool = Field(
        default=False,
        description="Drop train/dev queries whose text repeats a test query (the test split stays whole); "
        "counted and listed in the metadata. Off: such repeats fail the frozen_split_is_clean check.",
    )
    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    use_feedback: bool = Field(default=False, description="Merge feedback labels from the feedback store into the train split.")
    feedback_max_id: Optional[int] = Field(default=None, description="Use feedback labels up to this id (None: all).")
    training_principal: Optional[list[str]] = Field(default=None, description="Access groups training reads as (None: "
                                                    "public only); core/training/access.py says where it applies.")


class _DenseIndexConfig(dg.Config):
    exact_max_vectors: int = Field(default=50_000, description="Up to this many chunks the index is exact (flat).")
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description="Inference precision of the encoder: auto serves the fastest path that loses at most "
        "max_precision_loss dev nDCG@10 against fp32 on this machine (parity check), else fp32.",
    )
    max_precision_loss: float = Field(default=0.005, description="Dev nDCG@10 a faster precision may lose against fp32.")
    parity_pool_chunks: int = Field(
        default=1000, description="Chunks in the parity check's dev pool: the dev queries' relevant chunks plus a sample."
    )
    use_embedding_cache: bool = Field(
        default=True, description="Read and extend the embedding cache (encoder hash, precision, text): encode only new chunks.",
    )


class IndexConfig(_DenseIndexConfig):
    """``base_faiss_index``. Its ``with_title`` is the run's one source of how a passage is
    rendered: its manifest records it, and the training rows, the dev sets, the tuned index,
    the reranker and the serving bundle all take it from there."""

    with_title: bool = Field(default=True, description="Encode each chunk with its document title in front.")


class TunedIndexConfig(_DenseIndexConfig):
    """``faiss_index``: as the base index, except that passages are rendered as the base index
    rendered them (the checkpoint was trained on those texts)."""

    with_title: Optional[bool] = Field(
        default=None, description="Leave unset: the base index's with_title (the checkpoint was trained on those texts). "
        "A value that disagrees with it is an error.",
    )


class BM25Config(dg.Config):
    k1: float = 1.2
    b: float = 0.75


class EvaluationConfig(dg.Config):
    split: Literal["train", "dev", "test"] = Field(default="test", description="The frozen split to report on.")
    k_values: list[int] = [10, 100]
    latency_queries: int = Field(default=100, description="How many queries to time one at a time (0: skip).")
    principal: Optional[list[str]] = Field(default=None, description="Access groups every evaluated system searches "
                                           "and answers as (None: public only, as a request without one); recorded.")
    generator: Literal["extractive", "openai"] = Field(
        default="extractive",
        description="How answers are written: extractive (offline, default) or an OpenAI-compatible endpoint.",
    )
    generator_base_url: str = Field(default="", description="OpenAI-compatible base URL, e.g. http://localhost:8000/v1.")
    generator_model: str = ""
    generator_api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API key.")
    # The release gate (core/release/gate.py): per gated metric, a paired bootstrap interval of
    # challenger − reference over the frozen queries; a metric fails when its lower bound is
    # below −margin. The margins are losses too small to matter (README, "Release gate": 0.02
    # nDCG@10 is one query in 50 losing its only relevant document from the top 10, or about
    # one in 18 moving it from rank 1 to rank 2; 0.05 on an answer metric is one query in 20).
    # They were the tolerances on the mean (``tolerance_*``) before the gate had intervals.
    margin_ndcg: float = Field(default=0.02, description="Release gate: nDCG@10 loss against the champion the "
                               "challenger's interval must rule out exceeding (non-inferiority margin).")
    margin_citation_precision: float = Field(default=0.05, description="Release gate: non-inferiority margin on citation precision.")
    margin_citation_recall: float = Field(default=0.05, description="Release gate: non-inferiority margin on citation recall.")
    margin_faithfulness: float = Field(default=0.05, description="Release gate: non-inferiority margin on faithfulness.")
    margin_abstention_accuracy: float = Field(default=0.05, description="Release gate: non-inferiority margin on abstention accuracy.")
    bootstrap_resamples: int = Field(
        default=10_000, description="Release gate: bootstrap resamples of the frozen queries (10,000 keeps the bounds' "
        "own resampling noise under 0.003 on 165 queries).",
    )
    confidence_level: float = Field(
        default=0.95, description="Release gate: two-sided level of the intervals (0.95: the lower bound is a one-sided 97.5 % bound).",
    )
    bootstrap_seed: int = Field(default=0, description="Release gate: seed of the resampling (the same inputs give the same verdict).")
    blocking_slices: list[str] = Field(
        default=[], description="Release gate: query slices (the labels' `slice` field) whose own intervals may fail "
        "the gate; every other slice's verdict is informational.",
    )
    first_release_rule: Literal["not_worse", "non_inferiority"] = Field(
        default="not_worse", description="Release gate with no champion yet (the base model is the reference): "
        "not_worse fails a metric only when its interval lies wholly below -margin (the challenger is shown worse "
        "than the base); non_inferiority applies the champion rule (the lower bound must clear -margin).",
    )

    def gate_settings(self, **core_only) -> GateSettings:
        from .core.release.gate import GateSettings

        return derive(self, GateSettings, **core_only)


# Settings renamed when their meaning changed: a run config still using the old name gets the
# new one in its error message (run_config.py) instead of a bare "unknown key".
RENAMED_KEYS = {
    f"tolerance_{m}": f"margin_{m}"
    for m in ("ndcg", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy")
}


class MiningConfig(dg.Config):
    retriever: Literal["base", "champion"] = Field(
        default="base",
        description="Who ranks the candidates: this run's base index, or the registry's serving champion (recorded).",
    )
    range_min: int = Field(default=10, description="First rank (0-based) of the candidate window: skips the top, where unlabeled answers hide.")
    range_max: int = Field(default=100, description="End of the candidate window (exclusive).")
    max_positive_ratio: float = Field(
        default=0.95, description="Drop a candidate scoring above this fraction of the query's weakest positive (TopK-PercPos)."
    )
    num_negatives: int = Field(default=3, description="Negatives kept per query (the best survivors by dense score).")
    use_bm25: bool = Field(default=False, description="Also take candidates from BM25's ranking.")
    fill_random: bool = Field(
        default=False,
        description="Give a query whose candidates all failed the filters one random non-relevant chunk, instead of dropping it.",
    )
    feedback_negatives_path: Optional[str] = Field(
        default=None, description="JSONL of feedback labels; rows labeled 'not_relevant' become confirmed negatives."
    )
    use_feedback: bool = Field(default=False, description="'not_relevant' labels of the feedback store become confirmed negatives.")
    feedback_max_id: Optional[int] = Field(default=None, description="Use feedback labels up to this id (None: all).")
    cross_encoder: Optional[str] = Field(
        default=None,
        description="Cross-encoder false-negative check: None (off), 'champion' (the registry champion's reranker, "
        "recorded by version and hash) or a trained cross-encoder folder / hub id.",
    )
    cross_encoder_candidates: int = Field(
        default=10, description="Best surviving candidates per query the cross-encoder reads (only these can become negatives)."
    )
    cross_encoder_margin: float = Field(
        default=0.0, description="Drop a candidate the cross-encoder scores above the weakest positive minus this margin."
    )
    cross_encoder_max_length: int = Field(default=256, description="Tokens of query + passage, for a folder / hub id.")

    def settings(self, **core_only) -> MiningSettings:
        from .core.training.mining import MiningSettings

        return derive(self, MiningSettings, **core_only)


class FineTuneConfig(dg.Config):
    # 4 epochs at 2e-4: the recipe chosen on SciFact's dev split under a CPU budget (BENCHMARKS,
    # "A recipe this CPU can afford"), which also lifts the bundled sample's dev nDCG@10 the
    # most of those tried there. The former 1 epoch at 2e-5 barely moved the base model.
    epochs: int = 4
    learning_rate: float = 2e-4
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_seq_length: int = 256
    loss: Literal["mnrl", "cached_mnrl"] = Field(
        default="mnrl", description="MultipleNegativesRankingLoss, or its cached (GradCache) form for large batches on CPU."
    )
    cached_mini_batch_size: int = 16
    early_stopping_patience: int = Field(default=1, description="Epochs without dev improvement before stopping.")
    seed: int = 42
    lora: bool = Field(default=False, description="Adapt the encoder with LoRA instead of full fine-tuning.")
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = ["query", "key", "value", "dense"]
    loss_directions: list[str] = Field(
        default=["query_to_doc"],
        description="Similarities the contrastive loss normalises over, of query_to_doc, doc_to_query, "
        "query_to_query and doc_to_doc; all four is GTE's improved contrastive loss.",
    )
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="Where to train: auto picks the GPU when torch sees one."
    )
    train_precision: Literal["auto", "fp32", "bf16"] = Field(
        default="fp32", description="Mixed precision of training: bf16 where the device supports it natively (auto), or fp32."
    )
    freeze_layers: int = Field(
        default=0, description="Keep the embeddings and this many of the lowest transformer layers fixed "
        "(a cheaper backward pass on a CPU)."
    )
    dev_candidates_per_query: int = Field(
        default=10, description="Base top-k chunks per dev query in the dev corpus evaluated after every epoch."
    )
    dev_random_chunks: int = Field(default=500, description="Random chunks added to the dev corpus.")
    log_model_to_mlflow: bool = Field(default=True, description="Log the checkpoint folder as MLflow artifacts.")

    def settings(self, **core_only) -> TrainingSettings:
        from .core.training.bi_encoder import TrainingSettings

        return derive(self, TrainingSettings, **core_only)


class CrossEncoderTrainingConfig(dg.Config):
    """The cross-encoder trainer's knobs (``RerankerSettings``), shared by the two models it
    trains: the passage reranker (:class:`RerankerConfig`) and the sentence selector
    (:class:`SelectorConfig`, which changes some defaults)."""

    base_model: str = Field(
        default="packaged:all-MiniLM-L6-v2",
        description="Where the cross-encoder starts: the packaged MiniLM backbone (a fresh scoring head), "
        "a local cross-encoder folder or a hub id (downloads must be allowed for a hub id).",
    )
    max_length: int = Field(default=256, description="Tokens of query + passage the cross-encoder reads.")
    loss: Literal["mnrl", "lambda", "listnet", "bce"] = Field(
        default="mnrl",
        description="mnrl: softmax over positive, mined and in-batch negatives; lambda: LambdaLoss; "
        "listnet: ListNet; bce: pointwise binary cross-entropy.",
    )
    num_negatives: int = Field(default=3, description="Mined negatives per training row (or per list).")
    in_batch_negatives: int = Field(default=3, description="mnrl: positives of other queries scored as negatives.")
    epochs: int = Field(default=1, description="Epochs of reranker training (one keeps the demo short; raise it for real corpora).")
    learning_rate: float = 5e-4
    batch_size: int = Field(
        default=8,
        description="Queries per step. Each scores 1 + num_negatives + in_batch_negatives pairs; on CPU, activation "
        "memory grows with pairs x max_length^2 (16 queries x 8 pairs x 256 tokens needed 17 GB).",
    )
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    early_stopping_patience: int = Field(default=1, description="Epochs without dev reranking gain before stopping.")
    seed: int = 42
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = Field(default=["query", "key", "value"], description="Attention projections to adapt.")
    train_pooler: bool = Field(default=True, description="Train the BERT pooler with the classifier as the scoring head.")
    train_precision: Literal["auto", "fp32", "bf16"] = Field(
        default="fp32", description="Mixed precision of training: bf16 where the device supports it natively (auto), or fp32."
    )
    log_model_to_mlflow: bool = Field(default=True, description="Log the adapter and the merged model to MLflow.")

    def settings(self, **core_only) -> RerankerSettings:
        from .core.training.reranker import RerankerSettings

        return derive(self, RerankerSettings, **core_only)


class RerankerConfig(CrossEncoderTrainingConfig):
    candidates: int = Field(default=20, description="The tuned retriever's top-k chunks per training query.")
    max_positive_ratio: Optional[float] = Field(
        default=None, description="Drop candidates scoring above this fraction of the weakest positive (None: keep all)."
    )
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description="Inference precisions to check against fp32 on the dev reranking task (parity check); the ones "
        "that pass are offered to serving_config, which picks within the latency budget.",
    )
    max_precision_loss: float = Field(default=0.005, description="Dev nDCG@10 a faster precision may lose against fp32.")


class SelectorConfig(CrossEncoderTrainingConfig):
    """The evidence-trained sentence selector (``core/answers/selector.py``): the reranker's
    trainer on (query, sentence) pairs. Defaults differ from the reranker's where sentences
    differ from passages (shorter; more examples per query, so more epochs pay)."""

    start_from: Literal["base_model", "reranker"] = Field(
        default="reranker",
        description="reranker: LoRA on the trained passage reranker (its head too); base_model: a fresh scoring head "
        "on base_model, adapted with LoRA. Chosen on the sample's dev (BENCHMARKS.md): the same dev sentence "
        "ranking, a higher dev F1 at the chosen threshold.",
    )
    max_length: int = Field(default=128, description="Tokens of query + sentence the selector reads.")
    epochs: int = Field(default=4, description="Epochs of selector training (best dev epoch kept).")
    early_stopping_patience: int = Field(default=2, description="Epochs without dev sentence-ranking gain before stopping.")
    max_negatives: int = Field(
        default=8, description="Non-evidence sentences kept per training query (the trainer draws num_negatives per row)."
    )
    mined_negative_sentences: bool = Field(
        default=True, description="Add sentences of the query's mined negative passages (hard_negatives) to the "
        "non-evidence sentences of its relevant documents, interleaved.",
    )
    log_model_to_mlflow: bool = Field(default=False, description="Log the merged selector model to MLflow.")


class ServingSelectionConfig(dg.Config):
    candidates: list[int] = Field(default=[20], description="Reranking depths tried on dev, e.g. [20, 50].")
    rerank_only: bool = Field(default=True, description="Try the reranker's score alone as well as the fusions.")
    fusion_weights: list[float] = Field(
        default=[0.25, 0.5, 1.0, 2.0], description="Weights w of z(first stage) + w * z(reranker) tried on dev."
    )
    depth: int = Field(default=100, description="Chunks each first-stage retriever returns.")
    rrf_k: int = 60
    min_gain: float = Field(default=0.0, description="Dev nDCG@10 a stage must add to be switched on.")
    top_n: int = Field(default=10, description="Passages returned to the caller.")
    allow_rerank: bool = Field(default=True, description="False: never serve the reranker, whatever dev says.")
    latency_budget_ms: Optional[float] = Field(
        default=300.0,
        description="p95 milliseconds per query (one at a time) a reranking configuration may take to serve; "
        "configurations over it are ruled out on dev. None: no budget.",
    )
    budget_queries: int = Field(default=30, description="Dev queries timed one at a time per reranking configuration.")
    score_over_budget: bool = Field(
        default=True, description="Score on dev the reranker variants ruled out by the budget too (for the report); "
        "false skips their dev pass, most of this step's time on a CPU."
    )
    rerank_max_lengths: list[int] = Field(
        default=[], description="Reranker token limits tried on dev (empty: the one it was trained with)."
    )
    answer_scorer: Literal["auto", "reranker", "encoder", "selector"] = Field(
        default="auto", description="What scores answer sentences: auto tries the bi-encoder, the reranker and the "
        "sentence selector (when it was trained) on dev and keeps the best.",
    )
    answer_passages: int = Field(default=3, description="Top passages whose sentences the answer step reads.")
    answer_max_sentences: int = Field(default=2, description="Sentences (each citing itself) in an answer scored by the "
                                      "bi-encoder or the reranker (a fixed count).")
    selector_max_sentences: int = Field(default=4, description="The most sentences an answer scored by the sentence "
                                        "selector cites; its per-sentence threshold (chosen on dev) decides how many.")
    selector_threshold_candidates: int = Field(
        default=20, description="Quantiles of the dev answers' sentence scores tried as the selector's per-sentence "
        "threshold, beside its own (dev F1 on the relevant documents); 0 keeps its own.",
    )
    abstention_target: Literal["accuracy", "citation_precision"] = Field(
        default="accuracy", description="What the dev-calibrated abstention threshold aims for: the best abstention accuracy, "
        "or the lowest threshold whose answered queries cite with at least abstention_min_citation_precision.",
    )
    abstention_min_citation_precision: float = Field(
        default=0.5, description="With abstention_target citation_precision: the dev citation precision to reach."
    )

    def answer_settings(self, **core_only) -> AnswerSettings:
        from .core.answers.extractive import AnswerSettings

        return derive(self, AnswerSettings, "answer_", **core_only)

    def abstention_settings(self) -> AbstentionSettings:
        from .core.answers.extractive import AbstentionSettings

        return derive(self, AbstentionSettings, "abstention_")


# Every core settings dataclass and the config that defines its knobs (with the prefix of their
# names there): test_settings walks this list, and fails on a core ``*Settings`` missing from it.
SETTINGS_SOURCES = [
    (FineTuneConfig, "domret_pipeline.core.training.bi_encoder:TrainingSettings", ""),
    (RerankerConfig, "domret_pipeline.core.training.reranker:RerankerSettings", ""),
    (SelectorConfig, "domret_pipeline.core.training.reranker:RerankerSettings", ""),
    (MiningConfig, "domret_pipeline.core.training.mining:MiningSettings", ""),
    (ServingSelectionConfig, "domret_pipeline.core.answers.extractive:AnswerSettings", "answer_"),
    (ServingSelectionConfig, "domret_pipeline.core.answers.extractive:AbstentionSettings", "abstention_"),
    (EvaluationConfig, "domret_pipeline.core.release.gate:GateSettings", ""),
]
