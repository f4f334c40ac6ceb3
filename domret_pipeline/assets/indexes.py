"""Retrieval indexes over the chunks: FAISS with the base encoder, FAISS with the fine-tuned
checkpoint, and BM25 (the lexical baseline)."""

import hashlib
import json
import os
import time
from pathlib import Path

import dagster as dg

from ..config import BM25Config, IndexConfig, TunedIndexConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.data.chunking import passage_text
from ..core.data.serialization import read_chunks
from ..core.manifests import BM25IndexManifest, DenseIndexManifest, read_manifest, write_manifest
from ..io_manager import ArtifactRefIOManager
from ..resources import ArtifactStore, EmbeddingModel, MlflowTracker, TrackedRun
from .common import ARTIFACT_IO, artifact_output, precision_metrics, precision_table_md
from .embedding_shards import CORPUS_SHARDS, TUNED_BATCH_SIZE, base_chunk_embeddings, tuned_chunk_embeddings

FAISS_VERSION = "5"  # 4: access groups beside the vectors; 5: compressed above compressed_min_vectors, build measured
BM25_VERSION = "2"  # 2: each chunk's access groups stored beside the index
UNIFORMITY_SAMPLE = 2000
# Fail fast on data: BM25 does not read the labels, but it waits for labeled_queries and its
# blocking checks, so a leaked frozen split or bad qrels stop the run before any indexing
# (Dagster skips only what is downstream of a failed step or check; issue 12 saw 18 minutes of
# corpus encoding after frozen_split_is_clean had failed at second 20). The FAISS indexes read
# the labels (their precision parity check runs on the dev split), so they wait by input.
DATA_GATE = [dg.AssetDep("labeled_queries")]


def _choose_precision(context, config: IndexConfig | TunedIndexConfig, with_title: bool, labels_path: str, chunks,
                      encoder_path: str, encoder_fingerprint: str, max_seq_length: int, batch_size: int, decisions: Path):
    """The parity check of the encoder's precisions on the dev split (see core.retrieval.precision_choice)."""
    from ..core.data.labels import LabeledQueries
    from ..core.retrieval.encoder import load_encoder
    from ..core.retrieval.precision import cpu_flags
    from ..core.retrieval.precision_choice import PrecisionChoice, choose_precision, cosine_rows, encoder_dev_task, encoder_trial
    from ..core.training.access import readable_chunks, training_principal

    if config.precision == "fp32":
        return choose_precision("fp32", None, cosine_rows)
    labels = LabeledQueries.load(labels_path)
    chunks = readable_chunks(chunks, training_principal(labels_path))  # the dev task reads as training does
    qrels = labels.qrels_for("dev")
    if not qrels:
        context.log.warning("no dev queries: the encoder runs in fp32 without a parity check")
        return PrecisionChoice(config.precision, "fp32", "no dev queries to check a faster precision against fp32")
    task = encoder_dev_task(labels.queries, qrels, chunks, with_title, config.parity_pool_chunks)
    # A decision measured before for the same encoder, dev task and settings on this CPU is
    # reused: re-measuring costs minutes, and timing noise could flip the choice, which would
    # change the index and miss the embedding cache for nothing.
    key = hashlib.sha256(json.dumps([encoder_fingerprint, config.precision, config.max_precision_loss, max_seq_length,
                                     batch_size, task.pool_ids, sorted((q, sorted(d.items())) for q, d in qrels.items()),
                                     sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "avx512_vnni", "avx512f"})])
                         .encode("utf-8")).hexdigest()
    record = decisions / f"precision-{key[:32]}.json"
    if record.is_file():
        choice = PrecisionChoice.from_dict(read_json(record))
        choice.reason += " (measured earlier for this encoder, dev task and CPU; reused)"
        context.log.info(f"precision ({config.precision}): {choice.reason}")
        return choice
    trial = encoder_trial(task, lambda p: load_encoder(encoder_path, max_seq_length, precision=p), batch_size)
    choice = choose_precision(config.precision, trial, cosine_rows, "cosine of chunk embeddings to fp32's",
                              max_loss=config.max_precision_loss, log=context.log.info)
    decisions.mkdir(parents=True, exist_ok=True)
    tmp = record.with_suffix(f".tmp-{os.getpid()}")
    write_json(tmp, choice.as_dict())
    os.replace(tmp, record)
    return choice


def _published_shards(context, config, io: ArtifactRefIOManager, asset: str) -> dict[str, ArtifactRef] | None:
    """The shard partitions this run reads (its own run's, else the published ones); None when
    the index encodes in process. A dep, not an input: see io_manager.py."""
    if config.vectors_from != "shards":
        return None
    return io.load_partitions(context.run.run_id, [asset], CORPUS_SHARDS.get_partition_keys())


def _vectors_from_shards(context, config, chunks, shards: dict[str, ArtifactRef], fingerprint: str, with_title: bool,
                         max_seq_length: int):
    """The index's vectors assembled from the chunk-embedding shards (core.retrieval.shards),
    each checked to be of this encoder, rendering and corpus."""
    from ..core.retrieval.precision_choice import PrecisionChoice
    from ..core.retrieval.shards import assemble, read_manifest as read_shard_manifest
    count = len(CORPUS_SHARDS.get_partition_keys())
    precision = config.precision
    if precision == "auto" and shards:  # no parity check here: the shards were encoded at one precision
        precision = read_shard_manifest(next(iter(shards.values())).path).precision
    vectors, _ = assemble(chunks, {k: ref.path for k, ref in shards.items()},
                          {"shard_count": count, "encoder_sha256": fingerprint, "precision": precision,
                           "with_title": with_title, "max_seq_length": max_seq_length})
    context.log.info(f"assembled {len(chunks)} vectors from {count} shards ({precision})")
    choice = PrecisionChoice(config.precision, precision, f"encoded in {count} shards at {precision}")
    record = {"hits": 0, "misses": 0, "rejected": 0, "from_shards": {k: shards[k].sha256 for k in sorted(shards)}}
    return choice, vectors, record


def _build_dense_index(
    context,
    tracked: TrackedRun,
    config: IndexConfig | TunedIndexConfig,
    with_title: bool,
    corpus_chunks: ArtifactRef,
    labeled_queries: ArtifactRef,
    encoder_name: str,
    encoder_path: str,
    max_seq_length: int,
    batch_size: int,
    artifacts: ArtifactStore,
    name: str,
    role: str,
    tuned_from: dict | None = None,
    base_vectors=None,
    shards: dict[str, ArtifactRef] | None = None,
) -> dg.Output:
    """``tuned_from``: for the tuned index, the content hashes of its embedding_checkpoint and
    base_faiss_index. ``shards``: the published chunk-embedding partitions, read when
    ``config.vectors_from`` is ``shards`` instead of encoding here."""
    from ..core.evaluation.diagnostics import uniformity
    from ..core.progress import Progress
    from ..core.retrieval.access import GroupTable
    from ..core.retrieval.dense_index import INDEX_FILE, DenseIndex
    from ..core.retrieval.index_build import build_sized_index, choose_index_type
    from ..core.retrieval.embedding_cache import EmbeddingCache
    from ..core.retrieval.encoder import encode, load_encoder, model_fingerprint

    chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
    index_type = choose_index_type(len(chunks), config.exact_max_vectors, config.compressed_min_vectors)
    lineage = {"role": role, "embedding_checkpoint": None, "base_faiss_index": None, **(tuned_from or {})}
    params = {**config.model_dump(), "with_title": with_title, "encoder": encoder_name, "max_seq_length": max_seq_length,
              "index_type": index_type}
    tracked.log_params({**params, "corpus_chunks_sha256": corpus_chunks.sha256,
                        **{k: v for k, v in lineage.items() if v is not None}})
    fingerprint = model_fingerprint(encoder_path)
    started = time.perf_counter()
    if config.vectors_from == "shards":
        choice, vectors, cache_record = _vectors_from_shards(context, config, chunks, shards or {}, fingerprint,
                                                             with_title, max_seq_length)
    else:
        choice = _choose_precision(context, config, with_title, labeled_queries.path, chunks, encoder_path,
                                   fingerprint, max_seq_length, batch_size, artifacts.path() / "embedding_cache")
    parity_seconds = time.perf_counter() - started
    texts = [passage_text(c, with_title) for c in chunks]

    def encode_missing(missing: list[str]):
        # Loaded only when something is missing: a full cache hit needs no model (int8 exports one).
        model = load_encoder(encoder_path, max_seq_length, precision=choice.precision)
        progress = Progress(f"{name}: encoding ({choice.precision})", len(missing), "chunks", context.log.info)
        return encode(model, missing, batch_size, progress=progress)

    started = time.perf_counter()
    if config.vectors_from == "shards":
        pass  # assembled above: the shards' encoding was timed in their own runs
    elif config.use_embedding_cache:
        cache = EmbeddingCache(artifacts.path() / "embedding_cache", fingerprint, choice.precision)
        vectors, cache_stats = cache.encode(texts, encode_missing)
        cache_record = {"folder": str(cache.folder), **cache_stats.as_dict()}
        if cache_stats.rejected:
            context.log.warning(f"embedding cache: {cache_stats.rejected} entries rejected and re-encoded "
                                f"({'; '.join(cache_stats.reasons)})")
    else:
        vectors, cache_record = encode_missing(texts), {"hits": 0, "misses": len(texts), "rejected": 0}
    encode_seconds = time.perf_counter() - started
    index, build = build_sized_index(vectors, index_type, config.hnsw_m, config.hnsw_ef_construction,
                                     config.hnsw_ef_search, config.compressed_settings())
    if build.recall_at_10 is not None:
        context.log.info(f"{name}: {build.factory} at {build.search_parameter}={build.search_value}: recall@10 "
                         f"{build.recall_at_10:.3f} against exact search on {build.recall_queries} {build.recall_query_source}")
    diagnostics = {"uniformity": uniformity(vectors, UNIFORMITY_SAMPLE)}
    if base_vectors is not None:
        diagnostics["uniformity_base"] = uniformity(base_vectors, UNIFORMITY_SAMPLE)
    with atomic_artifact_dir(artifacts.path(), name) as pending:
        groups = GroupTable([c.groups for c in chunks])  # stored beside the vectors: searches filter on them
        DenseIndex(index, [c.chunk_id for c in chunks], groups).save(pending.path)
        build.with_bytes(os.path.getsize(Path(pending.path) / INDEX_FILE))
        # Two config values are not recorded as such (as before typed manifests): with_title
        # (None for the tuned index) and precision ("auto") are recorded as what was used, the
        # rendering and the chosen precision; the requested one is in precision_choice.
        write_manifest(pending.path, DenseIndexManifest(
            **lineage, encoder=encoder_name, encoder_path=encoder_path, encoder_sha256=fingerprint,
            max_seq_length=max_seq_length, precision=choice.precision, with_title=with_title, index_type=index_type,
            corpus_chunks=corpus_chunks.sha256, labeled_queries=labeled_queries.sha256, n_vectors=int(index.ntotal),
            dim=int(vectors.shape[1]), precision_choice=choice.as_dict(), embedding_cache=cache_record,
            diagnostics=diagnostics, chunks_per_group=groups.counts(), index_build=build.as_dict(),
            extra=config.model_dump(exclude={"with_title", "precision"}),
        ))
    stats = {"vectors": int(index.ntotal), "dim": int(vectors.shape[1]), "encode_seconds": round(encode_seconds, 2),
             "chunks_encoded": cache_record["misses"], "cache_hits": cache_record["hits"],
             "parity_seconds": round(parity_seconds, 2), "index_build_seconds": round(build.build_seconds, 2),
             "index_bytes": build.bytes, **diagnostics}
    if build.recall_at_10 is not None:
        stats["index_recall_at_10"] = build.recall_at_10
    tracked.set_tag("domret.precision", choice.precision)
    tracked.log_metrics({**stats, **precision_metrics(choice)})
    return artifact_output(pending.ref, tracked, {
        "vectors": dg.MetadataValue.int(stats["vectors"]),
        "dim": dg.MetadataValue.int(stats["dim"]),
        "index_type": index_type,
        "index_factory": build.factory,
        **({"index_search": f"{build.search_parameter}={build.search_value}",
            "index_recall_at_10": dg.MetadataValue.float(round(build.recall_at_10, 4)),
            "index_recall_queries": dg.MetadataValue.int(build.recall_queries)} if build.recall_at_10 is not None else {}),
        "index_mib": dg.MetadataValue.float(round(build.bytes / 2**20, 2)),
        "index_build_seconds": dg.MetadataValue.float(round(build.build_seconds, 2)),
        "index_mib_per_million_vectors": dg.MetadataValue.float(round(build.as_dict()["bytes_per_million_vectors"] / 2**20, 1)),
        "index_build_seconds_per_million_vectors": dg.MetadataValue.float(build.as_dict()["build_seconds_per_million_vectors"]),
        "encoder": encoder_name,
        "precision": choice.precision,
        "precision_reason": choice.reason,
        "precision_parity": dg.MetadataValue.md(precision_table_md(choice)),
        "encode_seconds": dg.MetadataValue.float(stats["encode_seconds"]),
        "chunks_encoded": dg.MetadataValue.int(cache_record["misses"]),
        "embedding_cache_hits": dg.MetadataValue.int(cache_record["hits"]),
        "embedding_cache_rejected": dg.MetadataValue.int(cache_record["rejected"]),
        **{k: dg.MetadataValue.float(round(v, 4)) for k, v in diagnostics.items()},
    })


@dg.asset(
    group_name="retrieval",
    code_version=FAISS_VERSION,
    io_manager_key=ARTIFACT_IO,
    deps=[base_chunk_embeddings],
    description=(
        "FAISS index of the chunks built with the current serving encoder (the embedding_model "
        "resource: the base model). It mines hard negatives and is the baseline the fine-tuned "
        "index is compared with. Exact (flat) up to exact_max_vectors chunks, HNSW up to "
        "compressed_min_vectors, above a compressed index (IVF-SQ8 by default) whose nprobe meets compressed_recall_target "
        "recall@10 against exact search (recorded with its bytes and build seconds per million vectors). The "
        "encoder runs at the fastest precision that passes the dev parity check; chunks already in "
        "the embedding cache (same encoder, precision and text) are not encoded again. With vectors_from "
        "'shards' it encodes nothing: it assembles the base_chunk_embeddings partitions (same vectors, ids "
        "and order)."
    ),
)
def base_faiss_index(
    context: dg.AssetExecutionContext,
    config: IndexConfig,
    corpus_chunks: ArtifactRef,
    labeled_queries: ArtifactRef,
    embedding_model: EmbeddingModel,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
    artifact_io_manager: dg.ResourceParam[ArtifactRefIOManager],
) -> dg.Output[ArtifactRef]:
    from ..core.retrieval.encoder import resolve_model_path, set_offline

    set_offline(not embedding_model.allow_downloads)
    with mlflow.run(context, FAISS_VERSION) as tracked:
        return _build_dense_index(
            context, tracked, config, config.with_title, corpus_chunks, labeled_queries, embedding_model.model_name_or_path,
            resolve_model_path(embedding_model.model_name_or_path), embedding_model.max_seq_length,
            embedding_model.batch_size, artifacts, "base_faiss_index", "base",
            shards=_published_shards(context, config, artifact_io_manager, "base_chunk_embeddings"),
        )


@dg.asset(
    group_name="retrieval",
    code_version=FAISS_VERSION,
    io_manager_key=ARTIFACT_IO,
    deps=[tuned_chunk_embeddings],
    description=(
        "The tuned index: FAISS index of the chunks built with the fine-tuned embedding_checkpoint "
        "(the one serving_config serves), with the id map to chunk ids and the uniformity of its "
        "space next to the base index's (collapse check). Precision, embedding cache and vectors_from "
        "(here: the tuned_chunk_embeddings partitions) as for base_faiss_index."
    ),
)
def faiss_index(
    context: dg.AssetExecutionContext,
    config: TunedIndexConfig,
    corpus_chunks: ArtifactRef,
    labeled_queries: ArtifactRef,
    embedding_checkpoint: ArtifactRef,
    base_faiss_index: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
    artifact_io_manager: dg.ResourceParam[ArtifactRefIOManager],
) -> dg.Output[ArtifactRef]:
    from ..core.retrieval.dense_index import DenseIndex, all_vectors
    from ..core.retrieval.encoder import set_offline

    set_offline(True)
    card = read_json(f"{embedding_checkpoint.path}/card.json")
    base_vectors = all_vectors(DenseIndex.load(Path(base_faiss_index.path)))
    with_title = read_manifest(base_faiss_index.path, DenseIndexManifest).with_title
    if config.with_title is not None and config.with_title != with_title:
        raise ValueError(f"faiss_index: with_title {config.with_title} disagrees with base_faiss_index's {with_title}, "
                         "which the checkpoint was trained with: set with_title under base_faiss_index only")
    with mlflow.run(context, FAISS_VERSION) as tracked:
        return _build_dense_index(
            context, tracked, config, with_title, corpus_chunks, labeled_queries,
            f"embedding_checkpoint@{embedding_checkpoint.sha256[:12]}",
            f"{embedding_checkpoint.path}/model", card["training"]["max_seq_length"], TUNED_BATCH_SIZE, artifacts,
            "faiss_index", "tuned",
            {"embedding_checkpoint": embedding_checkpoint.sha256, "base_faiss_index": base_faiss_index.sha256},
            base_vectors=base_vectors,
            shards=_published_shards(context, config, artifact_io_manager, "tuned_chunk_embeddings"),
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
    from ..core.retrieval.access import GroupTable
    from ..core.retrieval.bm25 import BM25Index

    with mlflow.run(context, BM25_VERSION) as tracked:
        tracked.log_params({**config.model_dump(), "corpus_chunks_sha256": corpus_chunks.sha256})
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        started = time.perf_counter()
        groups = GroupTable([c.groups for c in chunks])
        index = BM25Index.build([passage_text(c) for c in chunks], [c.chunk_id for c in chunks], config.k1, config.b,
                                groups)
        seconds = time.perf_counter() - started
        with atomic_artifact_dir(artifacts.path(), "bm25_index") as pending:
            index.save(pending.path)
            write_manifest(pending.path, BM25IndexManifest(k1=config.k1, b=config.b, corpus_chunks=corpus_chunks.sha256,
                                                           n_chunks=len(chunks), chunks_per_group=groups.counts(),
                                                           extra=config.model_dump()))
        vocab = len(index.retriever.vocab_dict)
        tracked.log_metrics({"chunks": len(chunks), "vocabulary": vocab, "index_seconds": seconds})
        return artifact_output(pending.ref, tracked, {
            "chunks": dg.MetadataValue.int(len(chunks)),
            "vocabulary": dg.MetadataValue.int(vocab),
            "index_seconds": dg.MetadataValue.float(round(seconds, 2)),
        })
