"""Run config of the serving choice on dev and the answer step."""

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


class ServingSelectionConfig(GeneratorEndpoint):
    candidates: list[int] = Field(default=[20], description="Reranking depths tried on dev, e.g. [20, 50].")
    rerank_only: bool = Field(default=True, description="Try the reranker's score alone as well as the fusions.")
    fusion_weights: list[float] = Field(
        default=[0.25, 0.5, 1.0, 2.0], description="Weights w of z(first stage) + w * z(reranker) tried on dev."
    )
    depth: int = Field(default=100, description="Chunks each first-stage retriever returns.")
    rrf_k: int = 60
    min_gain: float = Field(default=0.0, description="Dev nDCG@10 a stage must add to be switched on.")
    top_n: int = Field(default=10, description="Passages returned to the caller.")
    allow_rerank: bool = Field(default=True, description="False: never serve the reranker, whatever dev says.")
    latency_budget_ms: Optional[float] = Field(
        default=300.0,
        description="p95 milliseconds per query (one at a time) a reranking configuration may take to serve; "
        "configurations over it are ruled out on dev. None: no budget.",
    )
    budget_queries: int = Field(default=30, description="Dev queries timed one at a time per reranking configuration.")
    score_over_budget: bool = Field(
        default=True, description="Score on dev the reranker variants ruled out by the budget too (for the report); "
        "false skips their dev pass, most of this step's time on a CPU."
    )
    rerank_max_lengths: list[int] = Field(
        default=[], description="Reranker token limits tried on dev (empty: the one it was trained with)."
    )
    rewriters: list[str] = Field(
        default=["prf"], description="Query rewriters tried on dev beside none (prf: pseudo-relevance feedback, the "
        "query vector moved toward its top dense hits; llm: query2doc, the query followed by a passage an "
        "OpenAI-compatible endpoint writes for it, see generator_*; another name fails the step); one serves only "
        "where it beats the chosen configuration without it by more than min_gain. Empty: never rewrite.",
    )
    generator_timeout_s: float = Field(default=10.0, description="llm rewriter: how long a search waits for the "
                                       "expansion before it goes on with the query as written (the failure is counted).")
    prf_depths: list[int] = Field(default=[1], description="prf: feedback chunks (the query's top dense hits) tried on dev.")
    prf_weights: list[float] = Field(
        default=[0.5], description="prf: weights b of q + b * mean(feedback vectors), renormalised, tried on dev."
    )
    answer_scorer: Literal["auto", "reranker", "encoder", "selector"] = Field(
        default="auto", description="What scores answer sentences: auto tries the bi-encoder, the reranker and the "
        "sentence selector (when it was trained) on dev and keeps the best.",
    )
    answer_passages: int = Field(default=3, description="Top passages whose sentences the answer step reads.")
    answer_max_sentences: int = Field(default=2, description="Sentences (each citing itself) in an answer scored by the "
                                      "bi-encoder or the reranker (a fixed count).")
    selector_max_sentences: int = Field(default=4, description="The most sentences an answer scored by the sentence "
                                        "selector cites; its per-sentence threshold (chosen on dev) decides how many.")
    selector_threshold_candidates: int = Field(
        default=20, description="Quantiles of the dev answers' sentence scores tried as the selector's per-sentence "
        "threshold, beside its own (dev F1 on the relevant documents); 0 keeps its own.",
    )
    abstention_target: Literal["accuracy", "citation_precision"] = Field(
        default="accuracy", description="What the dev-calibrated abstention threshold aims for: the best abstention accuracy, "
        "or the lowest threshold whose answered queries cite with at least abstention_min_citation_precision.",
    )
    abstention_min_citation_precision: float = Field(
        default=0.5, description="With abstention_target citation_precision: the dev citation precision to reach."
    )
    abstention_scorer: Literal["auto", "own"] = Field(
        default="auto", description="Whose best sentence score the abstention threshold applies to: auto also tries "
        "the other answer scorers' (cite with one, abstain on another) and keeps one only where it beats the citing "
        "scorer's own on dev; own: always the citing scorer's.",
    )

    def answer_settings(self, **core_only) -> AnswerSettings:
        from ..core.answers.extractive import AnswerSettings

        return derive(self, AnswerSettings, "answer_", **core_only)

    def rewrite_endpoint(self) -> dict | None:
        """The llm rewriter's endpoint as the bundle records it (no key), or None when rewriters
        does not list llm; refused when it does and the endpoint is not configured."""
        if "llm" not in self.rewriters:
            return None
        if not (self.generator_base_url and self.generator_model):
            raise ValueError("serving_config: rewriters lists 'llm' but generator_base_url and generator_model are not set")
        return {"base_url": self.generator_base_url, "model": self.generator_model,
                "api_key_env": self.generator_api_key_env, "timeout_s": self.generator_timeout_s}

    def abstention_settings(self) -> AbstentionSettings:
        from ..core.answers.extractive import AbstentionSettings

        return derive(self, AbstentionSettings, "abstention_")
