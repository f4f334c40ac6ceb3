"""The answer step's own model: the evidence-trained sentence selector."""

import shutil
from pathlib import Path

import dagster as dg

from ..config import SelectorConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, write_json
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import read_chunks, read_documents
from ..core.evaluation.report import markdown_table
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, plot_metadata

SELECTOR_VERSION = "2"  # 2: sentences only of documents the training principal may read


@dg.asset(
    group_name="reranking",
    code_version=SELECTOR_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "The evidence-trained sentence selector: a LoRA cross-encoder scoring (query, sentence) pairs, "
        "trained on the training split's sentence evidence (positives) against the other sentences of "
        "the same relevant documents and of the query's mined negative passages; best epoch on the dev "
        "split's sentence ranking, then a per-sentence threshold chosen on dev F1. serving_config offers "
        "it to the answer step beside the bi-encoder and the reranker. Labels without sentence evidence: "
        "no model, a card saying why, and the answer step keeps its other scorers."
    ),
)
def sentence_selector(
    context: dg.AssetExecutionContext,
    config: SelectorConfig,
    labeled_queries: ArtifactRef,
    corpus_documents: ArtifactRef,
    corpus_chunks: ArtifactRef,
    hard_negatives: ArtifactRef,
    reranker_adapter: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.answers.selector import (
        abstention_separation, fit_selector, mined_negative_sentences, selector_examples,
    )
    from ..core.evaluation.diagnostics import training_curves
    from ..core.retrieval.encoder import set_offline
    from ..core.training.mining import read_mined
    from ..core.training.access import readable_chunks, training_principal
    from ..core.training.reranker import save_adapter_and_merged

    set_offline(True)
    with mlflow.run(context, SELECTOR_VERSION) as tracked:
        inputs = {"labeled_queries": labeled_queries.sha256, "corpus_documents": corpus_documents.sha256,
                  "corpus_chunks": corpus_chunks.sha256, "hard_negatives": hard_negatives.sha256,
                  "reranker_adapter": reranker_adapter.sha256}
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        labels = LabeledQueries.load(labeled_queries.path)
        # Sentences only of documents the training principal may read (core/training/access.py).
        principal = training_principal(labeled_queries.path)
        documents = {d.doc_id: d for d in read_documents(f"{corpus_documents.path}/documents.jsonl")
                     if principal.may_read(d.groups)}
        mined_sentences = None
        if config.mined_negative_sentences:
            by_id = {c.chunk_id: c for c in readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)}
            mined_sentences = mined_negative_sentences(read_mined(hard_negatives.path), by_id, documents)
        examples = selector_examples(labels, documents, config.max_negatives, mined_sentences,
                                     unanswerable=config.learns_from_unanswerable())
        if examples.train and not examples.dev:
            examples.reason = "no dev query has sentence evidence: the selector's threshold cannot be chosen"
        start_model = (str(Path(reranker_adapter.path) / "merged") if config.start_from == "reranker"
                       else config.base_model)
        settings = config.settings()
        with atomic_artifact_dir(artifacts.path(), "sentence_selector") as pending:
            card = {"trained": False, "reason": examples.reason, "inputs": inputs, "start_from": config.start_from,
                    "start_model": start_model, "training": settings.as_dict(),
                    "training_principal": principal.as_list()}
            curves = {}
            if examples.train and examples.dev:
                fit = fit_selector(examples, start_model, settings, pending.path / ".work", progress_sink=context.log.info)
                separation = abstention_separation(fit.model, labels, documents, "dev")
                save_adapter_and_merged(fit.model, pending.path / "adapter", pending.path / "merged")
                shutil.rmtree(pending.path / ".work", ignore_errors=True)
                outcome = fit.outcome
                card.update({
                    "trained": True, "reason": "", "threshold": fit.threshold, "dev_sentence_f1": fit.dev_f1,
                    "train_queries": fit.train_queries, "dev_queries": fit.dev_queries, "dev_sentences": fit.dev_sentences,
                    "dev_sentence_ndcg@10_listed": outcome.first_stage_dev_score,
                    "dev_sentence_ndcg@10_start": outcome.start_dev_score, "dev_sentence_ndcg@10": outcome.dev_score,
                    "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history,
                    "loss_history": outcome.loss_history, "trainable_parameters": outcome.trainable_parameters,
                    "training_seconds": outcome.seconds, "max_length": settings.max_length,
                    "unanswerable_train_queries": sum(not e.positives for e in examples.train),
                    "dev_abstention_on_relevant_documents": separation,
                })
                epochs = [e["epoch"] for e in outcome.dev_history]
                curves = training_curves(pending.path, "Sentence selector training loss", outcome.loss_history,
                                         "dev sentence nDCG@10 (evidence first)", {
                                             "selector": (epochs, [e["dev_ndcg@10"] for e in outcome.dev_history]),
                                             "start": (epochs, [outcome.start_dev_score] * len(epochs))})
            else:
                context.log.warning(f"sentence_selector not trained: {examples.reason}")
            write_json(pending.path / "card.json", card)
        final = Path(pending.ref.path)
        tracked.set_tag("domret.selector_trained", str(card["trained"]).lower())
        tracked.log_artifact(final / "card.json", "sentence_selector")
        if not card["trained"]:
            return artifact_output(pending.ref, tracked, {
                "trained": dg.MetadataValue.bool(False),
                "reason": dg.MetadataValue.text(card["reason"]),
            })
        for entry in card["loss_history"]:
            tracked.log_metrics({"train_loss": entry["loss"]}, step=entry["step"])
        tracked.log_metrics({"dev_sentence_ndcg@10": card["dev_sentence_ndcg@10"], "dev_sentence_f1": card["dev_sentence_f1"],
                             "threshold": card["threshold"], "training_seconds": card["training_seconds"]})
        if config.log_model_to_mlflow:
            tracked.log_artifacts(final / "merged", "sentence_selector/merged")
        rows = [["starts from", f"{config.start_from} (`{start_model}`)"],
                ["train queries (of them unanswerable) / dev queries / dev sentences",
                 f"{card['train_queries']} ({card['unanswerable_train_queries']}) / {card['dev_queries']} / "
                 f"{card['dev_sentences']}"],
                ["loss", settings.loss],
                ["dev sentence nDCG@10: listed order → start → trained",
                 f"{card['dev_sentence_ndcg@10_listed']:.4f} → {card['dev_sentence_ndcg@10_start']:.4f} → "
                 f"{card['dev_sentence_ndcg@10']:.4f}"],
                ["per-sentence threshold (dev F1)", f"{card['threshold']:.4f} ({card['dev_sentence_f1']:.4f})"],
                ["best epoch", card["best_epoch"]], ["training time", f"{card['training_seconds']:.0f} s"]]
        if card["dev_abstention_on_relevant_documents"]:
            sep = card["dev_abstention_on_relevant_documents"]
            rows.append(["dev abstention from the best score on the relevant documents: AUC / best accuracy "
                         f"({sep['unanswerable']} of {sep['queries']} queries unanswerable)",
                         f"{sep['auc']:.4f} / {sep['best_accuracy']:.4f}"])
        return artifact_output(pending.ref, tracked, {
            "trained": dg.MetadataValue.bool(True),
            "card": dg.MetadataValue.md(markdown_table(["", ""], rows) + "\n\nDev: every sentence of each dev query's "
                                        "relevant documents, its gold evidence sentences the relevant ones."),
            "dev_sentence_ndcg@10": dg.MetadataValue.float(round(card["dev_sentence_ndcg@10"], 4)),
            "dev_sentence_f1": dg.MetadataValue.float(round(card["dev_sentence_f1"], 4)),
            "threshold": dg.MetadataValue.float(card["threshold"]),
            **plot_metadata(final, curves),
        })
