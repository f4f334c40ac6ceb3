"""Python API for the query-time pipeline: load what a run materialized and search it.

    from domret_pipeline.api import load_search_pipeline
    pipeline = load_search_pipeline()              # the champion (else the latest materialized bundle)
    pipeline = load_search_pipeline(run_id="...")  # the bundle a named Dagster run produced
    pipeline = load_search_pipeline(latest=True)   # the latest published bundle, promoted or not
    for hit in pipeline.search(["who approves SLO exceptions?"])[0].hits: ...
    pipeline.search(["salary bands"], principal=["hr"])  # as a principal: public and hr documents

Every search runs as a principal, the access groups it holds (``core.retrieval.access``);
a search that names none reads public documents only.

    from domret_pipeline.api import load_service
    service = load_service()                       # the same bundle, serving audited requests
    served = service.answer("who approves SLO exceptions?", principal=["sre"])
    served.answer.sentences, served.result.hits, served.request_id  # the row written to the audit trail
    service.close()                                # writes what is still queued

    from domret_pipeline.api import incident
    report = incident(42)                          # audit row 42 (or its request id): replays, lineage, causes
    print(report.to_text()); report.as_dict()      # what `domret incident 42` prints, or --json
    incident(query="who approves SLO exceptions?", principal=["sre"])  # served now by the champion, then reviewed

The bundle is the ``serving_config`` artifact: the serving configuration chosen on dev and the
references (path + content hash) of the index, BM25 index, reranker and chunks it was chosen
with. Every referenced artifact is re-hashed before it is used.
"""

from __future__ import annotations

from pathlib import Path

from . import locations
from .core.artifacts import ArtifactRef
from .core.serving.search import SearchPipeline
from .core.serving.service import Served, ServedFrom, Service


class NotMaterializedError(FileNotFoundError):
    """The requested run (or any run) has not produced a serving bundle."""


def default_registry(home: str | Path | None = None):
    """The registry of the local MLflow store under DOMRET_HOME (or MLFLOW_TRACKING_URI)."""
    from .registry import Registry

    uri = locations.tracking_uri(home)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None
    return Registry(uri)


def serving_ref(home: str | Path | None = None, run_id: str | None = None, latest: bool = False) -> ArtifactRef:
    """The bundle to serve: a named run's (published or not), else the registry's champion,
    else (or with ``latest``) the latest published one."""
    served = serving_source(home, run_id, latest)
    return ArtifactRef(served.path, served.sha256)


def serving_source(home: str | Path | None = None, run_id: str | None = None, latest: bool = False) -> ServedFrom:
    """:func:`serving_ref` with how it was chosen: the champion's registry version, ``latest``
    or ``run:<id>`` (what the audit trail records of every request)."""
    home = locations.home(home)
    if not run_id and not latest:
        registry = default_registry(home)
        champion = registry.champion() if registry else None
        if champion is not None:
            return ServedFrom(champion.serving_config["path"], champion.serving_config["sha256"], champion.version, "champion")
    if run_id:
        path = home / "refs" / "runs" / run_id / "serving_config.json"
        if not path.is_file():
            raise NotMaterializedError(f"run {run_id} did not materialize serving_config ({path} is missing)")
    else:
        path = home / "refs" / "serving_config.json"
        if not path.is_file():
            raise NotMaterializedError(f"no serving bundle yet ({path} is missing): run `domret run` first")
    ref = ArtifactRef.from_json(path.read_text(encoding="utf-8"))
    return ServedFrom(ref.path, ref.sha256, None, f"run:{run_id}" if run_id else "latest")


def load_search_pipeline(home: str | Path | None = None, run_id: str | None = None, rerank: bool | None = None,
                         top_n: int | None = None, latest: bool = False) -> SearchPipeline:
    """The champion's pipeline (or a named run's, or with ``latest`` the latest
    materialized one). ``rerank=False`` switches the reranker off (``True`` forces it on)."""
    from .core.retrieval.encoder import set_offline
    from .core.serving.bundle import open_bundle

    set_offline(True)
    return open_bundle(serving_ref(home, run_id, latest).verify(), rerank, top_n).pipeline


def audit_settings(home: str | Path | None = None, url: str | None = None):
    """Where served requests are audited (``$DOMRET_AUDIT_URL``, else ``audit.db`` under the
    home) and what a row keeps (``$DOMRET_AUDIT_QUERY``: text or hash;
    ``$DOMRET_AUDIT_RETENTION_DAYS``)."""
    import os

    from .core.audit.store import AuditSettings

    return AuditSettings.from_env(locations.audit_url(home, url), os.environ)


def load_service(home: str | Path | None = None, run_id: str | None = None, rerank: bool | None = None,
                 top_n: int | None = None, latest: bool = False, audit: bool = True) -> Service:
    """The bundle :func:`load_search_pipeline` serves, as a :class:`Service` whose ``search`` and
    ``answer`` write one audit row per request (``audit=False``: none). Call ``close()`` when
    done, so queued rows are written before the process ends (``atexit`` does it otherwise)."""
    from .core.audit.writer import AuditWriter
    from .core.retrieval.encoder import set_offline
    from .core.serving.bundle import open_bundle

    set_offline(True)
    writer = AuditWriter(audit_settings(home)) if audit else None  # a bad setting fails here, before serving
    served_from = serving_source(home, run_id, latest)
    opened = open_bundle(ArtifactRef(served_from.path, served_from.sha256).verify(), rerank, top_n)
    return Service(opened, served_from, writer)


def answer(query: str, principal=None, home: str | Path | None = None,
           run_id: str | None = None, latest: bool = False) -> Served:
    """One audited answer from the champion (or a named run's, or the latest bundle), as
    ``principal`` (its groups; None: public documents only). Loads the bundle on every call:
    keep a :func:`load_service` for more than one."""
    service = load_service(home, run_id, latest=latest)
    try:
        return service.answer(query, principal)
    finally:
        service.close()


def incident(audit_id: int | str | None = None, query: str | None = None, principal=None, kind: str = "answer",
             home: str | Path | None = None, instance=None, dagster_url: str | None = None,
             mlflow_url: str | None = None):
    """The incident review of audit row ``audit_id`` (its id or request id), as
    :class:`~domret_pipeline.core.audit.incident.IncidentReport` (``to_text()``, ``as_dict()``):
    what it retrieved and cited, the same request replayed now by the champion and the previous
    champion with what changed, and the lineage of the bundle that served it joined with the
    Dagster instance (``instance``, else ``$DAGSTER_HOME``) and MLflow, with what differs from the
    champion's. With only ``query``: served now by the champion as ``principal`` (audited), then
    reviewed. Raises LookupError when the row does not exist."""
    from .incident import incident as review

    return review(audit_id, query, principal, kind, home, instance, dagster_url, mlflow_url)
