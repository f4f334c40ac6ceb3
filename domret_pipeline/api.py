"""Python API for the query-time pipeline: load what a run materialized and search it.

    from domret_pipeline.api import load_search_pipeline
    pipeline = load_search_pipeline()              # the champion (else the latest materialized bundle)
    pipeline = load_search_pipeline(run_id="...")  # the bundle a named Dagster run produced
    pipeline = load_search_pipeline(latest=True)   # the latest published bundle, promoted or not
    for hit in pipeline.search(["who approves SLO exceptions?"])[0].hits: ...
    pipeline.search(["salary bands"], principal=["hr"])  # as a principal: public and hr documents

Every search runs as a principal, the access groups it holds (``core.retrieval.access``);
a search that names none reads public documents only.

The bundle is the ``serving_config`` artifact: the serving configuration chosen on dev and the
references (path + content hash) of the index, BM25 index, reranker and chunks it was chosen
with. Every referenced artifact is re-hashed before it is used.
"""

from __future__ import annotations

from pathlib import Path

from . import locations
from .core.artifacts import ArtifactRef
from .core.serving.search import SearchPipeline


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
    home = locations.home(home)
    if not run_id and not latest:
        registry = default_registry(home)
        champion = registry.champion() if registry else None
        if champion is not None:
            return ArtifactRef(champion.serving_config["path"], champion.serving_config["sha256"])
    if run_id:
        path = home / "refs" / "runs" / run_id / "serving_config.json"
        if not path.is_file():
            raise NotMaterializedError(f"run {run_id} did not materialize serving_config ({path} is missing)")
    else:
        path = home / "refs" / "serving_config.json"
        if not path.is_file():
            raise NotMaterializedError(f"no serving bundle yet ({path} is missing): run `domret run` first")
    return ArtifactRef.from_json(path.read_text(encoding="utf-8"))


def load_search_pipeline(home: str | Path | None = None, run_id: str | None = None, rerank: bool | None = None,
                         top_n: int | None = None, latest: bool = False) -> SearchPipeline:
    """The champion's pipeline (or a named run's, or with ``latest`` the latest
    materialized one). ``rerank=False`` switches the reranker off (``True`` forces it on)."""
    from .core.retrieval.encoder import set_offline
    from .core.serving.bundle import open_bundle

    set_offline(True)
    return open_bundle(serving_ref(home, run_id, latest).verify(), rerank, top_n).pipeline
