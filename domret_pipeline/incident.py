"""Incident review (``domret incident``, ``api.incident``): the audit row, the replays, and the
lineage joined with the orchestration records.

The core builds what can be known from the artifacts alone (``core.audit.incident``: replays and
their diff; ``core.release.lineage``: the bundle's lineage and what differs from the champion's).
This module adds what only the orchestration stores know, joined by content hash:
- the registry version that holds the bundle, its release MLflow run and its tags (the Dagster
  run that registered it, the feedback ids its labels merged);
- for each artifact, its Dagster materialization (run, code version, data version, time), found
  by content hash in the instance at ``$DAGSTER_HOME`` (a ``--select`` run reads upstream
  artifacts that an earlier run materialized: each artifact is found in the run that made it);
- its MLflow run (assets tag theirs with ``domret.data_version``, the content hash), with links
  to the Dagster UI (``$DAGSTER_UI_URL``) and the MLflow UI (``$MLFLOW_UI_URL``).
Every lookup that fails (no instance, a pruned run) leaves a note, never an error: a review
shows what it could find.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import locations
from .core.artifacts import ArtifactRef
from .core.audit.incident import (IncidentReport, Replay, diff_request, query_for_replay, replay_request,
                                  served_texts)
from .core.audit.store import AuditRecord, AuditStore
from .core.release.lineage import BundleLineage, compare_lineages, read_lineage

DEFAULT_DAGSTER_UI = "http://localhost:3000"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"  # MlflowTracker.ui_url's default


def dagster_ui(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("DAGSTER_UI_URL") or DEFAULT_DAGSTER_UI).rstrip("/")


def mlflow_ui(explicit: str | None = None) -> str:
    return (explicit or os.environ.get("MLFLOW_UI_URL") or DEFAULT_MLFLOW_UI).rstrip("/")


def dagster_instance(instance=None):
    """The given instance, else the one at ``$DAGSTER_HOME``, else None (lineage then comes from
    the artifacts and MLflow only)."""
    if instance is not None or not os.environ.get("DAGSTER_HOME"):
        return instance
    from dagster import DagsterInstance

    try:
        return DagsterInstance.get()
    except Exception:  # noqa: BLE001 - a broken instance must not stop the review
        return None


def _materialization(instance, name: str, sha256: str, prefer_run: str | None) -> dict | None:
    """The Dagster materialization of asset ``name`` whose content hash is ``sha256``: in
    ``prefer_run`` if that run made it, else the latest run that did."""
    import dagster as dg

    records = instance.fetch_materializations(dg.AssetKey(name), limit=1000).records
    found = []
    for record in records:
        m = record.asset_materialization
        content = m.metadata.get("content_sha256")
        if (content.value if content is not None else None) == sha256 or m.tags.get("dagster/data_version") == sha256[:32]:
            found.append(record)
    if not found:
        return None
    chosen = next((r for r in found if r.run_id == prefer_run), max(found, key=lambda r: r.timestamp))
    m = chosen.asset_materialization
    return {"run_id": chosen.run_id, "code_version": m.tags.get("dagster/code_version"),
            "data_version": m.tags.get("dagster/data_version"), "timestamp": chosen.timestamp,
            "storage_id": chosen.storage_id, "other_runs": sorted({r.run_id for r in found} - {chosen.run_id})}


def join_dagster(lineage: BundleLineage, instance, prefer_run: str | None = None) -> None:
    """Each node's materialization (in ``prefer_run``, the release run, when that run made it)."""
    for node in lineage.nodes.values():
        node.materialization = _materialization(instance, node.name, node.sha256, prefer_run)


def compare_code_versions(lineages: list[BundleLineage]) -> None:
    """Put each artifact's Dagster code version among its settings where every lineage knows
    it, so a comparison names a code change ("code version 2 -> 3"); where one does not (a run
    pruned from the instance) it is left out rather than shown as a change."""
    names = set().union(*(lineage.nodes for lineage in lineages)) if lineages else set()
    for name in names:
        nodes = [lineage.nodes[name] for lineage in lineages if name in lineage.nodes]
        if all(n.materialization and n.materialization.get("code_version") for n in nodes):
            for n in nodes:
                n.settings["code version"] = n.materialization["code_version"]


def _experiments(client) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


def join_mlflow(lineage: BundleLineage, client, ui: str) -> None:
    """Each node's MLflow run, by the ``domret.data_version`` tag its asset set (the run of the
    same Dagster run as the materialization when several made the same bytes)."""
    experiments = _experiments(client)
    for node in lineage.nodes.values():
        runs = client.search_runs(experiments, filter_string=f"tags.`domret.data_version` = '{node.sha256}'",
                                  max_results=50) if experiments else []
        if not runs:
            continue
        dagster_run = (node.materialization or {}).get("run_id")
        run = next((r for r in runs if r.data.tags.get("dagster.run_id") == dagster_run), runs[-1])
        node.mlflow = {"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                       "url": f"{ui}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}",
                       "dagster_run_id": run.data.tags.get("dagster.run_id"),
                       "code_version": run.data.tags.get("dagster.code_version"), "status": run.info.status}


def _registry_record(registry, record: AuditRecord, ui: str) -> dict | None:
    """The registered version that holds the served bundle: the row's version, else the newest
    version whose bundle has the row's hash."""
    versions = registry.versions()
    chosen = next((v for v in versions if v.version == record.registry_version), None)
    if chosen is None:
        chosen = next((v for v in reversed(versions) if v.serving_config.get("sha256") == record.bundle_sha256), None)
    if chosen is None:
        return None
    mv = registry.client.get_model_version(registry.name, chosen.version)
    out = {"model": registry.name, "version": chosen.version, "aliases": chosen.aliases,
           "dagster_run_id": chosen.tags.get("domret.dagster_run_id"), "feedback_ids": chosen.tags.get("domret.feedback_ids"),
           "labeled_queries": chosen.tags.get("domret.labeled_queries"),
           "release_state": chosen.tags.get("domret.release_state"), "mlflow_run_id": mv.run_id,
           "evaluation_report": (chosen.evaluation_report or {}).get("sha256"), "metrics": chosen.metrics}
    if mv.run_id:
        experiment = registry.client.get_run(mv.run_id).info.experiment_id
        out["mlflow_url"] = f"{ui}/#/experiments/{experiment}/runs/{mv.run_id}"
    return out


def _bundle_run(lineage: BundleLineage, registry_record: dict | None, record: AuditRecord, refs: Path) -> dict:
    """The Dagster run that produced the bundle, and where that was read."""
    node = lineage.nodes.get("serving_config")
    if node is not None and node.materialization:
        return {"run_id": node.materialization["run_id"], "source": "serving_config materialization"}
    if record.served_from.startswith("run:"):
        return {"run_id": record.served_from[4:], "source": "the request named the run"}
    if registry_record and registry_record.get("dagster_run_id"):
        return {"run_id": registry_record["dagster_run_id"], "source": "registry tag domret.dagster_run_id"}
    for path in sorted(refs.glob("runs/*/serving_config.json")):
        if ArtifactRef.from_json(path.read_text(encoding="utf-8")).sha256 == record.bundle_sha256:
            return {"run_id": path.parent.name, "source": f"{path}"}
    if node is not None and node.mlflow and node.mlflow.get("dagster_run_id"):
        return {"run_id": node.mlflow["dagster_run_id"], "source": "MLflow tag dagster.run_id"}
    return {}


def _open_service(path: str, sha256: str, version: str | None, source: str):
    from .core.serving.bundle import open_bundle
    from .core.serving.service import ServedFrom, Service

    opened = open_bundle(ArtifactRef(path, sha256).verify())
    return Service(opened, ServedFrom(path, sha256, version, source), audit=None)


def _replays(report: IncidentReport, query: str, targets: list[tuple[str, str | None, str, str]]) -> None:
    """Replay against each (label, version, path, sha256); a bundle that cannot be opened is a
    replay with an error."""
    for label, version, path, sha in targets:
        try:
            service = _open_service(path, sha, version, "champion" if label.startswith("champion") else "bundle")
            replay = replay_request(service, report.record, query, label, version)
        except (OSError, ValueError, KeyError) as error:
            replay = Replay(label, version, sha, report.record.kind, error=f"{type(error).__name__}: {error}")
        report.replays.append(replay)
        if replay.error is None:
            report.diffs.append(diff_request(report.record, replay, report.served_texts))


def serve_now(query: str, principal=None, kind: str = "answer", home=None) -> tuple[AuditRecord, str | None]:
    """Serve ``query`` with the champion as a live, audited request (``--query``) and return its
    row (the row as the service built it, with a note, when the store could not write it)."""
    from .api import audit_settings, load_service

    service = load_service(home)
    try:
        served = service.answer(query, principal) if kind == "answer" else service.search(query, principal)
    finally:
        service.close()
    settings = audit_settings(home)
    row = AuditStore(settings.url, settings.query_mode).get(served.request_id) if not service.audit_failures else None
    if row is not None:
        return row, None
    return service.record_of(served), f"the audit row was not written ({service.audit.last_error}): reviewing the request as served"


def _audit_row(audit_id, query, principal, kind, home) -> tuple[AuditRecord, list[str]]:
    """The row to review: audit row ``audit_id``, else the row of ``query`` served now."""
    from .api import audit_settings

    if audit_id is None:
        if query is None:
            raise ValueError("an audit id, or a query to serve now (--query), is needed")
        record, note = serve_now(query, principal, kind, home)
        return record, [note] if note else []
    settings = audit_settings(home)
    store = AuditStore(settings.url, settings.query_mode)
    store.migrate()
    record = store.get(audit_id)
    if record is None:
        raise LookupError(f"no audit row {audit_id} in {store.display_url}")
    return record, []


def _join(report: IncidentReport, lineages: list[tuple[BundleLineage, str | None]], registry, instance,
          ui: str) -> None:
    """Each lineage's materializations (preferring the run its registry version names) and MLflow
    runs; then the code versions every lineage knows, for the comparison."""
    for lineage, prefer in lineages:
        if instance is not None:
            join_dagster(lineage, instance, prefer)
        if registry is not None:
            join_mlflow(lineage, registry.client, ui)
    compare_code_versions([lineage for lineage, _ in lineages])


def incident(audit_id: int | str | None = None, query: str | None = None, principal=None, kind: str = "answer",
             home: str | Path | None = None, instance=None, dagster_url: str | None = None,
             mlflow_url: str | None = None) -> IncidentReport:
    """The review of audit row ``audit_id`` (its id or request id); with only ``query``, that query
    is served now by the champion, as ``principal``, and its row reviewed. ``query`` with an id
    supplies the text of a row kept as a hash. Raises LookupError when the row does not exist."""
    from .api import default_registry
    from .registry import CHAMPION, PREVIOUS

    home = locations.home(home)
    record, notes = _audit_row(audit_id, query, principal, kind, home)
    report = IncidentReport(record, notes=notes)
    text, note = query_for_replay(record, query)
    notes += [note] if note else []
    lineage = read_lineage(record.bundle_path, record.bundle_sha256) if record.bundle_path and record.bundle_sha256 else None
    if lineage is not None:
        chunks, documents = lineage.nodes.get("corpus_chunks"), lineage.nodes.get("corpus_documents")
        report.served_texts = served_texts(record, chunks and chunks.path, documents and documents.path)
    report.lineage = lineage

    registry = default_registry(home)
    aliased = [(f"{label} v{v.version}", v) for label, v in
               (("champion", registry.get(CHAMPION) if registry else None),
                ("previous champion", registry.get(PREVIOUS) if registry else None)) if v is not None]
    targets = [(label, v.version, v.serving_config["path"], v.serving_config["sha256"]) for label, v in aliased]
    if record.bundle_sha256 and record.bundle_path and record.bundle_sha256 not in {t[3] for t in targets}:
        served_label = f"served bundle v{record.registry_version}" if record.registry_version else "served bundle"
        targets.append((served_label, record.registry_version, record.bundle_path, record.bundle_sha256))
    if not aliased:
        notes.append("no champion in the registry: replayed against the served bundle only")
    if text is not None:
        from .core.retrieval.encoder import set_offline

        set_offline(True)
        _replays(report, text, targets)

    instance = dagster_instance(instance)
    if instance is None:
        notes.append("no Dagster instance (set DAGSTER_HOME): materializations are not joined")
    ui = mlflow_ui(mlflow_url)
    report.registry = _registry_record(registry, record, ui) if registry and record.bundle_sha256 else None
    if lineage is None:
        return report
    others = [(label, read_lineage(v.serving_config["path"], v.serving_config["sha256"]), v.tags.get("domret.dagster_run_id"))
              for label, v in aliased if v.serving_config["sha256"] != record.bundle_sha256]
    _join(report, [(lineage, (report.registry or {}).get("dagster_run_id")), *((o, p) for _, o, p in others)],
          registry, instance, ui)
    report.comparisons = [compare_lineages(lineage, other, label) for label, other, _ in others]
    report.dagster = _bundle_run(lineage, report.registry, record, Path(locations.refs_dir(home)))
    if report.dagster.get("run_id"):
        base = dagster_ui(dagster_url)
        report.dagster["url"] = f"{base}/runs/{report.dagster['run_id']}"
        run = instance.get_run_by_id(report.dagster["run_id"]) if instance is not None else None
        report.dagster["status"] = run.status.value if run is not None else None
        for node in lineage.nodes.values():
            if node.materialization:
                node.materialization["url"] = f"{base}/runs/{node.materialization['run_id']}"
    return report
