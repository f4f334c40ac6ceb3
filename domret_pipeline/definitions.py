"""The one Definitions object of the project.

Resources are chosen per environment with ``DOMRET_ENV``: ``local`` (default: project-local
SQLite MLflow store and artifacts under ``.domret/``) or ``team`` (a tracking server and an
artifact root from environment variables).
"""

from __future__ import annotations

import os

import dagster as dg

from . import locations
from .assets.answers import sentence_selector
from .assets.common import ARTIFACT_IO
from .assets.corpus import corpus_chunks, corpus_documents
from .assets.evaluation import evaluation_report
from .assets.embedding_shards import base_chunk_embeddings, tuned_chunk_embeddings
from .assets.indexes import base_faiss_index, bm25_index, faiss_index
from .assets.feedback import labeling_queue
from .assets.labels import labeled_queries
from .assets.pseudo_queries import pseudo_queries
from .assets.release import champion_release
from .assets.reranking import reranker_adapter, serving_config
from .assets.training import embedding_checkpoint, hard_negatives
from .checks import ALL_CHECKS
from .io_manager import ArtifactRefIOManager
from .jobs import encode_shards_job, full_pipeline_job, retrain_job
from .resources import ArtifactStore, EmbeddingModel, FeedbackStoreResource, MlflowTracker
from .run_transactions import domret_publish, domret_recovery
from .sensors import feedback_sensor, weekly_retrain
from .sharded_retrain import sharded_retrain_sensor

ASSETS = [
    corpus_documents, corpus_chunks, labeled_queries, pseudo_queries, base_faiss_index, bm25_index,
    hard_negatives, embedding_checkpoint, faiss_index, reranker_adapter, sentence_selector, serving_config,
    evaluation_report,
    champion_release, labeling_queue,
]
# The partitioned chunk-embedding shards: their own job on the Dask executor (jobs.py); the
# pipeline's assets above do not need them (the indexes read them only with vectors_from: shards).
SHARD_ASSETS = [base_chunk_embeddings, tuned_chunk_embeddings]


def resources_for(env: str, home: str | None = None) -> dict:
    home = locations.home(home)
    if env == "local":
        return {
            "artifacts": ArtifactStore(root=locations.artifacts_root(home)),
            "mlflow": MlflowTracker(
                tracking_uri=locations.local_tracking_uri(home), artifact_location=locations.mlflow_artifacts(home)
            ),
            "embedding_model": EmbeddingModel(),
            "feedback": FeedbackStoreResource(url=locations.local_feedback_url(home),
                                              retrain_run_config=os.environ.get("DOMRET_RETRAIN_CONFIG", "")),
            ARTIFACT_IO: ArtifactRefIOManager(base_dir=locations.refs_dir(home)),
        }
    if env == "team":
        return {
            "artifacts": ArtifactStore(root=dg.EnvVar("DOMRET_ARTIFACT_ROOT")),
            "mlflow": MlflowTracker(
                tracking_uri=dg.EnvVar("MLFLOW_TRACKING_URI"),
                artifact_location=dg.EnvVar("DOMRET_MLFLOW_ARTIFACTS"),
                ui_url=dg.EnvVar("MLFLOW_UI_URL"),
            ),
            "embedding_model": EmbeddingModel(),
            "feedback": FeedbackStoreResource(url=dg.EnvVar("DOMRET_FEEDBACK_URL"),
                                              retrain_run_config=os.environ.get("DOMRET_RETRAIN_CONFIG", "")),
            ARTIFACT_IO: ArtifactRefIOManager(base_dir=dg.EnvVar("DOMRET_REFS_DIR")),
        }
    raise ValueError(f"DOMRET_ENV must be 'local' or 'team', not {env!r}")


defs = dg.Definitions(
    assets=[*ASSETS, *SHARD_ASSETS],
    asset_checks=ALL_CHECKS,
    jobs=[full_pipeline_job, retrain_job, encode_shards_job],
    sensors=[feedback_sensor, domret_publish, domret_recovery, sharded_retrain_sensor],
    schedules=[weekly_retrain],
    resources=resources_for(os.environ.get("DOMRET_ENV", "local")),
)
