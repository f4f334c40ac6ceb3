"""The lineage of a serving bundle, read from the artifacts themselves, and what differs between two.

Why from the artifacts: every artifact names the content hashes of the artifacts it was built
from (a manifest, a model card, the bundle's ``serving.json``), and artifacts are stored by
content hash (``<root>/<asset>/<hash[:16]>``). So the chain bundle → index, reranker, selector →
checkpoint → negatives → labels → corpus can be walked from the bundle alone, on any machine
holding the artifact folder, and it is the chain of the bytes that served, not of whatever a
run log says ran. The orchestration records (the Dagster run and materialization of each hash,
its MLflow run) are joined onto these nodes by ``domret_pipeline/incident.py``.

:func:`compare_lineages` answers the incident reviewer's question: did the passage come from a
corpus change, a label change or a model change? An artifact that differs while every input it
names is the same was changed by itself (its data, settings, code or training run): that is a
cause. One whose inputs differ was rebuilt because of them: a consequence, listed but not blamed.
The data artifacts also get a hash of their data files without their manifest, so labels whose
manifest differs only in the corpus hash it records are seen to be the same labels.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..artifacts import read_json, sha256_file
from ..manifests import (BM25IndexManifest, CorpusChunksManifest, CorpusDocumentsManifest, DenseIndexManifest,
                         HardNegativesManifest, LabeledQueriesManifest, PseudoQueriesManifest, read_manifest)

# Each artifact a bundle depends on, upstream first, with what a reviewer calls it.
ROLES: dict[str, str] = {
    "corpus_documents": "corpus", "corpus_chunks": "corpus", "labeled_queries": "labels",
    "pseudo_queries": "pseudo-queries", "base_faiss_index": "base encoder index", "bm25_index": "BM25 index", "hard_negatives": "mined negatives",
    "embedding_checkpoint": "embedding checkpoint", "faiss_index": "tuned index", "reranker_adapter": "reranker",
    "sentence_selector": "sentence selector", "serving_config": "serving bundle",
}
# The causes an incident can have, by the artifact that changed by itself.
CAUSES: dict[str, str] = {
    "corpus_documents": "corpus change", "corpus_chunks": "corpus change (chunking)", "labeled_queries": "label change",
    "pseudo_queries": "weak supervision change (pseudo-queries)",
    "base_faiss_index": "model change (base encoder)", "bm25_index": "model change (BM25 settings)",
    "hard_negatives": "model change (negative mining)", "embedding_checkpoint": "model change (embedding checkpoint)",
    "faiss_index": "model change (tuned index)", "reranker_adapter": "model change (reranker)",
    "sentence_selector": "model change (sentence selector)", "serving_config": "serving settings change",
}
# Data artifacts: their files without the manifest are hashed too (small files; models are not).
_RECORDS = {"manifest.json", "card.json"}
_CONTENT_OF = ("corpus_documents", "corpus_chunks", "labeled_queries")
_OWN_DATA = ("corpus_documents", "labeled_queries")  # data that is not derived from an input's data
_CALIBRATED = ("answer.threshold", "answer.sentence_threshold")


@dataclass
class LineageNode:
    """One artifact of a bundle's lineage: where it is, what it was built from (input asset ->
    content hash, as the artifact records it), what a reviewer reads about it (``summary``) and
    the settings it was built with (``settings``, compared between bundles). ``materialization``
    and ``mlflow`` are filled by the orchestration layer."""

    name: str
    sha256: str
    path: str | None = None  # None: not on disk any more
    inputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    content_sha256: str | None = None  # data artifacts: their data files without manifest.json
    error: str | None = None
    materialization: dict | None = None  # dagster run id, code version, data version, time
    mlflow: dict | None = None  # run id, url, experiment

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class BundleLineage:
    """A bundle and every artifact upstream of it, keyed by asset name. ``conflicts``: an input
    named with two different hashes by two artifacts of the same bundle (it should not happen:
    the run that built them read one reference)."""

    bundle_path: str
    bundle_sha256: str
    nodes: dict[str, LineageNode] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def ordered(self) -> list[LineageNode]:
        """Upstream first, in :data:`ROLES` order (unknown names last)."""
        rank = {name: i for i, name in enumerate(ROLES)}
        return sorted(self.nodes.values(), key=lambda n: (rank.get(n.name, len(rank)), n.name))

    def as_dict(self) -> dict:
        return {"bundle_path": self.bundle_path, "bundle_sha256": self.bundle_sha256, "conflicts": self.conflicts,
                "nodes": {n.name: n.as_dict() for n in self.ordered()}}


def content_sha256(folder: Path) -> str:
    """The artifact's data files without its manifest or card: the same data recorded against
    another input hash (labels re-checked against a new corpus) hashes the same."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _RECORDS):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


# -- reading one artifact: (inputs, summary, settings) ------------------------------------------

def _serving(folder: Path) -> tuple[dict, dict, dict]:
    bundle = read_json(folder / "serving.json")
    answer = bundle.get("answer", {})
    from ..serving.search import ServingConfig

    # as the bundle serves: a key written after it (e.g. rewrite) reads as its default, not as a change
    config = {k: v for k, v in ServingConfig.from_dict(bundle["config"]).as_dict().items() if k != "reasons"}
    settings = {**config, **{f"answer.{k}": answer.get(k) for k in
                             ("scorer", "abstention_scorer", "passages", "max_sentences", "threshold",
                              "sentence_threshold")}}
    summary = {"serving": bundle.get("label"), "top_n": config.get("top_n"), "answer scorer": answer.get("scorer"),
               "abstains on": answer.get("abstention_scorer") or answer.get("scorer"),
               "dev principal": ",".join(bundle.get("dev", {}).get("principal", []))}
    return {k: v["sha256"] for k, v in bundle["artifacts"].items()}, summary, settings


def _dense(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, DenseIndexManifest)
    inputs = {k: v for k, v in (("corpus_chunks", m.corpus_chunks), ("labeled_queries", m.labeled_queries),
                                ("embedding_checkpoint", m.embedding_checkpoint), ("base_faiss_index", m.base_faiss_index))
              if v}
    summary = {"encoder": m.encoder, "vectors": m.n_vectors, "precision": m.precision, "index": m.index_type}
    settings = {"encoder": m.encoder, "encoder_sha256": m.encoder_sha256, "max_seq_length": m.max_seq_length,
                "precision": m.precision, "index_type": m.index_type, "with_title": m.with_title, **m.extra}
    if m.embedding_checkpoint:  # the tuned index's encoder is its checkpoint input, not a setting
        del settings["encoder"], settings["encoder_sha256"]
    return inputs, summary, settings


def _bm25(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, BM25IndexManifest)
    return {"corpus_chunks": m.corpus_chunks}, {"chunks": m.n_chunks}, {"k1": m.k1, "b": m.b}


def _negatives(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, HardNegativesManifest)
    inputs = {"labeled_queries": m.labeled_queries, "corpus_chunks": m.corpus_chunks, "base_faiss_index": m.base_faiss_index}
    if m.pseudo and m.pseudo.get("pseudo_queries"):  # the pseudo-queries it mined as well
        inputs["pseudo_queries"] = m.pseudo["pseudo_queries"]
    mined = m.mined_with.get("retriever", "base") + (f" v{m.mined_with['version']}" if m.mined_with.get("version") else "")
    summary = {"mined with": mined, "removed": sum(m.removed.values()), "queries without negatives":
               len(m.queries_without_negatives), "read as": ",".join(m.read_as)}
    settings = {**asdict(m.settings), "mined_with": mined, **m.extra}
    return inputs, summary, settings


def _card(folder: Path) -> tuple[dict, dict, dict]:
    """embedding_checkpoint, reranker_adapter and sentence_selector: their card.json."""
    card = read_json(folder / "card.json")
    summary = {k: card[k] for k in ("base_model", "start_from", "trained", "reason", "train_rows", "train_queries",
                                    "best_epoch", "dev_ndcg@10", "dev_sentence_ndcg@10", "threshold") if k in card and card[k] != ""}
    # start_model is a path (the reranker input's, when the selector starts from it): not a setting
    settings = {**card.get("training", {}), **{k: card[k] for k in ("base_model", "base_model_sha256", "start_from")
                                               if k in card}}
    return dict(card.get("inputs", {})), summary, settings


def _chunks(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, CorpusChunksManifest)
    settings = {"chunk_tokens": m.chunk_tokens, "overlap_tokens": m.overlap_tokens, "tokenizer": m.tokenizer, **m.extra}
    return {"corpus_documents": m.corpus_documents}, {"chunks": m.n_chunks}, settings


def _labels(folder: Path) -> tuple[dict, dict, dict]:
    from ..data.serialization import read_jsonl
    from ..feedback.store import id_ranges

    m = read_manifest(folder, LabeledQueriesManifest)
    splits = Counter(row["split"] for row in read_jsonl(folder / "queries.jsonl"))
    summary = {"queries": ", ".join(f"{s} {splits[s]}" for s in ("train", "dev", "test") if splits.get(s)),
               "source": m.extra.get("queries_path"), "feedback ids": id_ranges(m.feedback_ids) or "none",
               "training principal": ",".join(m.training_access.get("principal", []))}
    inputs = {"corpus_documents": m.corpus_documents}
    pseudo = read_json(folder / "pseudo_evaluation.json") if (folder / "pseudo_evaluation.json").is_file() else {}
    if pseudo.get("used"):  # zero-label mode: dev and test pseudo-queries cut from these chunks
        inputs["corpus_chunks"] = pseudo["corpus_chunks"]
        summary["pseudo-queries"] = ", ".join(f"{s} {n}" for s, n in pseudo["queries"].items())
    return inputs, summary, {**m.extra, "feedback_ids": id_ranges(m.feedback_ids)}


def _pseudo(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, PseudoQueriesManifest)
    summary = {"pairs": sum(m.n_pairs.values()), "per kind": m.n_pairs, "held-out documents":
               m.eval_documents.get("held_out"), "read as": ",".join(m.read_as)}
    return dict(m.inputs), summary, {**asdict(m.settings), **{k: v for k, v in m.extra.items() if k not in
                                                              asdict(m.settings)}}


def _documents(folder: Path) -> tuple[dict, dict, dict]:
    m = read_manifest(folder, CorpusDocumentsManifest)
    summary = {"source": m.source, "documents": m.n_documents, "quarantined": m.n_quarantined,
               "per group": m.access.get("documents_per_group")}
    return {}, summary, {"source": m.source, **m.extra}


READERS: dict[str, Callable[[Path], tuple[dict, dict, dict]]] = {
    "serving_config": _serving, "faiss_index": _dense, "base_faiss_index": _dense, "bm25_index": _bm25,
    "hard_negatives": _negatives, "embedding_checkpoint": _card, "reranker_adapter": _card, "sentence_selector": _card,
    "corpus_chunks": _chunks, "labeled_queries": _labels, "corpus_documents": _documents, "pseudo_queries": _pseudo,
}


def read_node(name: str, sha256: str, folder: Path | None) -> LineageNode:
    """One artifact, read by its kind's reader; a missing folder or an unreadable record is
    reported on the node, never raised: a review shows what it could read."""
    node = LineageNode(name, sha256)
    if folder is None or not Path(folder).is_dir():
        node.error = "not on disk (pruned, or on another machine)"
        return node
    node.path = str(folder)
    reader = READERS.get(name)
    if reader is None:
        node.error = "no reader for this kind of artifact"
        return node
    try:
        node.inputs, node.summary, node.settings = reader(Path(folder))
        if name in _CONTENT_OF:
            node.content_sha256 = content_sha256(Path(folder))
    except (OSError, ValueError, KeyError, TypeError) as error:
        node.error = f"{type(error).__name__}: {error}"
    return node


def read_lineage(bundle_path: str | Path, bundle_sha256: str) -> BundleLineage:
    """Walk from the ``serving_config`` artifact at ``bundle_path`` to every artifact upstream of it.

    An input's folder is the path the bundle names for it, else ``<root>/<asset>/<hash[:16]>``
    (artifacts are content-addressed under one root). Hashes are taken as recorded: the bundle
    that served was re-hashed when it was opened."""
    root = Path(bundle_path).parent.parent
    lineage = BundleLineage(str(bundle_path), bundle_sha256)
    known_paths: dict[tuple[str, str], str] = {}
    serving = Path(bundle_path) / "serving.json"
    if serving.is_file():
        for name, ref in read_json(serving).get("artifacts", {}).items():
            known_paths[(name, ref["sha256"])] = ref["path"]
    queue = [("serving_config", bundle_sha256, "the request")]
    while queue:
        name, sha, named_by = queue.pop(0)
        seen = lineage.nodes.get(name)
        if seen is not None:
            if seen.sha256 != sha:
                lineage.conflicts.append(f"{named_by} names {name} {sha[:12]}, the lineage already holds {seen.sha256[:12]}")
            continue
        folder = Path(bundle_path) if name == "serving_config" else Path(known_paths.get((name, sha), root / name / sha[:16]))
        node = read_node(name, sha, folder)
        lineage.nodes[name] = node
        queue.extend((child, child_sha, name) for child, child_sha in node.inputs.items())
    return lineage


# -- comparing two bundles' lineages -----------------------------------------------------------

@dataclass
class ArtifactChange:
    """One asset in two lineages: ``status`` same, differs, or only in one of them. For one that
    differs: the inputs that differ too, whether its own data changed (data artifacts), the
    settings that changed (``{key: [served, other]}``) and whether it is a cause."""

    name: str
    served: str | None
    other: str | None
    status: str
    inputs_differ: list[str] = field(default_factory=list)
    content_changed: bool | None = None
    settings_changed: dict[str, list] = field(default_factory=dict)
    cause: str | None = None

    def explain(self) -> str:
        """One line for the report: why this artifact differs, in a reviewer's words."""
        if self.status == "same":
            return "same"
        if self.status != "differs":
            return self.status.replace("_", " ")
        parts = []
        if self.content_changed is True:
            parts.append("its data changed")
        if self.content_changed is False:
            parts.append("same data; it records changed inputs (" + ", ".join(self.inputs_differ) + ")"
                         if self.inputs_differ else "same data; its record differs")
        elif self.inputs_differ:
            parts.append("rebuilt from changed inputs (" + ", ".join(self.inputs_differ) + ")")
        elif self.content_changed is None:
            parts.append("changed with the same inputs (its settings, code or training run)")
        if self.settings_changed:
            parts.append("settings: " + "; ".join(f"{k} {_short(a)} -> {_short(b)}" for k, (a, b) in
                                                 sorted(self.settings_changed.items())))
        return "differs: " + ", ".join(parts)


@dataclass
class LineageComparison:
    """The served bundle's lineage against another's (the current champion's): per asset what
    differs, and the causes (the changes not explained by a changed input)."""

    served: str
    other: str
    label: str  # e.g. "champion v2"
    changes: list[ArtifactChange]
    causes: list[str]

    def as_dict(self) -> dict:
        return {"served": self.served, "other": self.other, "label": self.label, "causes": self.causes,
                "changes": [asdict(c) for c in self.changes]}


def compare_lineages(served: BundleLineage, other: BundleLineage, label: str = "other") -> LineageComparison:
    """What differs between the bundle that served and ``other``, and why (see :func:`_cause`):
    the causes are the changes that no changed input explains."""
    changes = []
    rank = {name: i for i, name in enumerate(ROLES)}
    for name in sorted(set(served.nodes) | set(other.nodes), key=lambda n: (rank.get(n, len(rank)), n)):
        a, b = served.nodes.get(name), other.nodes.get(name)
        if a is None or b is None:
            changes.append(ArtifactChange(name, a and a.sha256, b and b.sha256, "only_served" if b is None else "only_other"))
            continue
        if a.sha256 == b.sha256:
            changes.append(ArtifactChange(name, a.sha256, b.sha256, "same"))
            continue
        change = ArtifactChange(name, a.sha256, b.sha256, "differs")
        change.inputs_differ = sorted((k for k in set(a.inputs) | set(b.inputs) if a.inputs.get(k) != b.inputs.get(k)),
                                      key=lambda n: (rank.get(n, len(rank)), n))
        if a.content_sha256 and b.content_sha256:
            change.content_changed = a.content_sha256 != b.content_sha256
        change.settings_changed = {k: [a.settings.get(k), b.settings.get(k)]
                                   for k in sorted(set(a.settings) | set(b.settings))
                                   if a.settings.get(k) != b.settings.get(k) and not _path_only(k)}
        change.cause = _cause(name, change)
        changes.append(change)
    causes = list(dict.fromkeys(c.cause for c in changes if c.cause))
    return LineageComparison(served.bundle_sha256, other.bundle_sha256, label, changes, causes)


def _cause(name: str, change: ArtifactChange) -> str | None:
    """The cause an artifact that differs stands for, or None when it only follows a changed input.

    The corpus and the labels hold data of their own: a cause when that data (or, for the labels,
    the feedback merged, or any setting) changed, whatever their inputs did. Every other artifact
    is built from its inputs: a cause when it differs with the same inputs, or when a setting of
    its own changed (the thresholds calibrated on dev are not settings: they follow any model)."""
    cause = CAUSES.get(name, f"{name} change")
    own_settings = [k for k in change.settings_changed if k not in _CALIBRATED]
    if name in _OWN_DATA:  # a new code version that wrote the same data is not a data change
        own_settings = [k for k in own_settings if k != "code version"]
        if change.content_changed or own_settings or (change.content_changed is None and not change.inputs_differ):
            return cause
        return None
    return cause if own_settings or not change.inputs_differ else None


def _path_only(key: str) -> bool:
    """Settings that name where files were, not what they hold (a moved corpus is the same corpus)."""
    return key in ("path", "queries_path", "qrels_path", "evidence_path", "frozen_test_queries_path", "source")


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
