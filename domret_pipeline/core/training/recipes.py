"""What the bi-encoder trains on, chosen on dev: labels, pseudo-pairs, or pseudo first and labels after.

Recipes (:data:`RECIPES`, simplest first):

- ``labels``: the labeled rows, with the trainer's settings (``FineTuneConfig``'s epochs, rate...).
- ``pseudo``: the pseudo-query rows alone (``core/training/pseudo_pairs.py``): ``pseudo_epochs``
  epochs over at most ``pseudo_max_rows`` rows (a seeded sample), the other settings the same.
- ``pseudo_then_labels``: that pseudo stage, then the labeled stage starting from its weights.
  The pseudo stage is trained once when both pseudo recipes are asked for. With LoRA, the saved
  adapter is the labeled stage's, on top of the pseudo stage's merged weights.

Every recipe asked for is trained, and the checkpoint is the one with the best dev nDCG@10. Each
epoch is scored (and the best epoch kept) on the cheap dev task (``dev_set_from_index``: the dev
queries' relevant chunks, the base model's top candidates and a random sample). The choice
*between* recipes is made, when ``choice_dev`` is given, on the dev queries over every chunk
(``full_dev_set``), with the untrained model scored there too: on SciFact the cheap task
favoured the pseudo recipe (+0.011 over the base model) while the whole corpus showed it losing
(-0.017 on dev, -0.053 on test; BENCHMARKS.md), since a model moved far from the base meets
confusers the base model's candidates never held. A tie, or nothing better, goes to the simplest
(the order above); the reason is stated, with every recipe's score.

Zero-label mode: with no labeled row (the train split has no query), ``labels`` and
``pseudo_then_labels`` are skipped with that reason and ``pseudo`` is trained even when not asked
for; with no pseudo row, the pseudo recipes are skipped and ``labels`` trains. With neither, a
one-line error. One path: the ``embedding_checkpoint`` asset and ``domret tune embedding`` both
call :func:`train_recipes`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from .bi_encoder import DEV_METRIC, DevSet, TrainingOutcome, TrainingSettings, train_encoder

RECIPES = ("labels", "pseudo", "pseudo_then_labels")
NO_LABELS = "no labeled training row (zero-label mode: the train split has no query, or none kept a negative)"
NO_PSEUDO = "no pseudo-query row (no pair was mined: pseudo_queries kept none, or pseudo_max_queries is 0)"

Rows = list[tuple[str, str, list[str]]]


@dataclass
class RecipeSettings:
    """Which recipes to train and the pseudo stage's budget. No defaults here: their one
    definition is ``config.FineTuneConfig`` (test_settings pins it)."""

    recipes: list[str]
    pseudo_epochs: int
    pseudo_max_rows: int

    def validate(self) -> None:
        unknown = [r for r in self.recipes if r not in RECIPES]
        if unknown or not self.recipes:
            raise ValueError(f"recipes must be some of {list(RECIPES)}, not {self.recipes}")
        if self.pseudo_epochs < 1 or self.pseudo_max_rows < 1:
            raise ValueError("pseudo_epochs and pseudo_max_rows must be at least 1")


@dataclass
class Stage:
    """One training run of a recipe: which rows, the dev nDCG@10 before it and after each epoch."""

    data: str  # "pseudo" or "labels"
    rows: int
    dev_history: list[float]
    best_epoch: float
    dev_score: float
    seconds: float


@dataclass
class RecipeRun:
    recipe: str
    stages: list[Stage]
    outcome: TrainingOutcome = field(repr=False)  # the recipe's model, its last stage's best state
    full_dev_score: float | None = None  # dev nDCG@10 over every chunk (None: not measured)

    @property
    def dev_score(self) -> float:
        """The score the choice reads: over every chunk when measured, else the cheap dev task's."""
        return self.full_dev_score if self.full_dev_score is not None else self.outcome.dev_score

    @property
    def seconds(self) -> float:  # a shared pseudo stage counts in each recipe that uses it
        return sum(s.seconds for s in self.stages)

    def as_dict(self) -> dict:
        return {"recipe": self.recipe, "dev_ndcg@10": self.dev_score, "training_seconds": self.seconds,
                "full_dev_ndcg@10": self.full_dev_score, "stages": [vars(s) for s in self.stages]}


@dataclass
class RecipeChoice:
    runs: list[RecipeRun]  # in RECIPES order
    skipped: dict[str, str]  # recipe -> why it was not trained
    chosen: str
    reason: str
    base_full_dev_score: float | None = None  # the untrained model over every chunk (None: not measured)

    @property
    def run(self) -> RecipeRun:
        return next(r for r in self.runs if r.recipe == self.chosen)

    @property
    def outcome(self) -> TrainingOutcome:
        return self.run.outcome

    @property
    def base_dev_score(self) -> float:
        """The untrained model's dev nDCG@10 (every recipe's first stage starts from it)."""
        return self.runs[0].stages[0].dev_history[0]

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "reason": self.reason, "runs": [r.as_dict() for r in self.runs],
                "skipped": self.skipped, "base_full_dev_ndcg@10": self.base_full_dev_score}


def recipe_table(choice: dict) -> tuple[list[str], list[list]]:
    """Header and rows of the recipe table (model card, asset metadata), from :meth:`RecipeChoice.as_dict`."""
    def full(value) -> str:
        return "–" if value is None else f"{value:.4f}"

    rows = []
    if choice.get("base_full_dev_ndcg@10") is not None:
        rows.append(["(untrained)", "", "", full(choice["base_full_dev_ndcg@10"]), "", "", ""])
    for run in choice["runs"]:
        stages = run["stages"]
        rows.append([run["recipe"], " → ".join(f"{s['data']} {s['rows']}" for s in stages),
                     "; ".join(f"{s['data']}: " + " → ".join(f"{v:.4f}" for v in s["dev_history"]) for s in stages),
                     full(run.get("full_dev_ndcg@10")), f"{run['training_seconds']:.0f}",
                     "yes" if run["recipe"] == choice["chosen"] else "",
                     choice["reason"] if run["recipe"] == choice["chosen"] else ""])
    rows += [[name, "", "", "", "", "", f"skipped: {why}"] for name, why in choice["skipped"].items()]
    return ["recipe", "rows per stage", "dev nDCG@10 by epoch, dev task (start first)", "dev nDCG@10, every chunk",
            "training s", "chosen", "why"], rows


def plan_recipes(recipes: list[str], label_rows: int, pseudo_rows: int) -> tuple[list[str], dict[str, str], str]:
    """The recipes to train (RECIPES order), those skipped with why, and a note when one was
    added because nothing asked for had rows."""
    if not label_rows and not pseudo_rows:
        raise ValueError(f"nothing to train the encoder on: {NO_LABELS}, and {NO_PSEUDO}")
    feasible = {"labels": bool(label_rows), "pseudo": bool(pseudo_rows), "pseudo_then_labels": label_rows and pseudo_rows}
    asked = [r for r in RECIPES if r in recipes]
    skipped = {r: NO_LABELS if not label_rows else NO_PSEUDO for r in asked if not feasible[r]}
    run = [r for r in asked if feasible[r]]
    note = ""
    if not run:
        run = ["labels" if label_rows else "pseudo"]
        note = f"{run[0]} trained though not asked for: it is the only recipe with rows"
    return run, skipped, note


def choose_recipe(runs: list[RecipeRun]) -> tuple[str, str]:
    """The best on dev (strictly: a tie goes to the earlier, simpler recipe) and why."""
    best = runs[0]
    for run in runs[1:]:
        if run.dev_score > best.dev_score:
            best = run
    scores = ", ".join(f"{r.recipe} {r.dev_score:.4f}" for r in runs)
    where = "over every chunk" if runs[0].full_dev_score is not None else "on the dev task"
    scores += f"; {where}"
    if len(runs) == 1:
        return best.recipe, f"the only recipe trained (dev nDCG@10 {scores})"
    if best is runs[0]:
        return best.recipe, f"no other recipe beats the simplest on dev nDCG@10 ({scores})"
    at = runs.index(best)
    beaten = max(runs[:at], key=lambda r: r.dev_score)  # the simpler recipes, each strictly below it
    ties = [r.recipe for r in runs[at + 1:] if r.dev_score == best.dev_score]
    return best.recipe, (f"the best dev nDCG@10 ({scores}): +{best.dev_score - beaten.dev_score:.4f} over "
                         f"{beaten.recipe}" + (f"; {', '.join(ties)} ties it, and a tie goes to the simpler" if ties else ""))


def train_recipes(base_model: str, label_rows: Rows, pseudo_rows: Rows, num_negatives: int, dev: DevSet,
                  settings: TrainingSettings, recipes: RecipeSettings, work_dir: Path,
                  progress_sink=None, choice_dev: DevSet | None = None) -> RecipeChoice:
    """Train every recipe that can be (:func:`plan_recipes`) and choose one on dev: on
    ``choice_dev`` (the dev queries over every chunk) when given and more than one recipe
    trained, else on ``dev``, the task the epochs are scored on."""
    recipes.validate()
    run_names, skipped, note = plan_recipes(recipes.recipes, len(label_rows), len(pseudo_rows))
    if len(pseudo_rows) > recipes.pseudo_max_rows:
        keep = set(random.Random(settings.seed).sample(range(len(pseudo_rows)), recipes.pseudo_max_rows))
        pseudo_rows = [row for i, row in enumerate(pseudo_rows) if i in keep]
    say = progress_sink or (lambda line: None)
    work_dir = Path(work_dir)
    pseudo_stage: TrainingOutcome | None = None
    runs = []
    for name in run_names:
        stages, outcome = [], None
        if name in ("pseudo", "pseudo_then_labels"):
            if pseudo_stage is None:
                say(f"recipe {name}: pseudo stage, {len(pseudo_rows)} rows, {recipes.pseudo_epochs} epoch(s)")
                pseudo_stage = train_encoder(base_model, pseudo_rows, num_negatives, dev,
                                             replace(settings, epochs=recipes.pseudo_epochs), work_dir / "pseudo",
                                             progress_sink)
            stages.append(_stage("pseudo", len(pseudo_rows), pseudo_stage))
            outcome = pseudo_stage
        if name in ("labels", "pseudo_then_labels"):
            start = base_model
            if name == "pseudo_then_labels":
                start = str(work_dir / "pseudo_model")  # the labeled stage continues from the pseudo weights
                pseudo_stage.model.save(start)
            say(f"recipe {name}: labeled stage, {len(label_rows)} rows, {settings.epochs} epoch(s)")
            outcome = train_encoder(start, label_rows, num_negatives, dev, settings, work_dir / name, progress_sink)
            stages.append(_stage("labels", len(label_rows), outcome))
        runs.append(RecipeRun(name, stages, outcome))
    base_full = None
    if choice_dev is not None and len(runs) > 1:
        score = full_dev_scorer(choice_dev, settings)
        say(f"scoring the untrained model and {len(runs)} recipes on dev over every chunk ({len(choice_dev.corpus)})")
        base_full = score(base_model)
        for run in runs:
            run.full_dev_score = score(run.outcome.model)
    chosen, reason = choose_recipe(runs)
    return RecipeChoice(runs, skipped, chosen, reason + (f"; {note}" if note else ""), base_full)


def full_dev_scorer(dev: DevSet, settings: TrainingSettings):
    """model (or a model path) -> dev nDCG@10 on ``dev``, with the evaluator and precision the
    epochs use, so the two scores differ only by the corpus."""
    from sentence_transformers import SentenceTransformer

    from ..retrieval.precision import resolve_train_precision
    from .bi_encoder import dev_evaluator, resolve_device

    device = resolve_device(settings.device)
    bf16 = resolve_train_precision(settings.train_precision, device) == "bf16"
    evaluator = dev_evaluator(dev, settings.batch_size, device if bf16 else None)

    def score(model) -> float:
        if isinstance(model, str):
            model = SentenceTransformer(model, device=device, local_files_only=Path(model).is_dir())
            model.max_seq_length = settings.max_seq_length
        return float(evaluator(model)[DEV_METRIC])

    return score


def _stage(data: str, rows: int, outcome: TrainingOutcome) -> Stage:
    return Stage(data, rows, [float(e[DEV_METRIC]) for e in outcome.dev_history], outcome.best_epoch,
                 outcome.dev_score, outcome.seconds)
