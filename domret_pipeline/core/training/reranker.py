"""A cross-encoder reranker adapted with LoRA (peft), trained with sentence-transformers.

The cross-encoder reads (query, passage) together and outputs one relevance logit. With no
pre-trained cross-encoder on the machine it starts from a bi-encoder backbone (by default
the packaged MiniLM) with a fresh scoring head; a configured cross-encoder folder or hub id
works the same way and keeps its head.

Adaptation is LoRA on the attention projections. The **scoring head** (the classifier, and
the BERT pooler in front of it) is fully trainable: it starts random, so a frozen head would
make the adapter learn against noise. peft's ``modules_to_save`` trains the head, saves it
inside the adapter and restores it when the adapter is loaded.

Losses (``RerankerSettings.loss``):

- ``mnrl`` (default): sentence-transformers' cross-encoder MultipleNegativesRankingLoss, a
  softmax over the positive, the mined negatives and ``in_batch_negatives`` positives of
  other queries (listwise in effect);
- ``lambda``: LambdaLoss (NDCG-weighted pairwise) over each query's candidate list;
- ``listnet``: ListNet over each query's candidate list;
- ``bce``: pointwise binary cross-entropy on (query, passage, 0/1) pairs, the option the
  issue tried first and that learned only the base rate on SciFact.

Distillation (:data:`DISTILL_LOSS`, not a config choice: only pretraining's ``distill`` option
uses it) trains with MarginMSE on examples that carry a teacher's scores
(``RerankExample.teacher``): the student's margin between the positive and each negative is
pulled to the teacher's.

Training keeps the best state on the dev reranking nDCG@10 (early stopping), then writes the
adapter (small) and a merged model for serving. It may also continue an adapter already
trained (``train_reranker(start=...)``): the labeled fine-tuning after pretraining on
pseudo-pairs (:mod:`.reranker_pretrain`). Loading a trained reranker and scoring with it
is query-time code: :mod:`..retrieval.cross_encoder`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..retrieval.cross_encoder import load_cross_encoder, merge_adapter
from .early_stopping import keep_best_callback, training_arguments
from .outcome import TrainerOutcome, count_parameters, loss_history

DEV_METRIC = "dev_ndcg@10"
LOSSES = ("mnrl", "lambda", "listnet", "bce")
DISTILL_LOSS = "margin_mse"  # examples with teacher scores only (reranker_pretrain's distill)
HEAD_MODULES = ("classifier", "pooler")


@dataclass
class RerankerSettings:
    """The reranker trainer's settings. The knobs have no default here: their one definition
    is ``config.RerankerConfig``, and ``RerankerConfig.settings()`` builds this (test_settings
    pins it). Only fields the config does not have keep a default."""

    max_length: int
    loss: str
    num_negatives: int  # mined negatives per training row (mnrl, bce) or per list (lambda, listnet)
    in_batch_negatives: int  # mnrl only: positives of other queries scored as negatives
    epochs: int
    learning_rate: float
    batch_size: int  # queries per step: memory grows with pairs per step x max_length^2
    warmup_ratio: float
    weight_decay: float
    early_stopping_patience: int
    seed: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str]
    train_pooler: bool
    train_precision: str  # "fp32", "bf16" or "auto" (bf16 where the CPU has it natively)
    logging_steps: int = 10  # not a run-config knob: how often the loss curve gets a point

    def as_dict(self) -> dict:
        return asdict(self)

    def head_modules(self) -> list[str]:
        return list(HEAD_MODULES) if self.train_pooler else ["classifier"]


@dataclass
class RerankExample:
    """One training query: its text, positive passages and mined negative passages, and
    optionally a teacher's scores (as logits) for ``positives[0]`` then each negative, which
    only distillation reads."""

    query: str
    positives: list[str]
    negatives: list[str]
    teacher: list[float] | None = None


@dataclass
class DevSample:
    """A dev query with the first stage's candidate passages (in retriever order) and the
    passages that are relevant (any chunk of a relevant document)."""

    query: str
    candidates: list[str]
    relevant: list[str]


@dataclass(kw_only=True)
class RerankerOutcome(TrainerOutcome):
    """``model`` is the CrossEncoder with the LoRA adapter still attached (best state restored)."""

    start_dev_score: float
    first_stage_dev_score: float


def attach_lora(model, settings: RerankerSettings):
    """Wrap the cross-encoder's transformer with a LoRA adapter; returns the peft model."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=settings.lora_r, lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout, target_modules=list(settings.lora_target_modules),
        modules_to_save=settings.head_modules(), bias="none",
    )
    model[0].model = get_peft_model(model[0].model, config)
    return model[0].model


def _training_dataset(examples: list[RerankExample], settings: RerankerSettings):
    """Rows in the layout each loss reads; a query needs a positive and a negative, except
    under the pointwise ``bce``, where a query without positives (nothing it should find) still
    labels its negatives."""
    from datasets import Dataset

    usable = [e for e in examples if e.negatives and (e.positives or settings.loss == "bce")]
    if not any(e.positives for e in usable):
        raise ValueError("no reranker training example has both a positive and a negative passage")
    k = settings.num_negatives
    if settings.loss == "mnrl":
        columns: dict[str, list] = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}}
        for e in usable:
            for positive in e.positives:
                columns["query"].append(e.query)
                columns["positive"].append(positive)
                for i in range(k):  # a fixed width: a short list repeats its own negatives
                    columns[f"negative_{i + 1}"].append(e.negatives[i % len(e.negatives)])
        return Dataset.from_dict(columns)
    if settings.loss == DISTILL_LOSS:
        if any(e.teacher is None or len(e.teacher) != len(e.negatives) + 1 for e in usable):
            raise ValueError("distillation needs a teacher score for each example's first positive and each negative")
        columns = {"query": [], "positive": [], **{f"negative_{i + 1}": [] for i in range(k)}, "label": []}
        for e in usable:
            picks = [i % len(e.negatives) for i in range(k)]  # a fixed width, as for mnrl
            columns["query"].append(e.query)
            columns["positive"].append(e.positives[0])
            for i, j in enumerate(picks):
                columns[f"negative_{i + 1}"].append(e.negatives[j])
            columns["label"].append([e.teacher[0]] + [e.teacher[1 + j] for j in picks])
        return Dataset.from_dict(columns)
    if settings.loss == "bce":
        columns = {"query": [], "passage": [], "label": []}
        for e in usable:
            for passage, label in [(p, 1.0) for p in e.positives] + [(n, 0.0) for n in e.negatives[:k]]:
                columns["query"].append(e.query)
                columns["passage"].append(passage)
                columns["label"].append(label)
        return Dataset.from_dict(columns)
    if settings.loss in ("lambda", "listnet"):
        columns = {"query": [], "docs": [], "labels": []}
        for e in usable:
            docs = e.positives + e.negatives[:k]
            columns["query"].append(e.query)
            columns["docs"].append(docs)
            columns["labels"].append([1.0] * len(e.positives) + [0.0] * len(e.negatives[:k]))
        return Dataset.from_dict(columns)
    raise ValueError(f"unknown reranker loss {settings.loss!r} (one of {', '.join(LOSSES)})")


def _loss(model, settings: RerankerSettings):
    from sentence_transformers.cross_encoder import losses

    if settings.loss == "mnrl":
        return losses.MultipleNegativesRankingLoss(model, num_negatives=settings.in_batch_negatives)
    if settings.loss == "lambda":
        return losses.LambdaLoss(model)
    if settings.loss == "listnet":
        return losses.ListNetLoss(model)
    if settings.loss == "bce":
        return losses.BinaryCrossEntropyLoss(model)
    if settings.loss == DISTILL_LOSS:
        return losses.MarginMSELoss(model)
    raise ValueError(f"unknown reranker loss {settings.loss!r} (one of {', '.join(LOSSES)})")


def dev_evaluator(samples: list[DevSample], batch_size: int = 32):
    """Reranking nDCG@10 of the first stage's candidates (positives outside the candidate list
    count as missed, as in serving). Reports the first stage's own order as ``dev_base_*``."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    rows = [{"query": s.query, "positive": s.relevant, "documents": s.candidates} for s in samples if s.relevant]
    if not rows:
        raise ValueError("no dev query has a relevant passage: cannot evaluate the reranker")
    return CrossEncoderRerankingEvaluator(rows, at_k=10, always_rerank_positives=False, name="dev",
                                          batch_size=batch_size, write_csv=False)


def train_reranker(
    base_model: str,
    examples: list[RerankExample],
    dev: list[DevSample],
    settings: RerankerSettings,
    work_dir: Path,
    progress_sink=None,
    progress_label: str = "training the reranker",
    start=None,
) -> RerankerOutcome:
    """Train ``base_model`` with a fresh LoRA adapter on ``examples``, keeping the best dev state.

    ``start``: a cross-encoder whose LoRA adapter (and head) is already attached, e.g. the
    outcome of an earlier call (pretraining on pseudo-pairs); training continues that adapter
    and head with a fresh optimizer instead of building a new one (``base_model`` is then only
    recorded). Its state before this call counts as the best so far: if no epoch beats it on
    dev, it is what comes back."""
    import torch
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from ..progress import trainer_progress_callback
    from ..retrieval.precision import resolve_train_precision

    train_precision = resolve_train_precision(settings.train_precision, "cpu")
    if start is None:
        model = load_cross_encoder(base_model, settings.max_length, settings.seed)
        attach_lora(model, settings)
    else:
        model = start
        model.max_seq_length = settings.max_length
    trainable, total = count_parameters(model)
    evaluator = dev_evaluator(dev, settings.batch_size)
    initial = evaluator(model)
    start_score, first_stage_score = float(initial[DEV_METRIC]), float(initial["dev_base_ndcg@10"])

    dataset = _training_dataset(examples, settings)
    torch.manual_seed(settings.seed)
    keep_best = keep_best_callback(model, DEV_METRIC, start_score, settings.early_stopping_patience,
                                   keep_start=start is not None)
    # A duplicate text in a batch would be scored as an in-batch negative of itself.
    sampler = BatchSamplers.NO_DUPLICATES if settings.loss == "mnrl" else BatchSamplers.BATCH_SAMPLER
    args = CrossEncoderTrainingArguments(**training_arguments(settings, work_dir, len(dataset), sampler,
                                                              bf16=train_precision == "bf16"))
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset, loss=_loss(model, settings),
                                  evaluator=evaluator,
                                  callbacks=[keep_best, trainer_progress_callback(progress_label, progress_sink)])
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    dev_score, best_epoch = keep_best.restore()
    model.eval()
    return RerankerOutcome(
        model=model, start_dev_score=start_score, first_stage_dev_score=first_stage_score, dev_score=dev_score,
        best_epoch=best_epoch, dev_history=keep_best.history, loss_history=loss_history(trainer),
        trainable_parameters=trainable, total_parameters=total, seconds=seconds, train_precision=train_precision,
    )


def save_adapter_and_merged(model, adapter_dir: Path, merged_dir: Path) -> None:
    """Write the adapter (LoRA weights + head) and then a merged copy for serving. The model
    keeps its adapter attached only until the merge: call this last."""
    model[0].model.save_pretrained(str(adapter_dir))
    merge_adapter(model)
    model.save(str(merged_dir))
