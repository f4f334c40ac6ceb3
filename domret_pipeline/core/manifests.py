"""Typed manifests: the ``manifest.json`` of an artifact folder, one frozen dataclass per kind
of artifact, written by :func:`write_manifest` and read by :func:`read_manifest`, and by
nothing else.

Why: a value that crosses assets (``with_title``, the mining settings' ``num_negatives``, the
encoder an index was built with) has one source, the manifest that recorded it, read back by
attribute. A reader indexing a dict could misspell a key or fall back to a default of its
own; here a missing field is an error naming the file. The exception is a field that
manifests written by earlier code lack: it takes the value that code assumed (each kind's
``LEGACY``, the one place such values live), so artifacts already on users' disks still read.

On disk a manifest is the flat, sorted, indented JSON object the assets wrote before typed
manifests (``artifacts.write_json``), so those older manifests need no second read path. Keys
that no field names (the rest of an asset's config; keys a newer version wrote) are kept in
``extra`` and written back out, never dropped.

Not manifests, and not typed here: embedding_checkpoint's and reranker_adapter's
``card.json``, serving_config's ``serving.json``, evaluation_report's ``report.json`` and
champion_release's ``release.json`` are those artifacts' documents, with their own readers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .artifacts import write_json
from .errors import RowIssue
from .training.mining import MiningSettings
from .weak.pseudo_queries import PseudoQuerySettings

MANIFEST_FILE = "manifest.json"
# Field metadata: a dataclass stored flat, its fields at the top level of the manifest. The
# mining settings are stored so because the hard_negatives manifests on disk already hold them
# so (the asset recorded its config with ``**config.model_dump()``): nesting them under a key
# would need a second read path for every older manifest, for no reader's benefit.
FLAT = {"flat": True}
_REBUILD = "rebuild the artifact"

M = TypeVar("M", bound="Record")


class ManifestError(ValueError):
    """A manifest that cannot be read as its kind. One line: the file (and line, for bad JSON)
    and what is wrong, as ``errors.RowIssue`` words input errors."""

    def __init__(self, path: str | Path, reason: str, line: int = 0):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(str(RowIssue(self.path, line, reason)))


class _Problem(Exception):
    """What is wrong inside a manifest; :class:`ManifestError` adds the file."""


@dataclass(frozen=True, kw_only=True)
class Record:
    """A JSON object with typed fields; the keys no field names are in ``extra``.

    Keyword-only, and no field but ``extra`` has a default: a writer names every value, so
    none is recorded by accident. ``LEGACY`` holds what a reader takes for a field that older
    manifests lack (a value, or a function of the raw object)."""

    KIND: ClassVar[str] = "record"
    LEGACY: ClassVar[dict[str, Any]] = {}
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # A key of extra that a typed field also names would be a second source for one value
        # (writers pass their config dump as extra): it must agree with the field, then it goes.
        typed = self._typed()
        clash = sorted(k for k in self.extra if k in typed and _same_json(self.extra[k]) != _same_json(typed[k]))
        if clash:
            raise ValueError(f"{self.KIND} manifest: extra contradicts the typed field"
                             + "".join(f" {k} ({_short(self.extra[k])}, the field says {_short(typed[k])})" for k in clash))
        object.__setattr__(self, "extra", {k: v for k, v in self.extra.items() if k not in typed})

    def to_dict(self) -> dict:
        """The JSON object on disk: the extra keys and the typed fields (flat ones spread)."""
        return {**_plain(self.extra), **self._typed()}

    def _typed(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = _plain(getattr(self, f.name))
            if f.metadata.get("flat"):
                out.update(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[M], raw: dict, source: str | Path = "<manifest>") -> M:
        """Read ``raw`` as this kind; :class:`ManifestError` naming ``source`` when it cannot be."""
        if not isinstance(raw, dict):
            raise ManifestError(source, f"holds a JSON {type(raw).__name__}, not an object; {_REBUILD}")
        try:
            return _decode(cls, raw, cls.LEGACY, "")[0]
        except _Problem as problem:
            raise ManifestError(source, f"{cls.KIND} manifest: {problem}") from None


def write_manifest(folder: str | Path, manifest: Record) -> Path:
    """Write ``manifest`` as ``folder/manifest.json``. It is read back first, so a value that
    would not survive JSON (a NumPy number written as a string, say) fails here, at the
    writer, not in a later step."""
    path = Path(folder) / MANIFEST_FILE
    payload = manifest.to_dict()
    type(manifest).from_dict(json.loads(json.dumps(payload, default=str)), f"{path} (being written)")
    write_json(path, payload)
    return path


def read_manifest(folder: str | Path, kind: type[M]) -> M:
    """The manifest in ``folder``, read as ``kind``."""
    path = Path(folder) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, f"no {kind.KIND} manifest: not an artifact folder, or its write never finished") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(path, f"not valid JSON ({error.msg}, column {error.colno}); {_REBUILD}", error.lineno) from None
    return kind.from_dict(raw, path)


def _plain(value):
    """A JSON-shaped copy: records and dataclasses become objects, tuples lists."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same_json(value) -> str:
    """Comparable JSON text (NaN equals NaN here, as it does on disk)."""
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _decode(cls, raw: dict, legacy: dict, prefix: str) -> tuple[Any, set[str]]:
    """An instance of dataclass ``cls`` from ``raw``, and the keys of ``raw`` it used."""
    hints = typing.get_type_hints(cls)
    values, used = {}, set()
    for f in dataclasses.fields(cls):
        if f.name == "extra" and issubclass(cls, Record):
            continue
        if f.metadata.get("flat"):  # its fields sit in this same object
            values[f.name], flat_used = _decode(hints[f.name], raw, legacy, prefix)
            used |= flat_used
            continue
        if f.name in raw:
            values[f.name] = _convert(raw[f.name], hints[f.name], prefix + f.name)
        elif f.name in legacy:
            value = legacy[f.name]
            values[f.name] = value(raw) if callable(value) else copy.deepcopy(value)
        elif f.default is not dataclasses.MISSING:  # a core dataclass's own default (MiningSettings.seed)
            values[f.name] = f.default
        else:
            raise _Problem(f"lacks '{prefix}{f.name}' ({f.metadata.get('missing', 'written by other code, or damaged')}; "
                           f"{_REBUILD})")
        used.add(f.name)
    if issubclass(cls, Record):
        values["extra"] = {k: v for k, v in raw.items() if k not in used}
    return cls(**values), used


def _convert(value, hint, name: str):
    """``value`` checked against the type ``hint`` (records and dataclasses decoded)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # X | None is the only union used here
        return _convert(value, inner, name)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Problem(f"'{name}' is {_short(value)}, not a JSON object")
        return _decode(hint, value, getattr(hint, "LEGACY", {}), f"{name}.")[0]
    kind = origin or hint
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, kind))
    if not ok:
        raise _Problem(f"'{name}' is {_short(value)}, not {_describe(hint)}")
    if kind is dict and args:
        return {k: _convert(v, args[1], f"{name}.{k}") for k, v in value.items()}
    if kind is list and args:
        return [_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(hint) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a JSON object",
             list: "a JSON list"}
    return names.get(typing.get_origin(hint) or hint, str(hint))


# -- the kinds --------------------------------------------------------------------------------


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
