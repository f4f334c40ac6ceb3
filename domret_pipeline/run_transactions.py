"""A run as a transaction: sweep before it starts, publish after it succeeds, on every path.

- ``domret run`` (in process): :func:`prepare_run` before ``execute_in_process``, then
  :func:`finish_run` when it succeeded.
- Runs launched from the Dagster UI, the sensor or the schedule (the daemon): the
  ``domret_publish`` run-status sensor calls the same :func:`finish_run` on each successful run,
  and ``domret_recovery`` calls the same sweep on a timer.

Why a run-status sensor rather than publishing from the run's last step or a hook: a step does
not know it is the last one to finish (blocking checks, skipped branches, re-executions), and
Dagster hooks are per op. The sensor acts on the run's SUCCESS event, which Dagster writes only
once the whole run (checks included) succeeded; its cursor advances only after an evaluation
completes, so a daemon that was down or killed catches up later, and :func:`publish_run` is
idempotent, so a run the CLI already published (the CLI writes to the same instance) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .publication import Outcome, publish_run, run_dir
from .io_manager import ArtifactRefIOManager
from .recovery import sweep
from .resources import ArtifactStore, MlflowTracker

ARTIFACT_IO = "artifact_io_manager"  # the key assets use (assets/common.py)


@dataclass
class Stores:
    """Where a run's references, artifacts and MLflow store are."""

    refs_dir: str
    artifacts_root: str
    tracking_uri: str | None  # None when MLflow tracking is disabled
    registry_name: str

    def registry(self):
        if not self.tracking_uri:
            return None
        if self.tracking_uri.startswith("sqlite:///") and not Path(self.tracking_uri[10:]).is_file():
            return None  # no store yet: nothing registered, and a sweep must not create one
        from .registry import Registry

        return Registry(self.tracking_uri, self.registry_name)


def _value(value):
    return value.get_value() if isinstance(value, dg.EnvVar) else value


def stores_from_resources(resources: dict, run_config: dict | None = None) -> Stores:
    """The stores a run with these resources (and this run config's resource overrides) uses."""
    overrides = (run_config or {}).get("resources") or {}

    def field(name: str, attr: str):
        config = (overrides.get(name) or {}).get("config") or {}
        return config[attr] if attr in config else _value(getattr(resources[name], attr))

    enabled = field("mlflow", "enabled")
    return Stores(refs_dir=str(field(ARTIFACT_IO, "base_dir")), artifacts_root=str(field("artifacts", "root")),
                  tracking_uri=str(field("mlflow", "tracking_uri")) if enabled else None,
                  registry_name=str(field("mlflow", "registered_model")))


def prepare_run(stores: Stores, instance) -> list[str]:
    """The start-up sweep (recovery.py): what it closed, one line each."""
    return sweep(instance, stores.artifacts_root, stores.refs_dir, stores.tracking_uri, stores.registry()).lines()


def finish_run(stores: Stores, run_id: str) -> Outcome:
    """Publish a run that succeeded (publication.py): the one function every launch path calls."""
    return publish_run(stores.refs_dir, run_id, stores.registry())


def run_artifact(stores: Stores, run_id: str, asset: str) -> Path | None:
    """The verified artifact folder ``asset`` has in ``run_id`` (published or not), or None."""
    from .core.artifacts import ArtifactRef

    path = run_dir(stores.refs_dir, run_id) / f"{asset}.json"
    return ArtifactRef.from_json(path.read_text(encoding="utf-8")).verify() if path.is_file() else None


def _stores(io: ArtifactRefIOManager, artifacts: ArtifactStore, mlflow: MlflowTracker, run_config=None) -> Stores:
    return stores_from_resources({ARTIFACT_IO: io, "artifacts": artifacts, "mlflow": mlflow}, run_config)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="domret_publish",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,  # without it, runs launched from the UI never publish
    description="Publishes each successful run's references (and its champion promotion) as one step.",
)
def domret_publish(context: dg.RunStatusSensorContext, artifact_io_manager: ArtifactRefIOManager,
                   artifacts: ArtifactStore, mlflow: MlflowTracker):
    stores = _stores(artifact_io_manager, artifacts, mlflow, context.dagster_run.run_config)
    context.log.info(finish_run(stores, context.dagster_run.run_id).message())


@dg.sensor(
    name="domret_recovery",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Closes what killed runs left open: STARTED runs, RUNNING MLflow runs, staging folders.",
)
def domret_recovery(context: dg.SensorEvaluationContext, artifact_io_manager: ArtifactRefIOManager,
                    artifacts: ArtifactStore, mlflow: MlflowTracker):
    lines = prepare_run(_stores(artifact_io_manager, artifacts, mlflow), context.instance)
    return dg.SkipReason("; ".join(lines) or "nothing left open by a dead process")
