"""Retrieval indexes over the chunks: FAISS with the base encoder, FAISS with the fine-tuned
checkpoint, and BM25 (the lexical baseline)."""

import time
from pathlib import Path

import dagster as dg

from ..config import BM25Config, IndexConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.chunking import passage_text
from ..core.serialization import read_chunks
from ..resources import ArtifactStore, EmbeddingModel, MlflowTracker, TrackedRun
from .common import ARTIFACT_IO, artifact_output

FAISS_VERSION = "2"
BM25_VERSION = "1"
UNIFORMITY_SAMPLE = 2000
# Fail fast on data: the indexes do not read the labels, but they wait for labeled_queries and
# its blocking checks, so a leaked frozen split or bad qrels stop the run before any encoding
# (Dagster skips only what is downstream of a failed step or check; issue 12 saw 18 minutes of
# corpus encoding after frozen_split_is_clean had failed at second 20).
DATA_GATE = [dg.AssetDep("labeled_queries")]


def _build_dense_index(
    tracked: TrackedRun,
    config: IndexConfig,
    corpus_chunks: ArtifactRef,
    encoder_name: str,
    encoder_path: str,
    max_seq_length: int,
    batch_size: int,
    artifacts: ArtifactStore,
    name: str,
    extra_manifest: dict,
    base_vectors=None,
) -> dg.Output:
    from ..core.dense_index import DenseIndex, build_index, choose_index_type
    from ..core.diagnostics import uniformity
    from ..core.encoder import encode, load_encoder, model_fingerprint

    chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
    index_type = choose_index_type(len(chunks), config.exact_max_vectors)
    params = {**config.model_dump(), "encoder": encoder_name, "max_seq_length": max_seq_length, "index_type": index_type}
    tracked.log_params({**params, "corpus_chunks_sha256": corpus_chunks.sha256, **extra_manifest})
    model = load_encoder(encoder_path, max_seq_length)
    started = time.perf_counter()
    vectors = encode(model, [passage_text(c, config.with_title) for c in chunks], batch_size)
    encode_seconds = time.perf_counter() - started
    index = build_index(vectors, index_type, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search)
    diagnostics = {"uniformity": uniformity(vectors, UNIFORMITY_SAMPLE)}
    if base_vectors is not None:
        diagnostics["uniformity_base"] = uniformity(base_vectors, UNIFORMITY_SAMPLE)
    with atomic_artifact_dir(artifacts.path(), name) as pending:
        DenseIndex(index, [c.chunk_id for c in chunks]).save(pending.path)
        write_json(pending.path / "manifest.json", {
            **params, **extra_manifest,
            "encoder_path": encoder_path,
            "encoder_sha256": model_fingerprint(encoder_path),
            "corpus_chunks": corpus_chunks.sha256,
            "n_vectors": int(index.ntotal),
            "dim": int(vectors.shape[1]),
            "diagnostics": diagnostics,
        })
    stats = {"vectors": int(index.ntotal), "dim": int(vectors.shape[1]), "encode_seconds": round(encode_seconds, 2),
             "chunks_per_second": round(len(chunks) / max(encode_seconds, 1e-9), 1), **diagnostics}
    tracked.log_metrics(stats)
    return artifact_output(pending.ref, tracked, {
        "vectors": dg.MetadataValue.int(stats["vectors"]),
        "dim": dg.MetadataValue.int(stats["dim"]),
        "index_type": index_type,
        "encoder": encoder_name,
        "encode_seconds": dg.MetadataValue.float(stats["encode_seconds"]),
        "chunks_per_second": dg.MetadataValue.float(stats["chunks_per_second"]),
        **{k: dg.MetadataValue.float(round(v, 4)) for k, v in diagnostics.items()},
    })


@dg.asset(
    group_name="retrieval",
    code_version=FAISS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "FAISS index of the chunks built with the current serving encoder (the embedding_model "
        "resource: the base model). It mines hard negatives and is the baseline the fine-tuned "
        "index is compared with. Exact (flat) up to exact_max_vectors chunks, HNSW above."
    ),
    deps=DATA_GATE,
)
def base_faiss_index(
    context: dg.AssetExecutionContext,
    config: IndexConfig,
    corpus_chunks: ArtifactRef,
    embedding_model: EmbeddingModel,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.encoder import resolve_model_path, set_offline

    set_offline(not embedding_model.allow_downloads)
    with mlflow.run(context, FAISS_VERSION) as tracked:
        return _build_dense_index(
            tracked, config, corpus_chunks, embedding_model.model_name_or_path,
            resolve_model_path(embedding_model.model_name_or_path), embedding_model.max_seq_length,
            embedding_model.batch_size, artifacts, "base_faiss_index", {"role": "base"},
        )


@dg.asset(
    group_name="retrieval",
    code_version=FAISS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "FAISS index of the chunks built with the fine-tuned embedding_checkpoint, with the id map "
        "to chunk ids and the uniformity of its space next to the base index's (collapse check)."
    ),
)
def faiss_index(
    context: dg.AssetExecutionContext,
    config: IndexConfig,
    corpus_chunks: ArtifactRef,
    embedding_checkpoint: ArtifactRef,
    base_faiss_index: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.dense_index import DenseIndex, all_vectors
    from ..core.encoder import set_offline

    set_offline(True)
    card = read_json(f"{embedding_checkpoint.path}/card.json")
    base_vectors = all_vectors(DenseIndex.load(Path(base_faiss_index.path)))
    with mlflow.run(context, FAISS_VERSION) as tracked:
        return _build_dense_index(
            tracked, config, corpus_chunks, f"embedding_checkpoint@{embedding_checkpoint.sha256[:12]}",
            f"{embedding_checkpoint.path}/model", card["training"]["max_seq_length"], 64, artifacts, "faiss_index",
            {"role": "tuned", "embedding_checkpoint": embedding_checkpoint.sha256, "base_faiss_index": base_faiss_index.sha256},
            base_vectors=base_vectors,
        )


@dg.asset(
    group_name="retrieval",
    code_version=BM25_VERSION,
    io_manager_key=ARTIFACT_IO,
    description="BM25 index of the chunks (bm25s, English stop words, Snowball stemming): the lexical baseline.",
    deps=DATA_GATE,
)
def bm25_index(
    context: dg.AssetExecutionContext,
    config: BM25Config,
    corpus_chunks: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.bm25 import BM25Index

    with mlflow.run(context, BM25_VERSION) as tracked:
        tracked.log_params({**config.model_dump(), "corpus_chunks_sha256": corpus_chunks.sha256})
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        started = time.perf_counter()
        index = BM25Index.build([passage_text(c) for c in chunks], [c.chunk_id for c in chunks], config.k1, config.b)
        seconds = time.perf_counter() - started
        with atomic_artifact_dir(artifacts.path(), "bm25_index") as pending:
            index.save(pending.path)
            write_json(pending.path / "manifest.json", {**config.model_dump(), "corpus_chunks": corpus_chunks.sha256,
                                                        "n_chunks": len(chunks)})
        vocab = len(index.retriever.vocab_dict)
        tracked.log_metrics({"chunks": len(chunks), "vocabulary": vocab, "index_seconds": seconds})
        return artifact_output(pending.ref, tracked, {
            "chunks": dg.MetadataValue.int(len(chunks)),
            "vocabulary": dg.MetadataValue.int(vocab),
            "index_seconds": dg.MetadataValue.float(round(seconds, 2)),
        })
