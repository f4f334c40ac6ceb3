"""Contrastive fine-tuning of the bi-encoder with sentence-transformers' trainer.

Loss: MultipleNegativesRankingLoss over (query, positive, negative_1..k) rows: each query is
scored against its positive, its mined negatives and every other passage in the batch
(in-batch negatives). ``CachedMultipleNegativesRankingLoss`` (GradCache) gives large
effective batches in bounded memory. Batches never hold the same text twice
(``BatchSamplers.NO_DUPLICATES``), since a duplicate would be a false in-batch negative.

The dev split is evaluated after every epoch; the best state is kept in memory and restored
at the end, and training stops after ``early_stopping_patience`` epochs without
improvement. Optionally the encoder is adapted with LoRA (peft) instead of fully: then
the adapter is saved on its own and merged into the weights for serving.

Training runs on the CPU unless ``device`` says ``cuda`` or ``auto`` (the GPU when torch sees
one); the trainer, the dev evaluation and the kept state follow the model's device.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .early_stopping import keep_best_callback, training_arguments
from .outcome import TrainerOutcome, count_parameters, loss_history

DEV_METRIC = "dev_cosine_ndcg@10"
LOSS_DIRECTIONS = ("query_to_doc", "doc_to_query", "query_to_query", "doc_to_doc")


@dataclass
class TrainingSettings:
    """The trainer's settings. The knobs have no default here: their one definition, with its
    default and description, is ``config.FineTuneConfig``, and ``FineTuneConfig.settings()``
    builds this (test_settings pins it). Only fields the config does not have keep a default."""

    epochs: int
    learning_rate: float
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    max_seq_length: int
    loss: str  # "mnrl" or "cached_mnrl"
    cached_mini_batch_size: int
    early_stopping_patience: int
    seed: int
    lora: bool
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    # Which similarities the contrastive loss normalises over (sentence-transformers' MNRL
    # ``directions``): the classic loss is query_to_doc only; adding doc_to_query,
    # query_to_query and doc_to_doc is GTE's "improved contrastive loss".
    loss_directions: list[str]
    device: str  # "cpu", "cuda" or "auto" (cuda when one is visible)
    train_precision: str  # "fp32", "bf16" or "auto" (bf16 where the device has it natively)
    # Keep the word embeddings and the lowest ``freeze_layers`` transformer layers fixed: the
    # backward pass then stops below the first trained layer, which is most of what a CPU step
    # costs beyond the two forward passes of the cached loss.
    freeze_layers: int
    logging_steps: int = 5  # not a run-config knob: how often the loss curve gets a point

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class DevSet:
    """A retrieval task for evaluation during training: queries, a corpus and relevant ids."""

    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]


@dataclass(kw_only=True)
class TrainingOutcome(TrainerOutcome):
    """``model`` is the SentenceTransformer, best state restored (LoRA merged)."""

    base_dev_score: float
    adapter_dir: str | None = None


def training_rows(rows: list[tuple[str, str, list[str]]], num_negatives: int):
    """A ``datasets.Dataset`` with columns anchor, positive, negative_1..k.

    Rows with fewer negatives than ``num_negatives`` repeat their own negatives (a row needs a
    fixed width); rows with none are dropped by the caller beforehand."""
    from datasets import Dataset

    columns: dict[str, list[str]] = {"anchor": [], "positive": []}
    for i in range(num_negatives):
        columns[f"negative_{i + 1}"] = []
    for anchor, positive, negatives in rows:
        if not negatives:
            raise ValueError(f"training row for {anchor[:40]!r} has no negative")
        columns["anchor"].append(anchor)
        columns["positive"].append(positive)
        for i in range(num_negatives):
            columns[f"negative_{i + 1}"].append(negatives[i % len(negatives)])
    return Dataset.from_dict(columns)


def dev_evaluator(dev: DevSet, batch_size: int, autocast_device: str | None = None):
    """The dev retrieval evaluator. With ``autocast_device`` the dev pass runs under bf16
    autocast too: the trainer's own autocast covers the loss only, and on a CPU the per-epoch
    encoding of the dev corpus costs as much as several training steps."""
    import torch
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    class DevEvaluator(InformationRetrievalEvaluator):
        def __call__(self, *args, **kwargs):
            if autocast_device is None:
                return super().__call__(*args, **kwargs)
            with torch.autocast(autocast_device.split(":")[0], dtype=torch.bfloat16):
                return super().__call__(*args, **kwargs)

    return DevEvaluator(
        dev.queries, dev.corpus, dev.relevant, name="dev", batch_size=batch_size, write_csv=False,
        mrr_at_k=[10], ndcg_at_k=[10], accuracy_at_k=[1], precision_recall_at_k=[10], map_at_k=[10],
        score_functions=None, main_score_function="cosine",
    )


def freeze_lower_layers(model, layers: int) -> None:
    """Fix the embeddings and the lowest ``layers`` encoder layers of a BERT-like transformer."""
    if layers <= 0:
        return
    backbone = model[0].auto_model
    blocks = getattr(getattr(backbone, "encoder", None), "layer", None)
    if blocks is None or not hasattr(backbone, "embeddings"):
        raise ValueError(f"freeze_layers {layers}: {type(backbone).__name__} has no embeddings/encoder.layer to freeze")
    if layers > len(blocks):
        raise ValueError(f"freeze_layers {layers}: the encoder has only {len(blocks)} layers")
    for module in [backbone.embeddings, *blocks[:layers]]:
        for parameter in module.parameters():
            parameter.requires_grad_(False)


def resolve_device(device: str) -> str:
    """``auto`` is cuda when torch sees a GPU, else cpu; asking for cuda without one is an error
    rather than a silent fall back to a run ten times slower."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"training device {device!r} asked for, but torch sees no GPU (use 'cpu' or 'auto')")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown training device {device!r}: cpu, cuda or auto")
    return device


def _apply_lora(model, settings: TrainingSettings):
    from peft import LoraConfig, get_peft_model

    transformer = model[0]
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                        target_modules=list(settings.lora_target_modules), bias="none")
    transformer.model = get_peft_model(transformer.model, config)
    return transformer.model


def train_encoder(
    base_model: str,
    rows: list[tuple[str, str, list[str]]],
    num_negatives: int,
    dev: DevSet,
    settings: TrainingSettings,
    work_dir: Path,
    progress_sink=None,
) -> TrainingOutcome:
    """Fine-tune ``base_model`` on ``rows``; ``progress_sink`` receives progress lines (steps,
    elapsed, estimate left, dev figures after each epoch)."""
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses
    from transformers.trainer_callback import PrinterCallback

    from ..progress import trainer_progress_callback
    from ..retrieval.precision import resolve_train_precision

    # Settings errors surface before minutes of model loading and base evaluation.
    unknown = [d for d in settings.loss_directions if d not in LOSS_DIRECTIONS]
    if unknown or "query_to_doc" not in settings.loss_directions:
        raise ValueError(f"loss_directions {list(settings.loss_directions)}: each of {', '.join(LOSS_DIRECTIONS)}, "
                         "and query_to_doc always (it is what retrieval does)")
    device = resolve_device(settings.device)
    train_precision = resolve_train_precision(settings.train_precision, device)
    torch.manual_seed(settings.seed)
    model = SentenceTransformer(base_model, device=device, local_files_only=Path(base_model).is_dir())
    model.max_seq_length = settings.max_seq_length
    evaluator = dev_evaluator(dev, settings.batch_size, device if train_precision == "bf16" else None)
    base_dev_score = float(evaluator(model)[DEV_METRIC])

    peft_model = _apply_lora(model, settings) if settings.lora else None
    if settings.freeze_layers and settings.lora:
        raise ValueError("freeze_layers and lora both limit what trains: choose one")
    freeze_lower_layers(model, settings.freeze_layers)
    trainable, total = count_parameters(model)

    directions = tuple(settings.loss_directions)
    if settings.loss == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=settings.cached_mini_batch_size, directions=directions)
    elif settings.loss == "mnrl":
        loss = losses.MultipleNegativesRankingLoss(model, directions=directions)
    else:
        raise ValueError(f"unknown loss {settings.loss!r} (mnrl or cached_mnrl)")

    keep_best = keep_best_callback(model, DEV_METRIC, base_dev_score, settings.early_stopping_patience)
    args = SentenceTransformerTrainingArguments(
        **training_arguments(settings, work_dir, len(rows), BatchSamplers.NO_DUPLICATES, use_cpu=device == "cpu",
                              bf16=train_precision == "bf16"))
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=training_rows(rows, num_negatives), loss=loss,
        evaluator=evaluator, callbacks=[keep_best, trainer_progress_callback("training the encoder", progress_sink)],
    )
    trainer.remove_callback(PrinterCallback)  # the loss and dev history go to MLflow and the model card instead
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    # When no epoch beat the base model on dev, what training produced is returned and said so
    # (the embedding_checkpoint asset check warns; the release gate will not promote it).
    dev_score, best_epoch = keep_best.restore()
    adapter_dir = None
    if peft_model is not None:
        adapter_dir = str(work_dir / "lora_adapter")
        peft_model.save_pretrained(adapter_dir)  # the small adapter, kept apart
        model[0].model = peft_model.merge_and_unload()  # merged weights for serving
    return TrainingOutcome(
        model=model, base_dev_score=base_dev_score, dev_score=dev_score,
        best_epoch=best_epoch, dev_history=keep_best.history, loss_history=loss_history(trainer),
        trainable_parameters=trainable, total_parameters=total, seconds=seconds, adapter_dir=adapter_dir,
        train_precision=train_precision,
    )
