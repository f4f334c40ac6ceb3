"""The labeled queries, split by a stable hash of the query id into train/dev/test."""


from collections import Counter

import dagster as dg

from ..config import LabelsConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, write_json
from ..core.data.labels import LabeledQueries, drop_test_repeats
from ..core.data.loaders import load_labels
from ..core.data.serialization import read_chunks, read_documents, write_jsonl
from ..core.data.splits import SPLITS, assign_splits
from ..core.errors import InputDataError, RowIssue
from ..core.evaluation.report import markdown_table
from ..core.manifests import FeedbackUse, LabeledQueriesManifest, write_manifest
from ..core.retrieval.access import Principal
from ..core.training.access import readable_chunks, restrict_labels
from ..core.weak.pseudo_evaluation import NOT_USER_RELEVANCE, PseudoEvaluation, add_pseudo_evaluation, wanted
from ..resources import ArtifactStore, FeedbackStoreResource, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, issues_table

LABELS_VERSION = "4"  # 4: held-out pseudo-queries in zero-label mode; 3: train/dev restricted to the training principal


def build_labeled_queries(config: LabelsConfig, documents) -> tuple[LabeledQueries, list[RowIssue]]:
    by_id = {d.doc_id: d for d in documents}
    if (config.queries_path is None) != (config.qrels_path is None):
        raise ValueError("labeled_queries: set both queries_path and qrels_path, or neither (zero-label mode)")
    if config.queries_path is None:  # zero-label mode: no judged query (a frozen test set may still come)
        labels, issues = LabeledQueries({}, {}, {}), []
    else:
        main = load_labels(config.queries_path, config.qrels_path, set(by_id), config.evidence_path, by_id,
                           config.on_bad_rows)
        splits = assign_splits(main.queries, config.dev_fraction, config.test_fraction, config.split_salt)
        labels = LabeledQueries(main.queries, splits, main.qrels, main.evidence, dict(main.slices))
        issues = list(main.quarantined)
    if config.frozen_test_queries_path:
        if not config.frozen_test_qrels_path:
            raise ValueError("frozen_test_queries_path is set but frozen_test_qrels_path is not")
        frozen = load_labels(
            config.frozen_test_queries_path, config.frozen_test_qrels_path, set(by_id),
            config.frozen_test_evidence_path, by_id, config.on_bad_rows,
        )
        issues += frozen.quarantined
        clash = sorted(set(frozen.queries) & set(main.queries))
        if clash:
            raise InputDataError(
                [RowIssue(config.frozen_test_queries_path, 0, f"query id also in the training labels: {q!r}", q) for q in clash]
            )
        # The external set replaces the hashed test split; those queries go back to training.
        for qid, split in list(labels.splits.items()):
            if split == "test":
                labels.splits[qid] = "train"
        labels.queries.update(frozen.queries)
        labels.qrels.update(frozen.qrels)
        labels.evidence.extend(frozen.evidence)
        labels.slices.update(frozen.slices)
        labels.splits.update({q: "test" for q in frozen.queries})
    return labels, issues


def _pseudo_evaluation(config: LabelsConfig, labels: LabeledQueries, documents, corpus_chunks: ArtifactRef,
                       principal: Principal) -> PseudoEvaluation:
    """Held-out pseudo-queries into dev and test when ``config.pseudo_evaluation`` wants them
    (core/weak/pseudo_evaluation.py), cut with the pseudo_queries asset's default filters."""
    from ..config import PseudoQueriesConfig

    use, reason = wanted(config.pseudo_evaluation, labels)
    if not use:
        return PseudoEvaluation(False, reason, {}, 0)
    chunks = readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)
    settings = PseudoQueriesConfig(kinds=list(config.pseudo_eval_kinds)).settings()
    result = add_pseudo_evaluation(labels, documents, chunks, settings, config.pseudo_eval_fraction,
                                   config.pseudo_eval_max_queries, config.split_salt)
    result.reason = reason
    if not labels.qrels_for("dev") or not labels.qrels_for("test"):
        raise ValueError(f"labeled_queries: zero-label mode found no pseudo-query for dev or test in "
                         f"{result.held_out_documents} held-out documents (raise pseudo_eval_fraction, or check "
                         "pseudo_eval_kinds against the corpus)")
    return result


@dg.asset(
    group_name="labels",
    code_version=LABELS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Labeled queries (BEIR queries + qrels, optional sentence evidence) checked against the corpus "
        "and split train/dev/test by a stable hash of the query id: the test split is the frozen "
        "evaluation set. An external frozen query set can replace it. With no judged train query "
        "(zero-label mode), held-out pseudo-queries (slice pseudo_query: not user relevance) join dev and test."
    ),
)
def labeled_queries(
    context: dg.AssetExecutionContext,
    config: LabelsConfig,
    corpus_documents: ArtifactRef,
    corpus_chunks: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
    feedback: FeedbackStoreResource,
) -> dg.Output[ArtifactRef]:
    with mlflow.run(context, LABELS_VERSION) as tracked:
        # feedback_max_id is logged once, resolved (MLflow refuses to change a logged param):
        # the config's None means "every row so far", and an id above the newest row means that row.
        params = {k: v for k, v in config.model_dump().items() if k != "feedback_max_id"}
        tracked.log_params({**params, "corpus_documents_sha256": corpus_documents.sha256})
        documents = read_documents(f"{corpus_documents.path}/documents.jsonl")
        labels, issues = build_labeled_queries(config, documents)
        merged = None
        if config.use_feedback:
            from ..core.feedback.store import merge_feedback

            store = feedback.store()
            store.migrate()
            rows = store.rows(config.feedback_max_id)
            # Chunk ids are "<doc id>#<n>": a label on a chunk judges its document.
            merged = merge_feedback(labels, rows, {r.chunk_id: r.chunk_id.rsplit("#", 1)[0] for r in rows if r.chunk_id},
                                    {d.doc_id for d in documents})
            tracked.log_params({"feedback_max_id": max((r.id for r in rows), default=0),
                                "feedback_max_id_requested": config.feedback_max_id,
                                "feedback_ids_used": f"{merged.used_ids[0]}-{merged.used_ids[-1]}" if merged.used_ids else "none"})
        else:
            tracked.log_params({"feedback_max_id": config.feedback_max_id})
        # After the feedback merge: a feedback query can repeat a test query's text as well.
        dropped = drop_test_repeats(labels) if config.drop_train_repeats_of_frozen_test else []
        # Training reads as its principal: train/dev judgements on documents it may not read go.
        principal = Principal.of(config.training_principal)
        access = {"principal": principal.as_list(),
                  **restrict_labels(labels, {d.doc_id for d in documents if principal.may_read(d.groups)})}
        # Zero-label mode: after the restriction, from documents the training principal may read.
        pseudo_eval = _pseudo_evaluation(config, labels, documents, corpus_chunks, principal)
        with atomic_artifact_dir(artifacts.path(), "labeled_queries") as pending:
            labels.save(pending.path)
            # The chunks it was cut from are an input only when pseudo-queries were added (lineage).
            write_json(pending.path / "pseudo_evaluation.json",
                       {**pseudo_eval.as_dict(), "corpus_chunks": corpus_chunks.sha256 if pseudo_eval.used else None})
            if dropped:
                write_jsonl(pending.path / "dropped_test_repeats.jsonl", dropped)
            write_jsonl(pending.path / "quarantine.jsonl", (i.as_dict() for i in issues))
            feedback_record = None
            if merged is not None:
                feedback_record = FeedbackUse(store=feedback.url.split("@")[-1], used_ids=merged.used_ids,
                                              new_queries=merged.new_queries, new_judgements=merged.new_judgements,
                                              confirmed_negatives=merged.confirmed_negatives, skipped=merged.skipped)
            write_manifest(pending.path, LabeledQueriesManifest(corpus_documents=corpus_documents.sha256,
                                                                feedback=feedback_record, training_access=access,
                                                                extra=config.model_dump()))
        split_counts = Counter(labels.splits.values())
        with_evidence = {e.query_id for e in labels.evidence}
        rows = []
        for split in SPLITS:
            ids = labels.ids(split)
            rows.append([split, len(ids), sum(q in labels.qrels for q in ids),
                         sum(q in with_evidence for q in ids) if labels.evidence else "–",
                         len(labels.without_evidence(split)) if labels.evidence else "–"])
        counts = {f"{s}_queries": split_counts.get(s, 0) for s in SPLITS}
        counts.update(pseudo_dev_queries=pseudo_eval.queries.get("dev", 0),
                      pseudo_test_queries=pseudo_eval.queries.get("test", 0))
        counts.update(judgements=sum(len(v) for v in labels.qrels.values()), evidence_rows=len(labels.evidence),
                      quarantined_rows=len(issues), dropped_test_repeats=len(dropped),
                      judgements_dropped_for_access=access["judgements_dropped"],
                      queries_dropped_for_access=access["queries_dropped"])
        tracked.log_metrics(counts)
        sample = [[q, labels.splits[q], labels.queries[q][:90]] for q in sorted(labels.queries)[:6]]
        return artifact_output(
            pending.ref,
            tracked,
            {
                **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
                "splits": dg.MetadataValue.md(
                    markdown_table(["split", "queries", "with qrels", "with evidence", "abstention cases"], rows)
                ),
                "quarantine": issues_table(issues),
                "dropped_test_repeats_list": dg.MetadataValue.md(markdown_table(
                    ["query", "split", "repeats test query", "text"],
                    [[d["query_id"], d["split"], d["repeats_test_query"], d["text"][:90]] for d in dropped[:50]])
                    if dropped else "none"),
                "sample_rows": dg.MetadataValue.md(markdown_table(["query", "split", "text"], sample)),
                "training_principal": ", ".join(access["principal"]),
                "pseudo_evaluation": (f"{pseudo_eval.queries.get('dev', 0)} dev and {pseudo_eval.queries.get('test', 0)} "
                                      f"test pseudo-queries from {pseudo_eval.held_out_documents} held-out documents "
                                      f"({pseudo_eval.reason}). {NOT_USER_RELEVANCE}" if pseudo_eval.used
                                      else f"none ({pseudo_eval.reason})"),
                **({"feedback_labels_used": dg.MetadataValue.int(len(merged.used_ids)),
                    "feedback_ids": (f"{merged.used_ids[0]}–{merged.used_ids[-1]}" if merged.used_ids else "none"),
                    "feedback_new_judgements": dg.MetadataValue.int(merged.new_judgements),
                    "feedback_skipped": dg.MetadataValue.md(markdown_table(["reason", "labels"], sorted(merged.skipped.items()))
                                                            if merged.skipped else "none")} if merged is not None else {}),
            },
        )
