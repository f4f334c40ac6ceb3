"""Python API for the query-time pipeline: load what a run materialized and search it.

    from domret_pipeline.api import load_search_pipeline
    pipeline = load_search_pipeline()              # the latest materialized serving bundle
    pipeline = load_search_pipeline(run_id="...")  # the bundle a named Dagster run produced
    for hit in pipeline.search(["who approves SLO exceptions?"])[0].hits: ...

The bundle is the ``serving_config`` artifact: the serving configuration chosen on dev and the
references (path + content hash) of the index, BM25 index, reranker and chunks it was chosen
with. Every referenced artifact is re-hashed before it is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.artifacts import ArtifactRef, read_json
from .core.search import SearchPipeline, ServingConfig


class NotMaterializedError(FileNotFoundError):
    """The requested run (or any run) has not produced a serving bundle."""


def serving_ref(home: str | Path | None = None, run_id: str | None = None) -> ArtifactRef:
    home = Path(home or os.environ.get("DOMRET_HOME", ".domret"))
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
                         top_n: int | None = None) -> SearchPipeline:
    """The served pipeline of the latest (or a named) run. ``rerank=False`` switches the
    reranker off (``True`` forces it on with the dev-chosen depth, or 20 candidates)."""
    from .core.bm25 import BM25Index
    from .core.dense_index import open_with_encoder
    from .core.encoder import set_offline
    from .core.serialization import read_chunks

    set_offline(True)
    folder = serving_ref(home, run_id).verify()
    bundle = read_json(folder / "serving.json")
    refs = {name: ArtifactRef(r["path"], r["sha256"]) for name, r in bundle["artifacts"].items()}
    config = ServingConfig.from_dict(bundle["config"])
    if rerank is not None and rerank != config.rerank:
        config.rerank = rerank
        config.reasons = config.reasons + [f"rerank {'forced on' if rerank else 'switched off'} by the caller"]
    if top_n:
        config.top_n = top_n
    index, encoder, _ = open_with_encoder(refs["faiss_index"].verify())
    bm25 = BM25Index.load(refs["bm25_index"].verify()) if config.first_stage == "hybrid" else None
    reranker = None
    if config.rerank:
        from .core.reranker import load_reranker

        reranker = load_reranker(refs["reranker_adapter"].verify() / "merged", bundle["reranker_max_length"])
    chunks = read_chunks(refs["corpus_chunks"].verify() / "chunks.jsonl")
    return SearchPipeline(chunks, index, encoder, config, bm25, reranker, bundle["with_title"])
