"""Pretraining the reranker on pseudo-pairs before its labeled fine-tuning, chosen on dev.

A cross-encoder that starts from a bi-encoder backbone with a fresh head does not learn the
task from a few hundred labeled queries (on SciFact it ranked dev below the first stage it
reranks). Cross-encoders are normally pretrained on many query-passage pairs first; the
corpus's pseudo-pairs (``pseudo_queries``) supply them. The options (``RerankerConfig.pretrain``):

- ``none``: a fresh LoRA adapter and head trained on the labels only (as before);
- ``pseudo``: the adapter and head first trained on pseudo-pair examples
  (:func:`.reranker_data.pseudo_examples`) with the labeled loss, then the same adapter and
  head trained on the labels (:func:`.reranker.train_reranker` with ``start``);
- ``distill``: the same pseudo-pair examples, but the adapter and head first learn the first
  stage's own scores on them (MarginMSE against the fine-tuned retriever's cosines, the
  teacher of :data:`.reranker_data.TEACHER_SCALE`), then the labels. A graded target over
  every candidate instead of one positive against the rest: the reranker starts from what the
  retriever knows of the domain and the labels teach it what the retriever misses.

Every listed option is trained; the one whose final model scores the best dev reranking
nDCG@10 (the trainer's own dev task) is kept, ties going to ``none`` (no pretraining cost),
else to the option listed first.

Zero-label mode: labels with no train-split query (dev and test may hold held-out
pseudo-queries) leave only the pseudo-pairs. Pretraining is then the whole training: the
listed ``pseudo``/``distill`` options (``pseudo`` when the list names neither) are trained
and the best on dev kept, and the choice says so. With no pair either, there is nothing to
train on: a one-line error.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .reranker import DISTILL_LOSS, DevSample, RerankerOutcome, RerankerSettings, RerankExample, train_reranker

PRETRAIN_OPTIONS = ("none", "pseudo", "distill")
PAIR_OPTIONS = ("pseudo", "distill")  # the options that read pseudo-pair examples


@dataclass
class PretrainTrial:
    """One option as trained: the row of the card's and the metadata's table."""

    option: str
    pretrain_pairs: int  # pseudo-pair examples pretraining read (0: no pretraining)
    pretrain_dev_ndcg: float | None  # dev reranking nDCG@10 after pretraining (best epoch)
    dev_ndcg: float | None  # after the labels: the option's final model (None: not trained)
    seconds: float
    chosen: bool = False
    why: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PretrainChoice:
    """The kept option, its final outcome (model attached), its pretraining outcome (None for
    ``none``), every trial, and why."""

    option: str
    outcome: RerankerOutcome
    pretrain_outcome: RerankerOutcome | None
    trials: list[PretrainTrial]
    reason: str
    zero_label: bool

    def table(self) -> list[dict]:
        return [t.as_dict() for t in self.trials]


def check_options(options: list[str]) -> None:
    """Refuse a ``pretrain`` list that is empty or names an unknown option (before any work)."""
    unknown = sorted(set(options) - set(PRETRAIN_OPTIONS))
    if unknown or not options:
        raise ValueError(f"pretrain must list some of {list(PRETRAIN_OPTIONS)}, not {options}")


def needs_pairs(options: list[str], has_labeled: bool) -> bool:
    """Whether pretraining reads pseudo-pairs: an option lists them, or zero-label mode."""
    return not has_labeled or bool(set(options) & set(PAIR_OPTIONS))


def pretraining_examples(options: list[str], has_labeled: bool, pairs: list, max_pairs: int, seed: int, chunks: list,
                         index, encoder, candidates: int, num_negatives: int, max_positive_ratio: float | None,
                         with_title: bool) -> tuple[list[RerankExample], object | None, str]:
    """The pseudo-pair examples pretraining reads, when ``options`` (or zero-label mode: no
    labeled example) needs them: a seeded sample of at most ``max_pairs`` pairs, mined as
    :func:`.reranker_data.pseudo_examples` does, with the first stage's scores attached when
    ``distill`` is listed. Returns ``(examples, mining result or None, why there are none or
    "")``: a corpus that yields no pair or no negative leaves the options untrained rather than
    failing the step."""
    from .mining import NoNegativesError
    from .pseudo_pairs import sample_pairs
    from .reranker_data import pseudo_examples

    if not needs_pairs(options, has_labeled):
        return [], None, f"not asked for (pretrain lists none of {list(PAIR_OPTIONS)})"
    if not pairs:
        return [], None, "pseudo_queries kept no pair"
    if max_pairs < 1:
        return [], None, "pretrain_max_pairs is 0"
    try:
        examples, mined = pseudo_examples(sample_pairs(pairs, max_pairs, seed), chunks, index, encoder, candidates,
                                          num_negatives, max_positive_ratio, with_title, teacher="distill" in options)
    except NoNegativesError as error:
        return [], None, f"mining kept no negative for any pseudo-pair ({error})"
    return examples, mined, "" if examples else "no pseudo-pair on a readable chunk with a mined negative"


def _fmt(score: float | None) -> str:
    return "–" if score is None else f"{score:.4f}"


def _compare(kept: PretrainTrial, others: list[PretrainTrial]) -> str:
    if not others:
        return f"{kept.option}: the only option trained (dev nDCG@10 {kept.dev_ndcg:.4f})"
    return f"{kept.option}: dev nDCG@10 {kept.dev_ndcg:.4f} " + ", ".join(
        f"= {t.option} {t.dev_ndcg:.4f} (ties go to {'none' if kept.option == 'none' else 'the first listed'})"
        if t.dev_ndcg == kept.dev_ndcg else f"> {t.option} {t.dev_ndcg:.4f}" for t in others)


def choose_pretraining(options: list[str], base_model: str, labeled: list[RerankExample],
                       pseudo: list[RerankExample], dev: list[DevSample], settings: RerankerSettings,
                       pretrain_epochs: int, work_dir: Path, progress_sink=None,
                       pseudo_missing: str = "no pseudo-pair example") -> PretrainChoice:
    """Train each option of ``options`` and keep the best on dev (module docstring).
    ``pseudo_missing`` says why ``pseudo`` is empty when it is (in the trial's ``why``)."""
    check_options(options)
    pretrain_settings = dataclasses.replace(settings, epochs=pretrain_epochs)
    zero_label = not labeled

    def missing(option: str) -> str:
        if option == "none":
            return ""
        if not pseudo:
            return pseudo_missing
        if option == "distill" and any(e.teacher is None for e in pseudo):
            return "the pseudo-pair examples carry no teacher score"
        return ""

    def pretrain(option: str) -> RerankerOutcome:
        if option == "distill":
            return train_reranker(base_model, pseudo, dev, dataclasses.replace(pretrain_settings, loss=DISTILL_LOSS),
                                  work_dir / "distill-pretrain", progress_sink,
                                  "distilling the first stage's scores on pseudo-pairs into the reranker")
        return train_reranker(base_model, pseudo, dev, pretrain_settings, work_dir / "pretrain", progress_sink,
                              "pretraining the reranker on pseudo-pairs")

    listed = list(dict.fromkeys(options))  # each once, in the order listed
    if zero_label:
        listed = [o for o in listed if o in PAIR_OPTIONS] or ["pseudo"]
        if all(missing(o) for o in listed):
            raise ValueError(f"nothing to train the reranker on: the labels have no train-split query and "
                             f"{missing(listed[0])}")
    trials: list[PretrainTrial] = []
    best: tuple[PretrainTrial, RerankerOutcome, RerankerOutcome | None] | None = None
    for option in listed:
        if missing(option):
            trials.append(PretrainTrial(option, 0, None, None, 0.0, why=f"not trained: {missing(option)}"))
            continue
        started = time.perf_counter()
        pre = pretrain(option) if option != "none" else None
        if zero_label:
            outcome = pre
        elif pre is None:
            outcome = train_reranker(base_model, labeled, dev, settings, work_dir / option, progress_sink)
        else:
            outcome = train_reranker(base_model, labeled, dev, settings, work_dir / option, progress_sink,
                                     f"training the {option}-pretrained reranker on the labels", start=pre.model)
        trial = PretrainTrial(option, len(pseudo) if pre else 0, pre.dev_score if pre else None, outcome.dev_score,
                              time.perf_counter() - started)
        trials.append(trial)
        if progress_sink:
            progress_sink(f"reranker pretrain {option}: dev nDCG@10 {_fmt(trial.pretrain_dev_ndcg)} after pretraining, "
                          f"{trial.dev_ndcg:.4f} after the labels ({trial.seconds:.0f} s)")
        # ties go to none (the same dev figure without the pretraining's cost), else to the first listed
        if best is None or trial.dev_ndcg > best[0].dev_ndcg or (trial.dev_ndcg == best[0].dev_ndcg and option == "none"):
            best = (trial, outcome, pre)  # the model of a beaten option is dropped with its outcome
    if best is None:
        raise ValueError(f"no reranker pretraining option could be trained: {'; '.join(t.why for t in trials)}")
    kept, outcome, pre = best
    others = [t for t in trials if t is not kept and t.dev_ndcg is not None]
    reason = _compare(kept, others)
    if zero_label:
        overridden = "" if set(options) & set(PAIR_OPTIONS) else f" (pretrain {list(options)} overridden)"
        reason = ("zero-label mode: the labels have no train-split query, so training on the pseudo-pairs is the whole "
                  f"training{overridden}" + (f"; {reason}" if others else ""))
    kept.chosen, kept.why = True, reason
    for t in others:
        t.why = t.why or f"dev nDCG@10 {t.dev_ndcg:.4f}, not above {kept.option}'s {kept.dev_ndcg:.4f}"
    return PretrainChoice(kept.option, outcome, pre, trials, reason, zero_label=zero_label)
