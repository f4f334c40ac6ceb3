"""Run config of what is trained: hard-negative mining, the bi-encoder, the reranker and the sentence selector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import dagster as dg
from pydantic import Field

from .base import GeneratorEndpoint, derive

if TYPE_CHECKING:
    from ..core.answers.extractive import AbstentionSettings, AnswerSettings
    from ..core.release.gate import GateSettings
    from ..core.training.bi_encoder import TrainingSettings
    from ..core.training.mining import MiningSettings
    from ..core.training.recipes import RecipeSettings
    from ..core.training.reranker import RerankerSettings
    from ..core.weak.pseudo_queries import PseudoQuerySettings


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
    pseudo_max_queries: int = Field(
        default=2000,
        description="Pseudo-query pairs (pseudo_queries) mined like the labeled queries, a seeded sample; 0: none. "
        "Enough for a pseudo stage of a few hundred steps; all of SciFact's ~19k pairs would cost the demo minutes "
        "of encoding and training on a CPU.",
    )

    def settings(self, **core_only) -> MiningSettings:
        from ..core.training.mining import MiningSettings

        return derive(self, MiningSettings, **core_only)


class PseudoQueriesConfig(GeneratorEndpoint):
    """``pseudo_queries``: weakly labeled pairs cut from the corpus (core/weak/pseudo_queries.py)."""

    kinds: list[str] = Field(
        default=["inverse_cloze", "title", "crop"],
        description="Some of inverse_cloze (a sentence against its chunk without it), title (a title against its "
        "document's first chunk), crop (two spans of one document, Contriever) and generated (a question a chat "
        "model writes for a chunk: needs generator_base_url and generator_model); another name fails the step.",
    )
    seed: int = Field(default=42, description="Same seed and corpus: the same pairs in the same order.")
    min_query_words: int = Field(default=4, description="Shorter queries are dropped (too_short).")
    max_query_words: int = Field(default=64, description="Longer queries are dropped (too_long); a crop's query is drawn within the bounds.")
    min_letter_share: float = Field(default=0.5, description="Letters among a query's non-space characters; below: "
                                    "boilerplate (mostly digits and punctuation).")
    max_query_repeats: int = Field(default=2, description="Documents a query's text may appear in (sentence or title); "
                                   "more: boilerplate (a repeated line).")
    max_jaccard: float = Field(default=0.5, description="Token Jaccard of query and positive passage above which the pair "
                               "is a near-copy and dropped.")
    crop_min_ratio: float = Field(default=0.1, description="Shortest crop, as a share of the document's words (Contriever: 0.1).")
    crop_max_ratio: float = Field(default=0.5, description="Longest crop, as a share of the document's words (Contriever: 0.5).")
    crop_max_overlap: float = Field(default=0.5, description="Share of the query crop's words the positive crop may also "
                                    "hold (below 1: never the same span).")
    crops_per_document: int = Field(default=1, description="Crop pairs drawn per document.")
    generated_per_document: int = Field(default=1, description="generated: chunks per document the question writer "
                                        "is asked about (one call each).")
    max_pairs_per_document: int = Field(default=4, description="Pairs kept per document, the kinds taken in turn.")
    max_pairs: int = Field(default=20_000, description="Pairs kept in all (a seeded sample when more survive).")
    allow_eval_documents: bool = Field(
        default=False, description="Keep pairs whose positive is a document relevant to a dev or test query. Leaks: "
        "the encoder would see the evaluation positives as positives, and dev and test figures become optimistic.",
    )

    def settings(self, **core_only) -> PseudoQuerySettings:
        from ..core.weak.pseudo_queries import PseudoQuerySettings

        return derive(self, PseudoQuerySettings, **core_only)


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
    recipes: list[str] = Field(
        default=["labels"],
        description="What the encoder trains on, each listed one trained and the best on dev nDCG@10 kept (a tie: "
        "the simplest, in this order): labels; pseudo (the mined pseudo-query rows); pseudo_then_labels (pseudo "
        "first, then labels from its weights). With no labeled train query, pseudo trains whatever is listed. "
        "The default stays labels alone (today's recipe): the pseudo recipes were not yet measured on the sample's "
        "or SciFact's dev when they were added; list them to have them tried.",
    )
    recipe_choice_corpus: Literal["full", "subset"] = Field(
        default="full", description="Where the choice between two or more recipes is made: full (the dev queries over "
        "every chunk, the untrained model scored too: one corpus encoding per recipe) or subset (the dev task the epochs "
        "are scored on). On SciFact the subset favoured the pseudo recipe that every chunk showed losing (BENCHMARKS.md).",
    )
    pseudo_epochs: int = Field(default=1, description="Epochs of the pseudo stage (recipes pseudo, pseudo_then_labels).")
    pseudo_max_rows: int = Field(default=20_000, description="Pseudo rows the pseudo stage trains on at most (a seeded sample).")

    def settings(self, **core_only) -> TrainingSettings:
        from ..core.training.bi_encoder import TrainingSettings

        return derive(self, TrainingSettings, **core_only)

    def recipe_settings(self) -> RecipeSettings:
        from ..core.training.recipes import RecipeSettings

        return derive(self, RecipeSettings)


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
        from ..core.training.reranker import RerankerSettings

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
    pretrain: list[str] = Field(
        default=["none"],
        description="Recipes tried, the best on dev reranking nDCG@10 kept (ties: none, else the first listed): none "
        "(labels only), pseudo (the adapter and head first trained on pseudo_queries' pairs with the labeled loss, then "
        "on the labels) and distill (first trained to match the fine-tuned retriever's own scores of those pairs' "
        "candidates, MarginMSE, then on the labels); another name fails the step. "
        "Default none only: each option listed is one more training run, and pretraining is not measured on the "
        "bundled sample (on SciFact pseudo won dev by +0.054, BENCHMARKS.md; configs/scifact.yaml lists it).",
    )
    pretrain_max_pairs: int = Field(
        default=2000, description="Pseudo-pairs pretraining reads at most (a seeded sample of pseudo_queries' pairs).",
    )
    pretrain_epochs: int = Field(default=1, description="Epochs over the pseudo-pairs before the labels (best dev epoch kept).")


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
    loss: Literal["mnrl", "lambda", "listnet", "bce"] = Field(
        default="bce",
        description="bce (pointwise binary cross-entropy): the selector's score must mean the same on every query, "
        "since its best score decides abstention and its per-sentence threshold is one number; it is also the one loss "
        "that learns from unanswerable training queries. On SciFact's dev (2 epochs, BENCHMARKS.md) it ranked "
        "evidence better than mnrl (sentence nDCG@10 0.8236 against 0.7859).",
    )
    num_negatives: int = Field(default=6, description="Non-evidence sentences per training query and step (bce: "
                               "each its own pair beside the query's evidence sentences).")
    batch_size: int = Field(default=32, description="Rows per step: (query, sentence) pairs under bce; queries "
                            "under mnrl (each 1 + num_negatives + in_batch_negatives pairs).")
    unanswerable_negatives: bool = Field(
        default=True, description="bce only: each training query whose relevant documents hold no evidence (an "
        "abstention case) adds the sentences of those documents as negatives, so the selector's best score can tell "
        "'the corpus holds no evidence'.",
    )
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

    def learns_from_unanswerable(self) -> bool:
        """Whether training queries without evidence join training: asked for, and a pointwise
        loss that can learn from a query with nothing to find."""
        return self.unanswerable_negatives and self.loss == "bce"
