"""Typed manifests: the ``manifest.json`` of an artifact folder, one frozen dataclass per kind
of artifact (this module), stored and read by ``core/manifest_records.py`` (``Record``,
:func:`write_manifest`, :func:`read_manifest`, re-exported here), and by nothing else.
The reasons and the on-disk format are in that module's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .manifest_records import (  # noqa: F401 (re-exported: the public names live here)
    FLAT, MANIFEST_FILE, ManifestError, Record, read_manifest, write_manifest,
)
from .training.mining import MiningSettings
from .weak.pseudo_queries import PseudoQuerySettings


@dataclass(frozen=True, kw_only=True)
class CorpusDocumentsManifest(Record):
    """``corpus_documents``: where the corpus came from and what loading it found."""

    KIND: ClassVar[str] = "corpus_documents"
    # Before access control every document was public (core/data/groups.py).
    LEGACY: ClassVar[dict[str, Any]] = {"access": lambda raw: {
        "groups_field": None, "path_groups": {}, "default_groups": ["public"],
        "documents_per_group": {"public": raw.get("n_documents", 0)}}}
    source: str
    n_documents: int
    n_quarantined: int
    duplicate_texts: list[list[str]]  # [document, the earlier document with the same text]
    access: dict  # the group rule (GroupRule.as_dict()) and documents_per_group


@dataclass(frozen=True, kw_only=True)
class CorpusChunksManifest(Record):
    """``corpus_chunks``: the chunking settings, the tokenizer that counted, the documents."""

    KIND: ClassVar[str] = "corpus_chunks"
    LEGACY: ClassVar[dict[str, Any]] = {"chunks_per_group": lambda raw: {"public": raw.get("n_chunks", 0)}}
    chunk_tokens: int
    overlap_tokens: int
    tokenizer: str
    corpus_documents: str  # content hash of the corpus_documents artifact
    n_chunks: int
    chunks_per_group: dict[str, int]  # access group -> chunks carrying it (a chunk counts once per group)


@dataclass(frozen=True, kw_only=True)
class FeedbackUse(Record):
    """The feedback labels a labeled_queries artifact merged (``use_feedback``)."""

    KIND: ClassVar[str] = "feedback"
    store: str  # the store's URL without credentials
    used_ids: list[int]
    new_queries: int
    new_judgements: int
    confirmed_negatives: int
    skipped: dict[str, int]  # reason -> labels


@dataclass(frozen=True, kw_only=True)
class LabeledQueriesManifest(Record):
    """``labeled_queries``: its config (in extra), the corpus it was checked against, and the
    feedback it merged (None: none)."""

    KIND: ClassVar[str] = "labeled_queries"
    # Manifests from before the feedback loop merged none; from before access control, training
    # read every document, and every document was public.
    LEGACY: ClassVar[dict[str, Any]] = {"feedback": None, "training_access": {
        "principal": ["public"], "judgements_dropped": 0, "evidence_dropped": 0, "queries_dropped": 0,
        "dropped_query_ids": []}}
    corpus_documents: str
    feedback: FeedbackUse | None
    # The training principal (core/training/access.py) and what restricting train/dev to it dropped.
    training_access: dict

    @property
    def feedback_ids(self) -> list[int]:
        """Ids of the feedback labels merged (empty when none)."""
        return list(self.feedback.used_ids) if self.feedback else []


@dataclass(frozen=True, kw_only=True)
class DenseIndexManifest(Record):
    """``base_faiss_index`` and ``faiss_index`` (the tuned index): one kind, told apart by
    ``role``. What a reader needs to encode queries as the index's passages were encoded: the
    encoder (path and content hash), its token limit and precision, and ``with_title``."""

    KIND: ClassVar[str] = "dense index"
    LEGACY: ClassVar[dict[str, Any]] = {
        "precision": "fp32",  # before the parity check every index was encoded in fp32
        "precision_choice": None, "embedding_cache": None, "labeled_queries": None,  # not recorded then
        "diagnostics": {},
        "role": "base",  # the first dense index was the only one, built with the base model
        "embedding_checkpoint": None, "base_faiss_index": None,
        "chunks_per_group": lambda raw: {"public": raw.get("n_vectors", 0)},  # before access control: all public
        "index_build": None,  # before compressed indexes: not measured
    }
    role: str  # "base" or "tuned"
    encoder: str  # its name (model id, or embedding_checkpoint@<hash>)
    encoder_path: str
    encoder_sha256: str  # core.retrieval.encoder.model_fingerprint of encoder_path
    max_seq_length: int
    precision: str  # what the encoder ran at: fp32, bf16 or int8; queries must use the same
    # How passages were rendered. Set once, by base_faiss_index's with_title; the training
    # rows, dev sets, tuned index, reranker and serving bundle take it from this field.
    with_title: bool = field(metadata={"missing": "it predates the setting"})
    index_type: str  # flat, hnsw or compressed (core.retrieval.index_build)
    corpus_chunks: str
    labeled_queries: str | None  # the dev split of the precision parity check
    n_vectors: int
    dim: int
    precision_choice: dict | None  # core.retrieval.precision_choice.PrecisionChoice.as_dict()
    embedding_cache: dict | None  # hits, misses, rejected, ...
    diagnostics: dict[str, float]  # uniformity (and uniformity_base for the tuned index)
    embedding_checkpoint: str | None  # tuned: the checkpoint's content hash
    base_faiss_index: str | None  # tuned: the base index's content hash
    # access group -> vectors carrying it; the groups themselves are in chunk_groups.json
    chunks_per_group: dict[str, int]
    # core.retrieval.index_build.IndexBuild.as_dict(): factory string, nprobe/efSearch, recall@10
    # against exact search and its sample, bytes and build seconds (and both per million vectors)
    index_build: dict | None


@dataclass(frozen=True, kw_only=True)
class BM25IndexManifest(Record):
    """``bm25_index``."""

    KIND: ClassVar[str] = "bm25_index"
    LEGACY: ClassVar[dict[str, Any]] = {"chunks_per_group": lambda raw: {"public": raw.get("n_chunks", 0)}}
    k1: float
    b: float
    corpus_chunks: str
    n_chunks: int
    chunks_per_group: dict[str, int]  # access group -> chunks carrying it (groups in chunk_groups.json)


def _mined_with_base(raw: dict) -> dict:
    return {"retriever": "base", "faiss_index": raw.get("base_faiss_index")}


@dataclass(frozen=True, kw_only=True)
class HardNegativesManifest(Record):
    """``hard_negatives``: the settings it mined with (the one source of ``num_negatives``,
    the width of the training rows), who ranked the candidates, and what the filters removed."""

    KIND: ClassVar[str] = "hard_negatives"
    LEGACY: ClassVar[dict[str, Any]] = {
        "mined_with": _mined_with_base,  # before retriever: champion, the base index mined
        "cross_checked_with": None, "cross_checked": 0,  # before the cross-encoder check: off
        "cross_encoder_candidates": 0, "cross_encoder_margin": 0.0,  # ... so it read no candidate
        "fill_random": False,  # before the random filler
        "read_as": ["public"],  # before access control every chunk was public
        "pseudo": None,  # before pseudo-queries were mined
    }
    settings: MiningSettings = field(metadata=FLAT)
    labeled_queries: str
    corpus_chunks: str
    base_faiss_index: str
    encoder: str  # the mining retriever's encoder
    mined_with: dict  # {"retriever": "base" | "champion", "faiss_index": hash, ["version"]}
    cross_checked_with: dict | None
    cross_checked: int  # candidates the cross-encoder read
    removed: dict[str, int]  # filter -> candidates removed
    queries_without_negatives: list[str]
    positive_rules: dict[str, int]  # rule -> positives chosen by it
    read_as: list[str]  # the training principal: only chunks it may read were candidates
    # The pseudo-queries mined (mined_pseudo.jsonl): pseudo_queries (its hash), pairs (in it),
    # max_queries, mined, negatives, removed (filter -> candidates), without_negatives, positive_rules
    pseudo: dict | None


@dataclass(frozen=True, kw_only=True)
class LabelingQueueManifest(Record):
    """``labeling_queue``: whose doubts it lists and how many queries it chose from."""

    KIND: ClassVar[str] = "labeling_queue"
    served_by: str  # "champion" or "this run"
    serving_config: str  # the bundle folder's name
    pool: int


@dataclass(frozen=True, kw_only=True)
class PseudoQueriesManifest(Record):
    """``pseudo_queries``: its settings (flat, as hard_negatives'), inputs, principal and counts."""

    KIND: ClassVar[str] = "pseudo_queries"
    # Manifests from before the generated kind: no pair was generated, the knob had its default.
    LEGACY: ClassVar[dict[str, Any]] = {"generated_per_document": 1}
    settings: PseudoQuerySettings = field(metadata=FLAT)
    inputs: dict[str, str]  # corpus_documents, corpus_chunks, labeled_queries -> content hash
    read_as: list[str]  # the training principal: only chunks it may read became pairs
    n_pairs: dict[str, int]  # kind -> pairs kept
    dropped: dict[str, dict[str, int]]  # reason -> kind -> candidates dropped
    eval_documents: dict[str, int]  # held_out: relevant to a dev/test query; kept_on: pairs on them (0 unless allowed)


# Every kind with a manifest.json (test_manifests round-trips each).
KINDS: tuple[type[Record], ...] = (
    CorpusDocumentsManifest, CorpusChunksManifest, LabeledQueriesManifest, DenseIndexManifest, BM25IndexManifest,
    HardNegativesManifest, LabelingQueueManifest, PseudoQueriesManifest,
)
