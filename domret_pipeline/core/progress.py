"""Progress of long steps (encoding, training, reranker dev passes): done/total, elapsed time
and an estimate of what remains, at most every ``interval`` seconds.

Messages go to a sink the caller gives (the Dagster event log, from an asset) and to the
``domret.progress`` logger, which ``domret run`` prints on the terminal: a user of a
40-minute run sees where it is in either place.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

LOGGER = logging.getLogger("domret.progress")


def format_seconds(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Progress:
    """``advance(n)`` as work gets done; a line is emitted at most every ``interval`` seconds,
    and always at the end."""

    def __init__(self, label: str, total: int, unit: str = "items", sink: Callable[[str], None] | None = None,
                 interval: float = 20.0, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.sink, self.interval, self.clock = sink, interval, clock
        self.done = 0
        self.started = clock()
        self.last_emit = self.started

    def message(self) -> str:
        elapsed = self.clock() - self.started
        if self.total and self.done:
            share = self.done / self.total
            remaining = elapsed * (1 - share) / share
            return (f"{self.label}: {self.done}/{self.total} {self.unit} ({share:.0%}), {format_seconds(elapsed)} "
                    f"elapsed, about {format_seconds(remaining)} left")
        return f"{self.label}: {self.done}/{self.total} {self.unit}, {format_seconds(elapsed)} elapsed"

    def emit(self) -> None:
        text = self.message()
        self.last_emit = self.clock()
        LOGGER.info(text)
        if self.sink is not None:
            self.sink(text)

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if self.done >= self.total or self.clock() - self.last_emit >= self.interval:
            self.emit()

    def set(self, done: int) -> None:
        self.advance(done - self.done)


def trainer_progress_callback(label: str, sink: Callable[[str], None] | None = None, interval: float = 20.0):
    """A ``transformers.TrainerCallback`` reporting optimizer steps against the planned total."""
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        def __init__(self):
            self.progress: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(label, state.max_steps, "steps", sink, interval)

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.set(state.global_step)

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if self.progress is not None and metrics:
                shown = {k: round(v, 4) for k, v in metrics.items() if "ndcg" in k}
                text = f"{label}: epoch {state.epoch:.1f} evaluated on dev {shown}"
                LOGGER.info(text)
                if sink is not None:
                    sink(text)

    return StepProgress()
