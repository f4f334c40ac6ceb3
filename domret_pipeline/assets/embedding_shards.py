"""The chunk embeddings in shards: one Dagster partition per corpus shard, for the base encoder
and for the fine-tuned checkpoint.

Why static partitions (a fixed shard count, ``DOMRET_CORPUS_SHARDS``) rather than dynamic ones
added as documents arrive: a document's shard is a hash of its id (core/retrieval/shards.py),
so new documents spread over the existing shards and change only the shards they land in; the
partition set, the job and every run's meaning stay the same, and nothing has to register
partitions before a run. Dynamic partitions would fit a corpus that arrives in dated batches
that never change afterwards, which an edited corpus is not.

Each partition is one run (Dagster runs partitions as separate runs: a backfill, or
``domret shards encode``), and those runs execute their step on the Dask cluster named by
``DOMRET_DASK_SCHEDULER`` (jobs.py), so N shards encode on N workers at once. A shard whose
input (its chunks' ids and texts, the encoder's hash, precision and rendering) is unchanged
writes the same bytes, so its partition keeps its content hash and DataVersion; the launcher
does not even start such a shard (shard_runs.stale_shards), and a forced re-run encodes nothing
(the embedding cache).

No MLflow run per shard: the index assembled from the shards records the shards it read.
"""


import time

import dagster as dg

from ..config import IndexConfig, ShardEncodingConfig, corpus_shard_count
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json
from ..core.data.chunking import passage_text
from ..core.data.serialization import read_chunks
from ..core.manifests import DenseIndexManifest, read_manifest
from ..core.retrieval.shards import shard_names
from ..resources import ArtifactStore, EmbeddingModel
from .common import ARTIFACT_IO

SHARD_VERSION = "1"
TUNED_BATCH_SIZE = 64  # the fine-tuned checkpoint's encoding batch (faiss_index's too)
CORPUS_SHARDS = dg.StaticPartitionsDefinition(shard_names(corpus_shard_count()))


def encode_shard(context, config: ShardEncodingConfig, corpus_chunks: ArtifactRef, encoder_name: str,
                 encoder_path: str, max_seq_length: int, batch_size: int, with_title: bool,
                 artifacts: ArtifactStore, name: str) -> dg.Output:
    from ..core.retrieval.embedding_cache import EmbeddingCache
    from ..core.retrieval.encoder import encode, load_encoder, model_fingerprint
    from ..core.retrieval.shards import ShardManifest, chunks_of_shard, shard_input_hash, write_shard

    shard, count = context.partition_key, len(CORPUS_SHARDS.get_partition_keys())
    chunks = chunks_of_shard(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), shard, count)
    ids, texts = [c.chunk_id for c in chunks], [passage_text(c, with_title) for c in chunks]
    fingerprint = model_fingerprint(encoder_path)
    encoded = 0

    def encode_missing(missing: list[str]):
        nonlocal encoded
        encoded = len(missing)  # the model loads only when something is missing
        return encode(load_encoder(encoder_path, max_seq_length, precision=config.precision), missing, batch_size)

    started = time.perf_counter()
    if config.use_embedding_cache:
        cache = EmbeddingCache(artifacts.path() / "embedding_cache", fingerprint, config.precision)
        vectors, _ = cache.encode(texts, encode_missing)
    else:
        vectors = encode_missing(texts)
    if not texts:  # an empty shard (a tiny corpus): a (0, 0) array would not stack with the others
        vectors = vectors.reshape(0, 0)
    seconds = time.perf_counter() - started
    manifest = ShardManifest(shard=shard, shard_count=count, encoder=encoder_name, encoder_sha256=fingerprint,
                             precision=config.precision, with_title=with_title, max_seq_length=max_seq_length,
                             input_sha256=shard_input_hash(fingerprint, config.precision, with_title, max_seq_length,
                                                           ids, texts),
                             n_chunks=len(ids), dim=int(vectors.shape[1]) if len(ids) else 0)
    with atomic_artifact_dir(artifacts.path(), f"{name}/{shard}") as pending:
        write_shard(pending.path, manifest, ids, vectors)  # no timing inside: same input, same bytes
    ref = pending.ref
    context.log.info(f"{name} {shard}: {len(ids)} chunks, {encoded} encoded, {len(ids) - encoded} from the cache "
                     f"({seconds:.1f} s)")
    return dg.Output(ref, data_version=dg.DataVersion(ref.sha256[:32]), metadata={
        "artifact_path": dg.MetadataValue.path(ref.path),
        "content_sha256": ref.sha256,
        "input_sha256": manifest.input_sha256,
        "chunks": dg.MetadataValue.int(len(ids)),
        "chunks_encoded": dg.MetadataValue.int(encoded),
        "embedding_cache_hits": dg.MetadataValue.int(len(ids) - encoded),
        "encode_seconds": dg.MetadataValue.float(round(seconds, 2)),
        "encoder": encoder_name,
        "precision": config.precision,
    })


@dg.asset(
    group_name="retrieval",
    code_version=SHARD_VERSION,
    io_manager_key=ARTIFACT_IO,
    partitions_def=CORPUS_SHARDS,
    description=(
        "One corpus shard's chunk embeddings with the base encoder (the embedding_model resource): the chunks "
        "whose document id hashes to this shard, in corpus order, with their ids and the shard's input hash. "
        "base_faiss_index assembles its vectors from all shards when vectors_from is 'shards'. Runs on the Dask "
        "executor (job domret_encode_shards); the in-process pipeline does not need it."
    ),
)
def base_chunk_embeddings(
    context: dg.AssetExecutionContext,
    config: ShardEncodingConfig,
    corpus_chunks: ArtifactRef,
    embedding_model: EmbeddingModel,
    artifacts: ArtifactStore,
) -> dg.Output[ArtifactRef]:
    from ..core.retrieval.encoder import resolve_model_path, set_offline

    set_offline(not embedding_model.allow_downloads)
    with_title = IndexConfig().with_title if config.with_title is None else config.with_title
    return encode_shard(context, config, corpus_chunks, embedding_model.model_name_or_path,
                        resolve_model_path(embedding_model.model_name_or_path), embedding_model.max_seq_length,
                        embedding_model.batch_size, with_title, artifacts, "base_chunk_embeddings")


@dg.asset(
    group_name="retrieval",
    code_version=SHARD_VERSION,
    io_manager_key=ARTIFACT_IO,
    partitions_def=CORPUS_SHARDS,
    description=(
        "One corpus shard's chunk embeddings with the fine-tuned embedding_checkpoint, rendered as "
        "base_faiss_index rendered them: what faiss_index assembles when vectors_from is 'shards'. After a "
        "retrain every shard re-encodes (a new checkpoint); after a corpus change only the changed shards do."
    ),
)
def tuned_chunk_embeddings(
    context: dg.AssetExecutionContext,
    config: ShardEncodingConfig,
    corpus_chunks: ArtifactRef,
    embedding_checkpoint: ArtifactRef,
    base_faiss_index: ArtifactRef,
    artifacts: ArtifactStore,
) -> dg.Output[ArtifactRef]:
    from ..core.retrieval.encoder import set_offline

    set_offline(True)
    with_title = read_manifest(base_faiss_index.path, DenseIndexManifest).with_title
    if config.with_title is not None and config.with_title != with_title:
        raise ValueError(f"tuned_chunk_embeddings: with_title {config.with_title} disagrees with base_faiss_index's "
                         f"{with_title}, which the checkpoint was trained with: leave it unset")
    card = read_json(f"{embedding_checkpoint.path}/card.json")
    return encode_shard(context, config, corpus_chunks, f"embedding_checkpoint@{embedding_checkpoint.sha256[:12]}",
                        f"{embedding_checkpoint.path}/model", card["training"]["max_seq_length"], TUNED_BATCH_SIZE,
                        with_title, artifacts, "tuned_chunk_embeddings")
