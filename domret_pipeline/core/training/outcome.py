"""What a trainer returns: the fields the bi-encoder's and the reranker's outcomes share, and
the two readings both trainers take of their model and trainer (parameter counts, loss curve)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(kw_only=True)
class TrainerOutcome:
    """A finished training run; each trainer's outcome adds its own fields (keyword-only, so a
    subclass may add fields without defaults after ``train_precision``)."""

    model: object  # the trained model, its best dev state restored
    dev_score: float  # of the returned model: the best epoch, or the last when none beat the start
    best_epoch: float
    dev_history: list[dict]
    loss_history: list[dict]
    trainable_parameters: int
    total_parameters: int
    seconds: float
    train_precision: str = "fp32"  # what training ran in, after resolving auto


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def loss_history(trainer) -> list[dict]:
    """The training loss a ``transformers.Trainer`` logged: step, epoch and loss per point."""
    return [
        {"step": int(e["step"]), "epoch": float(e.get("epoch", 0.0)), "loss": float(e["loss"])}
        for e in trainer.state.log_history if "loss" in e
    ]
