"""Retrieval indexes over the chunks: FAISS (dense) and BM25 (lexical baseline, later hybrid)."""


import time

import dagster as dg

from ..config import BM25Config, IndexConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, write_json
from ..core.chunking import passage_text
from ..core.serialization import read_chunks
from ..resources import ArtifactStore, EmbeddingModel, MlflowTracker
from .common import ARTIFACT_IO, artifact_output

FAISS_VERSION = "1"
BM25_VERSION = "1"


@dg.asset(
    group_name="retrieval",
    code_version=FAISS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "FAISS index of the chunk embeddings with the id map to chunk ids; exact (flat) up to "
        "exact_max_vectors chunks, HNSW above. Its manifest names the encoder (path and content hash) "
        "that queries must be encoded with. Built with the embedding_model resource until the "
        "fine-tuned embedding_checkpoint asset exists."
    ),
)
def faiss_index(
    context: dg.AssetExecutionContext,
    config: IndexConfig,
    corpus_chunks: ArtifactRef,
    embedding_model: EmbeddingModel,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.dense_index import DenseIndex, build_index, choose_index_type
    from ..core.encoder import encode, model_fingerprint, resolve_model_path

    with mlflow.run(context, FAISS_VERSION) as tracked:
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        index_type = choose_index_type(len(chunks), config.exact_max_vectors)
        params = {**config.model_dump(), "encoder": embedding_model.model_name_or_path,
                  "max_seq_length": embedding_model.max_seq_length, "index_type": index_type}
        tracked.log_params({**params, "corpus_chunks_sha256": corpus_chunks.sha256})
        model = embedding_model.load()
        started = time.perf_counter()
        vectors = encode(model, [passage_text(c, config.with_title) for c in chunks], embedding_model.batch_size)
        encode_seconds = time.perf_counter() - started
        index = build_index(vectors, index_type, config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search)
        with atomic_artifact_dir(artifacts.path(), "faiss_index") as pending:
            DenseIndex(index, [c.chunk_id for c in chunks]).save(pending.path)
            write_json(pending.path / "manifest.json", {
                **params,
                "encoder_path": resolve_model_path(embedding_model.model_name_or_path),
                "encoder_sha256": model_fingerprint(embedding_model.model_name_or_path),
                "corpus_chunks": corpus_chunks.sha256,
                "n_vectors": int(index.ntotal),
                "dim": int(vectors.shape[1]),
            })
        stats = {"vectors": int(index.ntotal), "dim": int(vectors.shape[1]), "encode_seconds": round(encode_seconds, 2),
                 "chunks_per_second": round(len(chunks) / max(encode_seconds, 1e-9), 1)}
        tracked.log_metrics(stats)
        return artifact_output(pending.ref, tracked, {
            "vectors": dg.MetadataValue.int(stats["vectors"]),
            "dim": dg.MetadataValue.int(stats["dim"]),
            "index_type": index_type,
            "encoder": embedding_model.model_name_or_path,
            "encode_seconds": dg.MetadataValue.float(stats["encode_seconds"]),
            "chunks_per_second": dg.MetadataValue.float(stats["chunks_per_second"]),
        })


@dg.asset(
    group_name="retrieval",
    code_version=BM25_VERSION,
    io_manager_key=ARTIFACT_IO,
    description="BM25 index of the chunks (bm25s, English stop words, Snowball stemming): the lexical baseline.",
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
