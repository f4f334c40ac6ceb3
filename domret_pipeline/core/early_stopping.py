"""Best-on-dev training for Hugging Face-style trainers, shared by the bi-encoder and the
reranker: the dev metric is read after every evaluation, the best weights are kept in memory
(no checkpoint folders on disk) and training stops after ``patience`` evaluations without
improvement. The score before training counts as the first point, so a model that never
beats its starting point is reported as such."""

from __future__ import annotations


def keep_best_callback(model, metric: str, start_score: float, patience: int):
    """A ``transformers.TrainerCallback`` tracking ``eval_<metric>`` on ``model``."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        def __init__(self):
            self.best = start_score
            self.best_epoch = 0.0
            self.best_state = None
            self.bad_evaluations = 0
            self.history: list[dict] = [{"epoch": 0.0, metric: start_score}]

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            score = float(metrics[f"eval_{metric}"])
            self.history.append({"epoch": float(state.epoch), metric: score})
            if score > self.best:
                self.best, self.best_epoch, self.bad_evaluations = score, float(state.epoch), 0
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
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
