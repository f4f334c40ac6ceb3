"""Incident review: one audited request, replayed now, and what changed (``domret incident``).

Why replay: an audit row says what was served then; a reviewer needs to know whether the same
question, asked by the same principal, is answered differently now, by the current champion and
by the one before it, and what exactly moved (hits entering or leaving the top k, spans, the
cited sentences and their text, the abstention). The replays run through the same
:class:`~..serving.service.Service` as a live request, without an audit writer (a review is not
a served request), and are turned into rows by the service's own ``record_of``, so recorded and
replayed requests are compared in one shape.

The report joins the replays with the lineage of the bundle that served (``core.release.lineage``)
and the orchestration records the caller adds; rendering is in :mod:`.review`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .store import AuditRecord, query_sha256


@dataclass
class Replay:
    """The request served again by one bundle. ``texts`` holds the passage of each hit
    (``chunk id``) and the sentence of each citation (``doc:sentence``) as that bundle's corpus has
    them. ``error``: the bundle could not be opened (pruned, changed on disk)."""

    label: str  # "champion v2", "previous champion v1", "served bundle"
    version: str | None
    bundle_sha256: str | None
    kind: str = "search"
    hits: list[dict] = field(default_factory=list)
    citations: list[dict] | None = None
    abstained: bool | None = None
    evidence_score: float | None = None
    texts: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass
class RequestDiff:
    """What differs between the recorded request and one replay, at the recorded depth ``k``."""

    label: str
    k: int
    entered: list[str] = field(default_factory=list)  # chunks in the replay's top k, not in the row's
    left: list[str] = field(default_factory=list)  # chunks in the row's top k, not in the replay's
    moved: dict[str, list[int]] = field(default_factory=dict)  # chunk -> [rank then, rank now]
    spans_changed: dict[str, list[str]] = field(default_factory=dict)  # chunk -> [span then, span now]
    passages_changed: list[str] = field(default_factory=list)  # same chunk id, other text
    cited_added: list[str] = field(default_factory=list)  # "doc:sentence"
    cited_removed: list[str] = field(default_factory=list)
    cited_text_changed: list[str] = field(default_factory=list)  # same citation, the sentence's text differs
    abstention: list[bool | None] | None = None  # [then, now] when it changed

    @property
    def unchanged(self) -> bool:
        return not (self.entered or self.left or self.moved or self.spans_changed or self.passages_changed
                    or self.cited_added or self.cited_removed or self.cited_text_changed or self.abstention)

    def lines(self) -> list[str]:
        """The changes in a reviewer's words (empty when nothing changed)."""
        out = []
        if self.left:
            out.append(f"left the top {self.k}: {', '.join(self.left)}")
        if self.entered:
            out.append(f"entered the top {self.k}: {', '.join(self.entered)}")
        if self.moved:
            out.append("moved: " + ", ".join(f"{c} {a}->{b}" for c, (a, b) in self.moved.items()))
        if self.spans_changed:
            out.append("span changed: " + ", ".join(f"{c} {a} -> {b}" for c, (a, b) in self.spans_changed.items()))
        if self.passages_changed:
            out.append("passage text changed: " + ", ".join(self.passages_changed))
        if self.cited_removed:
            out.append("no longer cited: " + ", ".join(self.cited_removed))
        if self.cited_added:
            out.append("newly cited: " + ", ".join(self.cited_added))
        if self.cited_text_changed:
            out.append("cited sentence's text changed: " + ", ".join(self.cited_text_changed))
        if self.abstention:
            then, now = ("abstained" if a else "answered" for a in self.abstention)
            out.append(f"abstention changed: {then} -> {now}")
        return out


def cited_keys(citations: list[dict] | None) -> list[str]:
    return [f"{c['doc_id']}:{c['sentence']}" for c in citations or []]


def diff_request(record: AuditRecord, replay: Replay, served_texts: dict[str, str]) -> RequestDiff:
    """The recorded request against ``replay``: hits compared by chunk id over the recorded top k
    (the replay of a search asks for that k; an answer's replay serves its bundle's own top n),
    citations by document and sentence, texts where both corpora are readable."""
    k = len(record.hits)
    diff = RequestDiff(replay.label, k)
    then = {h["chunk_id"]: h for h in record.hits}
    now = {h["chunk_id"]: h for h in replay.hits[:k] if k} if k else {h["chunk_id"]: h for h in replay.hits}
    diff.left = [c for c in then if c not in now]
    diff.entered = [c for c in now if c not in then]
    for chunk, hit in then.items():
        other = now.get(chunk)
        if other is None:
            continue
        if other["rank"] != hit["rank"]:
            diff.moved[chunk] = [hit["rank"], other["rank"]]
        if (other["start"], other["end"]) != (hit["start"], hit["end"]):
            diff.spans_changed[chunk] = [f"{hit['start']}-{hit['end']}", f"{other['start']}-{other['end']}"]
        if chunk in served_texts and chunk in replay.texts and served_texts[chunk] != replay.texts[chunk]:
            diff.passages_changed.append(chunk)
    if record.kind == "answer" and replay.kind == "answer":
        before, after = cited_keys(record.citations), cited_keys(replay.citations)
        diff.cited_removed = [c for c in before if c not in after]
        diff.cited_added = [c for c in after if c not in before]
        diff.cited_text_changed = [c for c in before if c in after and c in served_texts and c in replay.texts
                                   and served_texts[c] != replay.texts[c]]
        if record.abstained != replay.abstained:
            diff.abstention = [record.abstained, replay.abstained]
    return diff


def replay_request(service, record: AuditRecord, query: str, label: str, version: str | None = None) -> Replay:
    """Serve ``query`` again as the row's principal (public only when the row has none) with
    ``service`` (a :class:`~..serving.service.Service`, preferably without an audit writer). An
    answer is replayed as an answer, a search as a search at the row's depth."""
    principal = record.principal or None
    if record.kind == "answer":
        served = service.answer(query, principal)
    else:
        served = service.search(query, principal, top_n=len(record.hits) or None)
    row = service.record_of(served)
    replay = Replay(label, version, service.served_from.sha256, record.kind, row.hits, row.citations, row.abstained,
                    row.evidence_score)
    replay.texts = {h.chunk_id: h.text for h in served.result.hits}
    documents = service.documents or {}
    for key in cited_keys(row.citations) + cited_keys(record.citations):
        doc, sentence = key.rsplit(":", 1)
        if doc in documents and int(sentence) < len(documents[doc].sentences):
            replay.texts[key] = documents[doc].sentence_text(int(sentence))
    return replay


def served_texts(record: AuditRecord, chunks_path: str | Path | None, documents_path: str | Path | None) -> dict[str, str]:
    """The passages of the row's hits and the sentences it cited, as the corpus of the bundle
    that served them has them (the artifacts' files; missing ones are skipped): what the user
    was shown, for the reviewer to read beside the replays."""
    from ..data.serialization import read_chunks, read_documents

    texts: dict[str, str] = {}
    wanted = {h["chunk_id"] for h in record.hits}
    if chunks_path and Path(chunks_path, "chunks.jsonl").is_file():
        texts.update({c.chunk_id: c.text for c in read_chunks(Path(chunks_path, "chunks.jsonl")) if c.chunk_id in wanted})
    if record.citations and documents_path and Path(documents_path, "documents.jsonl").is_file():
        documents = {d.doc_id: d for d in read_documents(Path(documents_path, "documents.jsonl"))}
        for c in record.citations:
            doc = documents.get(c["doc_id"])
            if doc is not None and c["sentence"] < len(doc.sentences):
                texts[f"{c['doc_id']}:{c['sentence']}"] = doc.sentence_text(c["sentence"])
    return texts


def query_for_replay(record: AuditRecord, given: str | None) -> tuple[str | None, str | None]:
    """The text to replay, and a note when there is none: the row's text, else ``given`` when it
    hashes to the row's query hash (a row kept in hash mode holds no text)."""
    if given is not None and query_sha256(given) != record.query_sha256:
        if record.query is None:
            return None, "the query given does not hash to the row's query hash: not replayed"
        return record.query, "the query given differs from the row's: the row's text was replayed"
    if record.query is not None:
        return record.query, None
    if given is not None:
        return given, None
    return None, "the row keeps only the query's hash: pass the query text (--query) to replay it"


@dataclass
class IncidentReport:
    """Everything ``domret incident`` prints, as data. ``registry``: the served version's record
    (version, aliases, release MLflow run, Dagster run id, feedback ids); ``dagster``: the run that
    produced the bundle (id, status, UI link); ``lineage``: the served bundle's
    :class:`~..release.lineage.BundleLineage` with each node's materialization and MLflow run;
    ``comparisons``: that lineage against the current champion's (and the previous champion's)."""

    record: AuditRecord
    served_texts: dict[str, str] = field(default_factory=dict)
    replays: list[Replay] = field(default_factory=list)
    diffs: list[RequestDiff] = field(default_factory=list)
    registry: dict | None = None
    dagster: dict | None = None
    lineage: object | None = None  # BundleLineage
    comparisons: list = field(default_factory=list)  # LineageComparison
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"record": self.record.as_dict(), "served_texts": self.served_texts,
                "replays": [asdict(r) for r in self.replays], "diffs": [{**asdict(d), "unchanged": d.unchanged}
                                                                         for d in self.diffs],
                "registry": self.registry, "dagster": self.dagster,
                "lineage": self.lineage.as_dict() if self.lineage is not None else None,
                "comparisons": [c.as_dict() for c in self.comparisons], "notes": self.notes}

    def to_text(self) -> str:
        from .review import render

        return render(self)
