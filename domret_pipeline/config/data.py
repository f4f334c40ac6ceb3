"""Run config of the corpus, label and index assets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import dagster as dg
from pydantic import Field

from .base import SAMPLE_DIR, derive


class CorpusConfig(dg.Config):
    path: str = Field(
        default=str(SAMPLE_DIR / "corpus.jsonl"),
        description="BEIR corpus.jsonl (or its folder), a CSV/TSV/Parquet file, or a folder of .txt/.md files.",
    )
    format: Literal["auto", "jsonl", "csv", "parquet", "folder"] = "auto"
    id_field: str = Field(default="_id", description="Column/field holding the document id.")
    text_field: str = Field(default="text", description="Column/field holding the document text.")
    title_field: str = Field(default="title", description="Column/field holding the title (optional).")
    on_bad_rows: Literal["fail", "quarantine"] = Field(
        default="fail", description="'fail' stops on the first bad file; 'quarantine' sets bad rows aside and reports them."
    )
    # Access control (core/data/groups.py): groups from the field, else a path prefix, else the default.
    groups_field: Optional[str] = Field(default=None, description="Field/column of a document's access groups (a list, "
                                        "or names separated by , ; |).")
    path_groups: dict[str, list[str]] = Field(default={}, description="Path prefix -> access groups (the longest "
                                              "prefix of the id wins; a folder corpus's id is the relative path).")
    default_groups: list[str] = Field(default=["public"], description="Groups of documents that get none from the field "
                                      "or a path rule; 'public' is readable by every request.")


class ChunkingConfig(dg.Config):
    chunk_tokens: int = Field(default=200, description="Token budget of a chunk (model tokenizer, no special tokens).")
    overlap_tokens: int = Field(default=32, description="Tokens of trailing sentences repeated at the start of the next chunk.")


class LabelsConfig(dg.Config):
    queries_path: Optional[str] = Field(
        default=str(SAMPLE_DIR / "queries.jsonl"),
        description="BEIR queries. None together with qrels_path: no judged query at all (zero-label mode).",
    )
    qrels_path: Optional[str] = Field(default=str(SAMPLE_DIR / "qrels"), description="A qrels TSV, or a folder of them.")
    evidence_path: Optional[str] = Field(
        default=str(SAMPLE_DIR / "evidence.jsonl"), description="Sentence-level evidence (optional)."
    )
    dev_fraction: float = 0.2
    test_fraction: float = 0.2
    split_salt: str = Field(default="domret", description="Changing it re-draws every split; keep it fixed.")
    frozen_test_queries_path: Optional[str] = Field(
        default=None, description="External frozen test queries; replaces the hashed test split."
    )
    frozen_test_qrels_path: Optional[str] = None
    frozen_test_evidence_path: Optional[str] = None
    drop_train_repeats_of_frozen_test: bool = Field(
        default=False,
        description="Drop train/dev queries whose text repeats a test query (the test split stays whole); "
        "counted and listed in the metadata. Off: such repeats fail the frozen_split_is_clean check.",
    )
    on_bad_rows: Literal["fail", "quarantine"] = "fail"
    use_feedback: bool = Field(default=False, description="Merge feedback labels from the feedback store into the train split.")
    feedback_max_id: Optional[int] = Field(default=None, description="Use feedback labels up to this id (None: all).")
    training_principal: Optional[list[str]] = Field(default=None, description="Access groups training reads as (None: "
                                                    "public only); core/training/access.py says where it applies.")
    # Zero-label mode (core/weak/pseudo_evaluation.py): dev and test from held-out pseudo-queries.
    pseudo_evaluation: Literal["auto", "on", "off"] = Field(
        default="auto", description="Add one held-out pseudo-query per held-out document to dev and test (slice "
        "pseudo_query; not user relevance): auto does so exactly when no train query is judged (zero-label mode).",
    )
    pseudo_eval_fraction: float = Field(default=0.1, description="Share of documents held out for pseudo dev and test "
                                        "queries (half each, by a stable hash of the document id); they never train.")
    pseudo_eval_max_queries: int = Field(default=200, description="Pseudo-queries per split at most (a seeded sample).")
    pseudo_eval_kinds: list[str] = Field(
        default=["inverse_cloze"], description="Kinds of pseudo-query held out (as pseudo_queries cuts them, with "
        "its default filters): a sentence reads most like a question.",
    )


class _DenseIndexConfig(dg.Config):
    exact_max_vectors: int = Field(default=50_000, description="Up to this many chunks the index is exact (flat).")
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    compressed_min_vectors: int = Field(
        default=1_000_000, description="Above this many chunks the index is compressed (compressed_factory), "
        "between exact_max_vectors and this an HNSW graph over float32 vectors.",
    )
    compressed_factory: str = Field(
        default="IVF{nlist},SQ8", description="faiss.index_factory string of the compressed index, IVF or HNSW "
        "({nlist}: 4 sqrt(chunks), at most train sample / 39). SQ8: 8-bit scalar quantisation, a quarter of float32.",
    )
    compressed_train_sample: int = Field(default=100_000, description="Vectors the compressed index is trained on.")
    compressed_recall_target: float = Field(
        default=0.95, description="Recall@10 against exact search the compressed index must reach: its nprobe "
        "(efSearch) is the smallest that does; a build that cannot reach it fails.",
    )
    compressed_recall_queries: int = Field(default=1000, description="Held-out queries the recall@10 is measured on "
                                           "(of the compressed index, and of an HNSW index, measured but not tuned).")
    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto",
        description="Inference precision of the encoder: auto serves the fastest path that loses at most "
        "max_precision_loss dev nDCG@10 against fp32 on this machine (parity check), else fp32.",
    )
    max_precision_loss: float = Field(default=0.005, description="Dev nDCG@10 a faster precision may lose against fp32.")
    parity_pool_chunks: int = Field(
        default=1000, description="Chunks in the parity check's dev pool: the dev queries' relevant chunks plus a sample."
    )
    use_embedding_cache: bool = Field(
        default=True, description="Read and extend the embedding cache (encoder hash, precision, text): encode only new chunks.",
    )
    vectors_from: Literal["encoder", "shards"] = Field(
        default="encoder",
        description="encoder: encode the chunks in this step (the default, one process). shards: assemble the "
        "vectors from the published chunk-embedding shards (encoded by `domret shards encode` on the Dask "
        "executor); the shards' precision is used, and a shard of another encoder or corpus is an error.",
    )


    def compressed_settings(self, **core_only):
        from ..core.retrieval.index_build import CompressedSettings

        return derive(self, CompressedSettings, "compressed_", **core_only)


class IndexConfig(_DenseIndexConfig):
    """``base_faiss_index``. Its ``with_title`` is the run's one source of how a passage is
    rendered: its manifest records it, and the training rows, the dev sets, the tuned index,
    the reranker and the serving bundle all take it from there."""

    with_title: bool = Field(default=True, description="Encode each chunk with its document title in front.")


class TunedIndexConfig(_DenseIndexConfig):
    """``faiss_index``: as the base index, except that passages are rendered as the base index
    rendered them (the checkpoint was trained on those texts)."""

    with_title: Optional[bool] = Field(
        default=None, description="Leave unset: the base index's with_title (the checkpoint was trained on those texts). "
        "A value that disagrees with it is an error.",
    )


# The corpus shard count is a deployment setting, not run config: Dagster's partitions of the
# chunk-embedding assets are fixed when the definitions load. Changing it moves almost every
# document to another shard (a full re-encode, mostly served by the embedding cache).
CORPUS_SHARDS_ENV = "DOMRET_CORPUS_SHARDS"
DEFAULT_CORPUS_SHARDS = 8


def corpus_shard_count() -> int:
    import os

    return int(os.environ.get(CORPUS_SHARDS_ENV) or DEFAULT_CORPUS_SHARDS)


class ShardEncodingConfig(dg.Config):
    """``base_chunk_embeddings`` and ``tuned_chunk_embeddings``: one shard's encoding."""

    precision: Literal["fp32", "bf16", "int8"] = Field(
        default="fp32", description="Inference precision (no parity check here: it needs the dev split; the index "
        "assembled from the shards records this precision).")
    use_embedding_cache: bool = Field(default=True, description="Read and extend the embedding cache: encode only "
                                      "chunks no earlier run (sharded or not) encoded with this encoder and precision.")
    with_title: Optional[bool] = Field(
        default=None, description="base shards: None is base_faiss_index's default rendering; tuned shards: leave "
        "unset (the published base_faiss_index's rendering, which the checkpoint was trained on).")


class BM25Config(dg.Config):
    k1: float = 1.2
    b: float = 0.75
