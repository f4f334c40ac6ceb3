"""The start-up sweep: close what a killed run left open.

A run killed with SIGKILL runs no ``finally``: its Dagster run stays STARTED, the MLflow run of
the step it was in stays RUNNING, its staging folder stays on disk, and a ``champion_release``
it got through leaves a registry version that was never published. :func:`sweep` finds each of
these by owner and closes it, touching only what belongs to a process that is gone:

- Dagster runs STARTING/STARTED whose owning process (tagged by :func:`claim_run`) is dead on
  this host are marked failed (daemon runs on another host are left to Dagster's run monitoring,
  ``dagster.yaml``);
- MLflow runs RUNNING whose ``dagster.run_id`` names a Dagster run that has ended are
  terminated as FAILED;
- staging folders (``<artifacts>/.staging``) whose writer process is dead are removed;
- registry versions still ``pending`` from a Dagster run that failed are deleted (their alias
  never moved: see ``publication.py``);
- a publication whose champion promotion was interrupted is completed.

It runs at the start of ``domret run`` and from the daemon's ``domret_recovery`` sensor.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .core.artifacts import OWNER_SUFFIX
from .core.processes import identity, is_alive
from .publication import complete_publication

OWNER_TAGS = {"host": "domret/owner_host", "pid": "domret/owner_pid", "started": "domret/owner_started"}
LEGACY_STAGING_AGE_S = 3600  # a staging folder without an owner file predates owner files


def owner_tags() -> dict[str, str]:
    """Tags naming this process as the one executing a run."""
    return {tag: identity()[key] for key, tag in OWNER_TAGS.items()}


def claim_run(instance, run_id: str) -> None:
    """Tag the run with the process executing it (called where the run's steps execute, so a
    daemon-launched run is claimed by its run worker, not by the daemon)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and any(run.tags.get(t) != v for t, v in owner_tags().items()):
        instance.add_run_tags(run_id, owner_tags())


@dataclass
class SweepReport:
    failed_runs: list[str] = field(default_factory=list)
    mlflow_runs: list[str] = field(default_factory=list)
    staging: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)
    promoted: str | None = None

    def lines(self) -> list[str]:
        out = [f"marked run {r} failed: its process is gone" for r in self.failed_runs]
        out += [f"closed MLflow run {r} as FAILED: its Dagster run ended" for r in self.mlflow_runs]
        out += [f"removed staging folder {s}: its process is gone" for s in self.staging]
        out += [f"deleted unpublished registry version v{v} of a failed run" for v in self.deleted_versions]
        out += [f"completed an interrupted publication: champion is v{self.promoted}"] if self.promoted else []
        return out


def _dead_runs(instance, report: SweepReport) -> None:
    import dagster as dg

    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                 dg.DagsterRunStatus.STARTING])):
        owner = {key: run.tags.get(tag) for key, tag in OWNER_TAGS.items()}
        if owner["pid"] and is_alive(owner) is False:
            instance.report_run_failed(run, f"process {owner['pid']} on {owner['host']} that executed this run is gone "
                                            "(killed?): marked failed by domret's start-up sweep")
            report.failed_runs.append(run.run_id)


def _ended(instance, run_id: str | None) -> bool:
    run = instance.get_run_by_id(run_id) if run_id else None
    return run is not None and run.is_finished


def _mlflow(instance, tracking_uri: str, report: SweepReport) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return
    for run in client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'", max_results=1000):
        if _ended(instance, run.data.tags.get("dagster.run_id")):
            client.set_tag(run.info.run_id, "domret.closed_by", "start-up sweep: its Dagster run had ended")
            client.set_terminated(run.info.run_id, status="FAILED")
            report.mlflow_runs.append(run.info.run_id)


def _registry(instance, registry, report: SweepReport) -> None:
    import dagster as dg

    for version in registry.versions():
        if version.tags.get("domret.release_state") != "pending" or version.aliases:
            continue
        run = instance.get_run_by_id(version.tags.get("domret.dagster_run_id", ""))
        if run is not None and run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
            registry.client.delete_model_version(registry.name, version.version)
            report.deleted_versions.append(version.version)


def _staging(artifacts_root: Path, report: SweepReport) -> None:
    staging = artifacts_root / ".staging"
    if not staging.is_dir():
        return
    for owner_file in staging.glob("*" + OWNER_SUFFIX):
        folder = owner_file.with_name(owner_file.name[: -len(OWNER_SUFFIX)])
        try:
            owner = json.loads(owner_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # being written right now
        if is_alive(owner) is False:
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                report.staging.append(folder.name)
            owner_file.unlink(missing_ok=True)
    for folder in staging.iterdir():
        orphan = folder.is_dir() and not folder.with_name(folder.name + OWNER_SUFFIX).exists()
        if orphan and time.time() - folder.stat().st_mtime > LEGACY_STAGING_AGE_S:
            shutil.rmtree(folder, ignore_errors=True)
            report.staging.append(folder.name)


def sweep(instance, artifacts_root: str | Path | None, refs_dir: str | Path | None = None,
          tracking_uri: str | None = None, registry=None) -> SweepReport:
    """Close what runs whose process is gone left open (see the module docstring)."""
    report = SweepReport()
    _dead_runs(instance, report)
    if tracking_uri and (not tracking_uri.startswith("sqlite:///") or Path(tracking_uri[10:]).is_file()):
        _mlflow(instance, tracking_uri, report)
    if registry is not None:
        _registry(instance, registry, report)
    if artifacts_root:
        _staging(Path(artifacts_root), report)
    if refs_dir and registry is not None:
        report.promoted = complete_publication(refs_dir, registry)
    return report
