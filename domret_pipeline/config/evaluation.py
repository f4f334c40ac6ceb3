"""Run config of the evaluation report and its release gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from .base import GeneratorEndpoint, derive

if TYPE_CHECKING:
    from ..core.answers.extractive import AbstentionSettings, AnswerSettings
    from ..core.release.gate import GateSettings
    from ..core.training.bi_encoder import TrainingSettings
    from ..core.training.mining import MiningSettings
    from ..core.training.reranker import RerankerSettings


class EvaluationConfig(GeneratorEndpoint):
    split: Literal["train", "dev", "test"] = Field(default="test", description="The frozen split to report on.")
    k_values: list[int] = [10, 100]
    latency_queries: int = Field(default=100, description="How many queries to time one at a time (0: skip).")
    principal: Optional[list[str]] = Field(default=None, description="Access groups every evaluated system searches "
                                           "and answers as (None: public only, as a request without one); recorded.")
    generator: Literal["extractive", "openai"] = Field(
        default="extractive",
        description="How answers are written: extractive (offline, default) or an OpenAI-compatible endpoint.",
    )
    injection_probe: bool = Field(
        default=True, description="Plant prompt-injection probes into a copy of the corpus and count, per kind, whether "
        "the served answer path (and the generator, when configured) follows them (report section 'Injection probe').",
    )
    injection_probes_per_kind: int = Field(default=4, description="Injection probe: probe documents (and "
                                           "queries) per kind; 6 kinds.")
    injection_seed: int = Field(default=0, description="Injection probe: seed of the probe set (same seed, same probes).")
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
        from ..core.release.gate import GateSettings

        return derive(self, GateSettings, **core_only)


# Settings renamed when their meaning changed: a run config still using the old name gets the
# new one in its error message (run_config.py) instead of a bare "unknown key".
RENAMED_KEYS = {
    f"tolerance_{m}": f"margin_{m}"
    for m in ("ndcg", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy")
}
