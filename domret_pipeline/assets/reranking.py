"""Reranking assets: the LoRA cross-encoder adapter, and the serving configuration chosen on dev."""

import shutil
from pathlib import Path

import dagster as dg

from ..config import RerankerConfig, ServingSelectionConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import read_chunks, read_documents
from ..core.evaluation.report import markdown_table
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, plot_metadata, precision_metrics, precision_table_md

RERANKER_VERSION = "5"  # 5: distill (the first stage's scores on pseudo-pairs) as a pretraining option; 4: pretraining on pseudo-pairs chosen on dev, zero-label mode; 3: readable candidates only
SERVING_VERSION = "5"  # 5: the llm rewriter (rewrite_model, rewrite_endpoint); 4: query rewriting (prf) tried on dev; 3: the dev choice searches as the training principal


@dg.asset(
    group_name="reranking",
    code_version=RERANKER_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "A cross-encoder reranker adapted with LoRA (peft) on the attention projections, its scoring "
        "head fully trained. Trained on the fine-tuned retriever's own top-k candidates per training "
        "query (labeled positives vs the non-relevant candidates) with a listwise/pairwise loss by "
        "default; best state on dev reranking nDCG@10 kept (early stopping). Optionally pretrained "
        "first on pseudo_queries' pairs (mined the same way, the pair's own passage as positive), on "
        "the labeled loss (pseudo) or distilling the retriever's own scores of them (distill): each "
        "recipe of `pretrain` is trained and the best on dev kept, with the table and the reason. With no "
        "train-split query (zero-label mode) the pseudo-pairs are the whole training. Writes the adapter "
        "(small) and a merged model for serving."
    ),
)
def reranker_adapter(
    context: dg.AssetExecutionContext,
    config: RerankerConfig,
    faiss_index: ArtifactRef,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    pseudo_queries: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.evaluation.diagnostics import training_curves
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.retrieval.encoder import set_offline
    from ..core.training.access import readable_chunks, readable_index, training_principal
    from ..core.training.reranker import save_adapter_and_merged
    from ..core.training.reranker_data import prepare
    from ..core.training.reranker_pretrain import check_options, choose_pretraining, pretraining_examples
    from ..core.weak.pseudo_queries import read_pairs

    check_options(config.pretrain)
    set_offline(True)
    with mlflow.run(context, RERANKER_VERSION) as tracked:
        inputs = {"faiss_index": faiss_index.sha256, "labeled_queries": labeled_queries.sha256,
                  "corpus_chunks": corpus_chunks.sha256, "pseudo_queries": pseudo_queries.sha256}
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        labels = LabeledQueries.load(labeled_queries.path)
        # Candidates only among what the training principal may read (core/training/access.py).
        principal = training_principal(labeled_queries.path)
        chunks = readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)
        index, encoder, manifest = open_with_encoder(Path(faiss_index.path))
        index = readable_index(index, principal, chunks)
        with_title = manifest.with_title
        examples, dev, mined = prepare(labels, chunks, index, encoder, config.candidates, config.num_negatives,
                                       config.max_positive_ratio, with_title)
        settings = config.settings()
        # no labeled example: zero-label mode needs the pairs whatever pretrain lists
        pseudo, pseudo_mined, pseudo_missing = pretraining_examples(
            config.pretrain, bool(examples), read_pairs(pseudo_queries.path), config.pretrain_max_pairs, config.seed,
            chunks, index, encoder, config.candidates, config.num_negatives, config.max_positive_ratio, with_title)
        with atomic_artifact_dir(artifacts.path(), "reranker_adapter") as pending:
            work = pending.path / ".work"
            choice = choose_pretraining(config.pretrain, config.base_model, examples, pseudo, dev, settings,
                                        config.pretrain_epochs, work, context.log.info, pseudo_missing)
            context.log.info(f"reranker pretraining: {choice.reason}")
            outcome = choice.outcome
            save_adapter_and_merged(outcome.model, pending.path / "adapter", pending.path / "merged")
            shutil.rmtree(work, ignore_errors=True)
            precision = _precision_choice(context, config, dev, pending.path / "merged")
            pre = choice.pretrain_outcome
            card = {
                "base_model": config.base_model, "inputs": inputs, "training": settings.as_dict(), "train_precision_used": outcome.train_precision,
                "with_title": with_title, "train_queries": len(examples),
                "train_negatives": mined.n_negatives, "mining_removed": dict(mined.removed),
                "dev_queries": len(dev), "dev_first_stage_ndcg@10": outcome.first_stage_dev_score,
                "dev_start_ndcg@10": outcome.start_dev_score, "dev_ndcg@10": outcome.dev_score,
                "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history,
                "loss_history": outcome.loss_history, "trainable_parameters": outcome.trainable_parameters,
                "total_parameters": outcome.total_parameters, "training_seconds": outcome.seconds,
                "precision_choice": precision.as_dict(), "training_principal": principal.as_list(),
                "pretrain": {"chosen": choice.option, "reason": choice.reason, "zero_label": choice.zero_label,
                             "trials": choice.table(), "pseudo_examples": len(pseudo),
                             "pseudo_negatives": pseudo_mined.n_negatives if pseudo_mined else 0,
                             "pseudo_mining_removed": dict(pseudo_mined.removed) if pseudo_mined else {},
                             "pretrain_dev_history": pre.dev_history if pre else [],
                             "pretrain_loss_history": pre.loss_history if pre else []},
            }
            write_json(pending.path / "card.json", card)
            epochs = [e["epoch"] for e in outcome.dev_history]
            curves = training_curves(pending.path, "Reranker training loss", outcome.loss_history, "dev reranking nDCG@10 (chunk level)", {
                "reranker": (epochs, [e["dev_ndcg@10"] for e in outcome.dev_history]),
                "first stage": (epochs, [outcome.first_stage_dev_score] * len(epochs)),
            })
        final = Path(pending.ref.path)
        for entry in outcome.loss_history:
            tracked.log_metrics({"train_loss": entry["loss"]}, step=entry["step"])
        tracked.set_tag("domret.precisions_passed", ",".join(precision.passed()))
        tracked.set_tag("domret.reranker_pretrain", choice.option)
        tracked.log_metrics(precision_metrics(precision))
        tracked.log_metrics({"dev_ndcg@10": outcome.dev_score, "dev_first_stage_ndcg@10": outcome.first_stage_dev_score,
                             "trainable_parameters": outcome.trainable_parameters, "training_seconds": outcome.seconds,
                             **({"dev_ndcg@10_pretrained": pre.dev_score} if pre else {})})
        for name in ("card.json", "loss.png", "dev.png"):
            if (final / name).exists():
                tracked.log_artifact(final / name, "reranker_adapter")
        tracked.log_artifacts(final / "adapter", "reranker_adapter/adapter")
        if config.log_model_to_mlflow:
            tracked.log_artifacts(final / "merged", "reranker_adapter/merged")
        rows = [["base model", f"`{config.base_model}`"], ["loss", settings.loss],
                ["LoRA", f"r={settings.lora_r}, alpha={settings.lora_alpha} on {', '.join(settings.lora_target_modules)}"],
                ["head", ", ".join(settings.head_modules())],
                ["trainable parameters", f"{outcome.trainable_parameters:,} of {outcome.total_parameters:,}"],
                ["train queries / negatives", f"{len(examples)} / {mined.n_negatives}"
                 + (" (zero-label mode: trained on pseudo-pairs only)" if choice.zero_label else "")],
                ["pretraining (kept: why)", choice.reason],
                ["dev nDCG@10: first stage → reranker", f"{outcome.first_stage_dev_score:.4f} → {outcome.dev_score:.4f}"],
                ["best epoch", outcome.best_epoch], ["training time", f"{outcome.seconds:.0f} s"]]
        return artifact_output(pending.ref, tracked, {
            "card": dg.MetadataValue.md(markdown_table(["", ""], rows) + "\n\nDev figures rerank the tuned retriever's "
                                        f"top {config.candidates} chunks; a chunk is relevant when its document is."),
            "dev_ndcg@10": dg.MetadataValue.float(round(outcome.dev_score, 4)),
            "dev_first_stage_ndcg@10": dg.MetadataValue.float(round(outcome.first_stage_dev_score, 4)),
            "trainable_parameters": dg.MetadataValue.int(outcome.trainable_parameters),
            "training_seconds": dg.MetadataValue.float(round(outcome.seconds, 1)),
            **plot_metadata(final, curves),
            "precision_parity": dg.MetadataValue.md(precision_table_md(precision)),
            "precisions_passed": ", ".join(precision.passed()),
            "pretrain": choice.option,
            "pretrain_table": dg.MetadataValue.md(_pretrain_table(choice)),
        })


def _pretrain_table(choice) -> str:
    """The pretraining options as trained, as Markdown."""
    def score(value):
        return "–" if value is None else round(value, 4)

    rows = [[t.option, t.pretrain_pairs, score(t.pretrain_dev_ndcg), score(t.dev_ndcg), f"{t.seconds:.1f}",
             "yes" if t.chosen else "", t.why] for t in choice.trials]
    note = ("\n\nZero-label mode: no train-split query, so the pseudo-pairs were the whole training (the after-labels "
            "column repeats the pretrained model's figure)." if choice.zero_label else "")
    return markdown_table(["option", "pretrain pairs", "pretrain dev nDCG@10", "after labels dev nDCG@10", "seconds",
                           "chosen", "why"], rows) + note


def _precision_choice(context, config: RerankerConfig, dev, merged: Path):
    """The parity check of the reranker's inference precisions on its dev reranking task; the
    precisions that pass are the ones serving_config may serve (within its latency budget)."""
    from ..core.retrieval.precision_choice import PrecisionChoice, choose_precision, reranker_trial, score_correlation
    from ..core.retrieval.cross_encoder import load_reranker

    if config.precision == "fp32":
        return choose_precision("fp32", None, score_correlation)
    if not any(s.relevant for s in dev):
        return PrecisionChoice(config.precision, "fp32", "no dev query with a relevant candidate: fp32, unchecked")
    trial = reranker_trial(dev, lambda p: load_reranker(merged, config.max_length, p))
    return choose_precision(config.precision, trial, score_correlation, "Pearson r of dev scores to fp32's",
                            max_loss=config.max_precision_loss, log=context.log.info)


@dg.asset(
    group_name="reranking",
    code_version=SERVING_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "The serving bundle: the serving configuration chosen on the dev split (dense or hybrid, "
        "BM25 by reciprocal rank fusion; reranking on or off, its depth and fusion weight) with the "
        "references (path + hash) of the tuned index, BM25, reranker and chunks it serves; what "
        "`domret search` loads and champion_release registers. Reranking is on only where it beats "
        "the stage before it on dev, and so is query rewriting (pseudo-relevance feedback, or an LLM's "
        "expansion through an OpenAI-compatible endpoint); the reasons are recorded."
    ),
)
def serving_config(
    context: dg.AssetExecutionContext,
    config: ServingSelectionConfig,
    faiss_index: ArtifactRef,
    bm25_index: ArtifactRef,
    reranker_adapter: ArtifactRef,
    sentence_selector: ArtifactRef,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    corpus_documents: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from dataclasses import replace

    from ..core.evaluation.answers import ANSWER_SELECTION, RememberedSearch, answer_quality, calibrate_answer_step
    from ..core.evaluation.answers import remembered
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.retrieval.encoder import set_offline
    from ..core.serving.dev_choice import dev_order, select_on_dev
    from ..core.serving.bundle import rewrite_endpoint
    from ..core.serving.rewrite import feedback_grid
    from ..core.serving.search import SearchPipeline, variant_key
    from ..core.retrieval.cross_encoder import load_reranker
    from ..core.training.access import training_principal

    set_offline(True)
    with mlflow.run(context, SERVING_VERSION) as tracked:
        refs = {"faiss_index": faiss_index, "bm25_index": bm25_index, "reranker_adapter": reranker_adapter,
                "sentence_selector": sentence_selector, "corpus_chunks": corpus_chunks, "labeled_queries": labeled_queries,
                "corpus_documents": corpus_documents}
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": r.sha256 for k, r in refs.items()}})
        labels = LabeledQueries.load(labeled_queries.path)
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        # The dev labels were restricted to the training principal: the dev choice searches as it.
        principal = training_principal(labeled_queries.path)
        index, encoder, manifest = open_with_encoder(Path(faiss_index.path))
        with_title = manifest.with_title
        card = read_json(f"{reranker_adapter.path}/card.json")
        rerankers = _reranker_variants(config, card, Path(reranker_adapter.path) / "merged") if config.allow_rerank else {}
        qrels = labels.qrels_for("dev")
        weights = ([None] if config.rerank_only else []) + list(config.fusion_weights)
        bm25 = BM25Index.load(Path(bm25_index.path))
        endpoint = config.rewrite_endpoint()  # the llm rewriter's, when rewriters lists it
        expander = rewrite_endpoint(endpoint)
        chosen, scored = select_on_dev(qrels, labels.queries, chunks, index, encoder, bm25,
                                       rerankers, config.candidates, weights, config.depth, config.rrf_k, config.min_gain,
                                       with_title, config.latency_budget_ms,
                                       config.budget_queries, context.log.info, config.score_over_budget,
                                       principal=principal,
                                       rewrites=feedback_grid(config.rewriters, config.prf_depths, config.prf_weights,
                                                              config.generator_model),
                                       expander=expander)
        # The reranker of the served variant; the default one (fp32, trained length) otherwise,
        # for the answer step's scorer choice.
        # (what open_bundle loads for the same bundle).
        if chosen.rerank:
            reranker = rerankers[chosen.variant()]
        elif rerankers:
            reranker = rerankers.get(variant_key()) or load_reranker(
                Path(reranker_adapter.path) / "merged", card["training"]["max_length"], "fp32")
        else:
            reranker = None
        dev_scores = {label: s["metrics"]["ndcg@10"] for label, s in scored.items() if s["metrics"]}
        if not config.allow_rerank:
            chosen.reasons.append("rerank off: allow_rerank is false")
        chosen.top_n = config.top_n
        unscored = {"ndcg@10": None, "mrr@10": None, "recall@10": None}  # over the budget, not scored on dev
        table = [{"config": label, "settings": s["config"].as_dict(), **(s["metrics"] or unscored),
                  **{k: s["latency"].get(k) for k in ("p50_ms", "p95_ms", "p99_ms") if s.get("latency")},
                  "ruled_out": s.get("ruled_out")} for label, s in scored.items()]
        # The answer step of this configuration: its sentence scorer, passage weight, per-sentence
        # and abstention thresholds, all chosen on dev. The threshold meets the abstention target (by default the best dev
        # abstention accuracy; or a dev citation precision, answering as much as it allows); the
        # scorer (the bi-encoder, the reranker when it is trained, the sentence selector when the
        # labels had evidence to train it) maximises the dev answer quality: the mean of citation
        # F1 and abstention accuracy.
        pipeline = SearchPipeline(chunks, index, encoder, chosen, bm25, reranker if chosen.rerank else None, with_title,
                                  principal=principal, expander=expander)
        documents = {d.doc_id: d for d in read_documents(f"{corpus_documents.path}/documents.jsonl")}
        options, eligible, answer_reasons = _answer_options(config, encoder, reranker, Path(sentence_selector.path))
        searched = RememberedSearch(pipeline)  # every scorer answers the same dev searches
        target = config.abstention_settings()
        # each scorer remembered once: it scores the dev sentences for citing and for abstaining
        memos = {name: remembered(fn) for name, (fn, _) in options.items()}
        tried = {}
        for name, (fn, settings_for) in options.items():
            # the selector's per-sentence threshold is refined on the dev answers this pipeline gives
            grid = config.selector_threshold_candidates if name == "selector" else 0
            # abstention may be decided by another scorer's best sentence score, when dev says so
            abstainers = {n: m for n, m in memos.items() if n != name} if config.abstention_scorer == "auto" else {}
            calibrated = calibrate_answer_step(searched, labels, "dev", documents, memos[name], settings_for, target, grid,
                                               abstainers=abstainers)
            tried[name] = {"threshold": calibrated.threshold, "dev": calibrated.summary,
                           "quality": answer_quality(calibrated.summary), "calibration": calibrated.reached,
                           "settings": replace(settings_for, sentence_threshold=calibrated.sentence_threshold,
                                               passage_weight=calibrated.passage_weight),
                           "settings_tried": calibrated.settings_tried,
                           "abstention_scorer": calibrated.abstention_scorer}
        # ties: the cheaper bi-encoder
        scorer = max(eligible, key=lambda n: (tried[n]["quality"], n == "encoder", n))
        answer_reasons.append(f"answer scorer {scorer}: dev answer quality {tried[scorer]['quality']:.4f}; tried "
                              + ", ".join(f"{n} {t['quality']:.4f}" + ("" if n in eligible else " (not eligible)")
                                          for n, t in tried.items()))
        abstention_scorer = tried[scorer]["abstention_scorer"]
        if abstention_scorer:
            answer_reasons.append(f"abstains on the {abstention_scorer}'s best sentence score: it beat the {scorer}'s own "
                                  "on dev")
        threshold = tried[scorer]["threshold"]
        answer_settings = tried[scorer]["settings"]
        dev_accuracy = tried[scorer]["dev"].get("abstention_accuracy", float("nan"))
        answer = {"scorer": scorer, "abstention_scorer": abstention_scorer, "threshold": threshold,
                  "dev_abstention_accuracy": dev_accuracy,
                  "abstention_target": {"target": target.target, "min_citation_precision": target.min_citation_precision},
                  "calibration": tried[scorer]["calibration"],
                  "passages": answer_settings.passages, "max_sentences": answer_settings.max_sentences,
                  "sentence_threshold": answer_settings.sentence_threshold,
                  "passage_weight": answer_settings.passage_weight, "reasons": answer_reasons,
                  "scorers_tried": {n: {"threshold": t["threshold"], "dev_quality": t["quality"],
                                        "max_sentences": t["settings"].max_sentences,
                                        "sentence_threshold": t["settings"].sentence_threshold,
                                        "passage_weight": t["settings"].passage_weight,
                                        "settings_tried": t["settings_tried"],
                                        "abstention_scorer": t["abstention_scorer"],
                                        **{k: t["dev"].get(k) for k in ANSWER_SELECTION}} for n, t in tried.items()}}
        with atomic_artifact_dir(artifacts.path(), "serving_config") as pending:
            write_json(pending.path / "serving.json", {
                "config": chosen.as_dict(), "label": chosen.label(),
                "artifacts": {k: {"path": r.path, "sha256": r.sha256} for k, r in refs.items()},
                # with_title is copied here for people reading the bundle; code takes it from
                # the manifest of the index the bundle serves (open_bundle).
                "with_title": with_title, "reranker_max_length": card["training"]["max_length"],
                "latency_budget_ms": config.latency_budget_ms, "score_over_budget": config.score_over_budget,
                "dev": {"n_queries": len(qrels), "table": table, "principal": principal.as_list()}, "answer": answer,
                **({"rewrite_endpoint": endpoint, "rewrite_calls": expander.record()} if expander else {}),
            })
        tracked.log_metrics({"dev_ndcg@10_served": dev_scores[chosen.label()], "dev_ndcg@10_dense": dev_scores["dense"],
                             "rerank_on": float(chosen.rerank), "rewrite_on": float(chosen.rewrite != "none")})
        tracked.set_tag("domret.serving", chosen.label())
        tracked.log_artifact(f"{pending.ref.path}/serving.json", "serving_config")
        rows = [[r["config"], *(("not scored" if r[m] is None else r[m]) for m in ("ndcg@10", "mrr@10", "recall@10")),
                 r.get("p50_ms", "–"), r.get("p95_ms", "–"), r.get("p99_ms", "–"), r["ruled_out"] or ""]
                for r in sorted(table, key=dev_order)]
        return artifact_output(pending.ref, tracked, {
            "serving": chosen.label(),
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in chosen.reasons)),
            "dev_ndcg@10_served": dg.MetadataValue.float(round(dev_scores[chosen.label()], 4)),
            "answer_scorer": scorer,
            "answer_reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in answer_reasons)),
            "answer_scorers_tried": dg.MetadataValue.md(markdown_table(
                ["scorer", "abstains on", "dev quality", *ANSWER_SELECTION, "threshold"],
                [[n, t["abstention_scorer"] or n, t["quality"], *(t["dev"].get(k, float("nan")) for k in ANSWER_SELECTION),
                  t["threshold"]] for n, t in tried.items()])),
            "abstention_threshold": dg.MetadataValue.float(threshold if threshold != float("-inf") else -1e9),
            "dev_abstention_accuracy": dg.MetadataValue.float(dev_accuracy),
            "dev_table": dg.MetadataValue.md(f"{len(qrels)} dev queries, document level.\n\n" + markdown_table(
                ["configuration", "nDCG@10", "MRR@10", "Recall@10", "p50 ms", "p95 ms", "p99 ms", "ruled out"], rows)),
            "latency_budget_ms": dg.MetadataValue.float(config.latency_budget_ms or float("nan")),
        })


def _answer_options(config: ServingSelectionConfig, encoder, reranker, selector_dir: Path) -> tuple[dict, set, list[str]]:
    """The answer scorers serving_config calibrates on dev, each with its answer settings: the
    bi-encoder and the reranker cite a fixed count; the sentence selector cites what clears its
    dev-chosen per-sentence threshold (at most ``selector_max_sentences``). The bi-encoder is
    always calibrated (the fallback, and the report's "before" of the answer step); the ones
    ``answer_scorer`` allows may serve. Returns the options, those eligible to serve, and why
    any was left out."""
    from dataclasses import replace

    from ..core.answers.extractive import encoder_scorer, reranker_scorer
    from ..core.artifacts import read_json
    from ..core.retrieval.cross_encoder import load_reranker

    fixed = config.answer_settings()
    wanted = {"auto": {"encoder", "reranker", "selector"}}.get(config.answer_scorer, {config.answer_scorer})
    options, reasons = {"encoder": (encoder_scorer(encoder), fixed)}, []
    card = read_json(selector_dir / "card.json")
    if "selector" in wanted:
        if card["trained"]:
            selector = load_reranker(selector_dir / "merged", card["max_length"], "fp32")
            options["selector"] = (reranker_scorer(selector), replace(fixed, max_sentences=config.selector_max_sentences,
                                                                      sentence_threshold=card["threshold"]))
        else:
            reasons.append(f"sentence selector not tried: {card['reason']}")
    if "reranker" in wanted:
        if reranker is not None:
            options["reranker"] = (reranker_scorer(reranker), fixed)
        else:
            reasons.append("reranker not tried as the answer scorer: none loaded (allow_rerank false)")
    eligible = wanted & set(options)
    if not eligible:
        reasons.append(f"answer_scorer {config.answer_scorer} unavailable: the bi-encoder scores answers")
        eligible = {"encoder"}
    return options, eligible, reasons


def _reranker_variants(config: ServingSelectionConfig, card: dict, merged: Path) -> dict:
    """The reranker at every (precision, token limit) serving may choose among: the precisions
    that passed the reranker's parity check, times the token limits tried."""
    from ..core.retrieval.precision_choice import PrecisionChoice
    from ..core.serving.search import variant_key
    from ..core.retrieval.cross_encoder import load_reranker

    precisions = PrecisionChoice.from_dict(card["precision_choice"]).passed() if "precision_choice" in card else ["fp32"]
    lengths = list(config.rerank_max_lengths) or [None]
    trained = card["training"]["max_length"]
    return {variant_key(p, n): load_reranker(merged, n or trained, p) for p in precisions for n in lengths}
