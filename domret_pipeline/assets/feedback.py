"""Active learning: the queue of queries to label next, from the serving champion's doubts."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from ..core.artifacts import ArtifactRef, atomic_artifact_dir
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import write_jsonl
from ..core.evaluation.report import markdown_table
from ..core.manifests import LabelingQueueManifest, write_manifest
from ..resources import ArtifactStore, FeedbackStoreResource, MlflowTracker
from .common import ARTIFACT_IO, artifact_output

QUEUE_VERSION = "1"


class LabelingQueueConfig(dg.Config):
    top_k: int = Field(default=50, description="Queries in the queue.")
    include_feedback_queries: bool = Field(default=True, description="Add the query texts users sent as feedback to the pool.")


@dg.asset(
    group_name="feedback",
    code_version=QUEUE_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "The failure slice to label next: train/dev and feedback queries (never the frozen test split) "
        "where the champion (this run's bundle when there is none) abstained, where dense and BM25 "
        "disagree most, or where the top scores are closest. Export it with `domret feedback queue`."
    ),
)
def labeling_queue(
    context: dg.AssetExecutionContext,
    config: LabelingQueueConfig,
    serving_config: ArtifactRef,
    labeled_queries: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
    feedback: FeedbackStoreResource,
) -> dg.Output[ArtifactRef]:
    from ..core.answers.extractive import AnswerSettings
    from ..core.feedback.active_learning import labeling_queue as build_queue
    from ..core.feedback.store import feedback_query_id
    from ..core.retrieval.encoder import set_offline
    from ..core.serving.bundle import open_bundle

    set_offline(True)
    with mlflow.run(context, QUEUE_VERSION) as tracked:
        registry = mlflow.registry()
        champion = registry.champion() if registry else None
        source = champion.serving_config["path"] if champion else serving_config.path
        opened = open_bundle(source, load_all=True)
        labels = LabeledQueries.load(labeled_queries.path)
        pool = {q: t for q, t in labels.queries.items() if labels.splits.get(q) != "test"}
        if config.include_feedback_queries:
            store = feedback.store()
            store.migrate()
            for row in store.rows():
                qid = feedback_query_id(row)
                if labels.splits.get(qid) != "test":
                    pool.setdefault(qid, row.query)
        settings = AnswerSettings.from_bundle(opened.bundle)
        rows = build_queue(opened, pool, opened.documents, settings.threshold, settings, config.top_k)
        with atomic_artifact_dir(artifacts.path(), "labeling_queue") as pending:
            write_jsonl(pending.path / "queue.jsonl", rows)
            write_manifest(pending.path, LabelingQueueManifest(served_by="champion" if champion else "this run",
                                                               serving_config=Path(source).name, pool=len(pool)))
        counts = {"pool": len(pool), "queued": len(rows), "abstained": sum(r["abstained"] for r in rows)}
        tracked.log_metrics(counts)
        table = [[r["query_id"], r["query"][:80], ", ".join(r["reasons"]), r["disagreement"], r["margin"]] for r in rows[:15]]
        return artifact_output(pending.ref, tracked, {
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "served_by": f"champion v{champion.version}" if champion else "this run's bundle (no champion yet)",
            "queue": dg.MetadataValue.md(markdown_table(["query id", "query", "why", "disagreement", "margin"], table)),
        })
