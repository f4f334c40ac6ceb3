"""Trainer plumbing shared by the bi-encoder and the reranker: the common training arguments,
and best-on-dev training: the dev metric is read after every evaluation, the best weights are kept in memory
(no checkpoint folders on disk) and training stops after ``patience`` evaluations without
improvement. The score before training counts as the first point, so a model that never
beats its starting point is reported as such."""

from __future__ import annotations


def keep_best_callback(model, metric: str, start_score: float, patience: int, keep_start: bool = False):
    """A ``transformers.TrainerCallback`` tracking ``eval_<metric>`` on ``model``. With
    ``keep_start``, the model's state before training is the best so far (a model that was
    already trained, continued: later epochs must beat it to replace it)."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        def __init__(self):
            self.best = start_score
            self.best_epoch = 0.0
            self.best_state = _snapshot(model) if keep_start else None
            self.bad_evaluations = 0
            self.history: list[dict] = [{"epoch": 0.0, metric: start_score}]

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            score = float(metrics[f"eval_{metric}"])
            self.history.append({"epoch": float(state.epoch), metric: score})
            if score > self.best:
                self.best, self.best_epoch, self.bad_evaluations = score, float(state.epoch), 0
                self.best_state = _snapshot(model)
            else:
                self.bad_evaluations += 1
                if self.bad_evaluations >= patience:
                    control.should_training_stop = True

        def restore(self) -> tuple[float, float]:
            """Load the best state into the model; returns (dev score, epoch) of what it holds.
            When no evaluation beat the start, the last state stays and its score is returned."""
            if self.best_state is not None:
                model.load_state_dict(self.best_state)
                return self.best, self.best_epoch
            return self.history[-1][metric], self.history[-1]["epoch"]

    return KeepBest()


def _snapshot(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def training_arguments(settings, work_dir, n_rows: int, batch_sampler, use_cpu: bool = True,
                       bf16: bool = False) -> dict:
    """Keyword arguments common to sentence-transformers' training-argument classes: epoch-wise
    dev evaluation, no checkpoint folders, CPU unless told otherwise, at least one logged loss
    per epoch; ``bf16`` turns on the trainer's bf16 autocast (master weights stay fp32)."""
    steps_per_epoch = max(1, -(-n_rows // settings.batch_size))
    return dict(
        output_dir=str(work_dir / "trainer"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_steps=float(settings.warmup_ratio),  # transformers 5 reads a float below 1 as a ratio
        weight_decay=settings.weight_decay,
        batch_sampler=batch_sampler,
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=min(settings.logging_steps, steps_per_epoch),
        report_to="none",
        seed=settings.seed,
        use_cpu=use_cpu,
        bf16=bf16,
        disable_tqdm=True,
    )
