"""The model registry: serving bundles as versions of one MLflow registered model.

A *bundle* is a ``serving_config`` artifact: the serving configuration and answer settings,
with the references (path + content hash) of the embedder's index, the reranker, BM25 and
the chunks they need, so the embedder, the reranker and the index travel as one version.

Aliases, not stages:
- ``champion``: what ``domret search`` serves by default;
- ``previous_champion``: the champion before it, so rollback is one command.

Each version is tagged with its bundle and report references and its gate metrics; the
MLflow run it points at is the release run that logged the bundle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .locations import REGISTERED_MODEL

MODEL_NAME = REGISTERED_MODEL  # one definition, in locations.py
CHAMPION, PREVIOUS = "champion", "previous_champion"


@dataclass
class BundleVersion:
    version: str
    serving_config: dict  # {"path", "sha256"}
    evaluation_report: dict | None
    metrics: dict
    aliases: list[str]
    tags: dict


class Registry:
    def __init__(self, tracking_uri: str, name: str = MODEL_NAME):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.name = name

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name, description="domret serving bundles (embedder + reranker + index)")

    def _version(self, mv) -> BundleVersion:
        tags = mv.tags or {}
        return BundleVersion(
            version=str(mv.version),
            serving_config=json.loads(tags["domret.serving_config"]),
            evaluation_report=json.loads(tags["domret.evaluation_report"]) if "domret.evaluation_report" in tags else None,
            metrics=json.loads(tags.get("domret.metrics", "{}")),
            aliases=list(getattr(mv, "aliases", []) or []),
            tags=dict(tags),
        )

    def register(self, run_id: str, serving_config: dict, evaluation_report: dict | None, metrics: dict,
                 extra_tags: dict[str, str] | None = None) -> BundleVersion:
        """A new version pointing at the release run's logged bundle."""
        self._ensure_model()
        tags = {"domret.serving_config": json.dumps(serving_config), "domret.metrics": json.dumps(metrics),
                **(extra_tags or {})}
        if evaluation_report:
            tags["domret.evaluation_report"] = json.dumps(evaluation_report)
        mv = self.client.create_model_version(self.name, source=f"runs:/{run_id}/bundle", run_id=run_id, tags=tags)
        return self._version(self.client.get_model_version(self.name, mv.version))

    def get(self, alias: str) -> BundleVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self._version(self.client.get_model_version_by_alias(self.name, alias))
        except MlflowException:
            return None

    def champion(self) -> BundleVersion | None:
        return self.get(CHAMPION)

    def promote(self, version: str) -> BundleVersion:
        """Make ``version`` the champion; the current champion becomes ``previous_champion``."""
        current = self.champion()
        if current and current.version == str(version):
            return current
        if current:
            self.client.set_registered_model_alias(self.name, PREVIOUS, current.version)
            self.client.set_model_version_tag(self.name, str(version), "domret.previous_champion", current.version)
        self.client.set_registered_model_alias(self.name, CHAMPION, str(version))
        return self.champion()

    def rollback(self) -> BundleVersion:
        """Restore the previous champion; the one rolled back from is left unaliased (its
        version stays registered for inspection)."""
        previous = self.get(PREVIOUS)
        if previous is None:
            raise LookupError(f"{self.name} has no previous champion to roll back to")
        self.client.set_registered_model_alias(self.name, CHAMPION, previous.version)
        before = self.client.get_model_version(self.name, previous.version).tags.get("domret.previous_champion")
        if before:
            self.client.set_registered_model_alias(self.name, PREVIOUS, before)
        else:
            self.client.delete_registered_model_alias(self.name, PREVIOUS)
        return self.champion()

    def versions(self) -> list[BundleVersion]:
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except Exception:  # noqa: BLE001 - no registered model yet
            return []
        return sorted((self._version(self.client.get_model_version(self.name, mv.version)) for mv in found),
                      key=lambda v: int(v.version))
