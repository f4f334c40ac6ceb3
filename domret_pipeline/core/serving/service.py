"""A served request: one search, or one answer, for a principal, timed and audited.

:class:`Service` wraps an opened serving bundle. ``search`` runs the bundle's pipeline for one
query; ``answer`` runs the same search and then the bundle's answer step exactly as the
evaluation does (the bundle's :class:`~..answers.extractive.AnswerSettings`, its recorded
sentence scorer, :func:`~..answers.extractive.extractive_answer` on the served hits), so what a
user is answered is what was measured. Each call returns a :class:`Served` (a request id at
once, the hits, the answer, the latency of every stage) and hands one
:class:`~..audit.store.AuditRecord` of exactly that to the audit writer, which never fails
or holds up the request (see :mod:`..audit.writer`).

Every request runs as a principal (:class:`~..retrieval.access.Principal`: the groups given,
else the pipeline's own, public only by default): the search stages filter by it and the answer
step re-checks it, as in the evaluation. The row records the groups it ran as.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable

from ..answers.citation_metrics import Answer
from ..answers.extractive import AnswerSettings, extractive_answer
from ..audit.store import AuditRecord, query_sha256, utc_stamp
from ..retrieval.access import Principal
from .bundle import OpenBundle
from .search import SearchResult


@dataclass
class ServedFrom:
    """Which bundle serves, as the audit trail names it: the ``serving_config`` artifact's path
    and content hash, the registry version when the champion serves, and how it was chosen
    (``champion``, ``latest``, ``run:<id>``, or ``bundle`` for a folder opened by hand)."""

    path: str
    sha256: str | None = None
    registry_version: str | None = None
    source: str = "bundle"


@dataclass
class Served:
    """What one request returned: its ``request_id`` (the audit row's, known before the row is
    written), the groups it ran as, the search result, the answer (``answer`` requests) and each
    stage's latency in milliseconds (the pipeline's stages, ``answer``, and the request's ``total``)."""

    request_id: str
    kind: str
    principal: list[str]
    result: SearchResult
    latency_ms: dict[str, float] = field(default_factory=dict)
    answer: Answer | None = None

    def as_dict(self) -> dict:
        return {"request_id": self.request_id, "kind": self.kind, "principal": self.principal, **self.result.as_dict(),
                "latency_ms": self.latency_ms, "answer": self.answer.as_dict() if self.answer else None}


class Service:
    """An opened bundle serving requests. ``audit`` is an :class:`~..audit.writer.AuditWriter`
    (None: nothing is recorded); ``documents`` stands in for a bundle that does not name its
    ``corpus_documents`` (answers need the sentences)."""

    def __init__(self, opened: OpenBundle, served_from: ServedFrom | None = None, audit=None,
                 documents: dict | None = None):
        self.opened, self.pipeline = opened, opened.pipeline
        self.served_from = served_from or ServedFrom(str(opened.folder))
        self.audit = audit
        self.documents = opened.documents or documents
        self._scorer = None

    @property
    def audit_failures(self) -> int:
        """Rows that could not be written (0 without an audit writer)."""
        return self.audit.failures if self.audit is not None else 0

    def principal(self, principal: Principal | Iterable[str] | str | None = None) -> Principal:
        """Who a request runs as: the principal (or groups, or one group) given, else the
        pipeline's own (public only, unless it was built for another)."""
        return self.pipeline.principal if principal is None else Principal.of(principal)

    def search(self, query: str, principal: Principal | Iterable[str] | str | None = None,
               top_n: int | None = None) -> Served:
        """The served pipeline's top ``top_n`` hits for ``query`` (the bundle's ``top_n`` by
        default) that ``principal`` may read."""
        who = self.principal(principal)
        started = time.perf_counter()
        result = self._retrieve(query, who, top_n)
        served = Served(_request_id(), "search", who.as_list(), result, _stage_ms(result))
        served.latency_ms["total"] = (time.perf_counter() - started) * 1000
        self._record(served)
        return served

    def answer(self, query: str, principal: Principal | Iterable[str] | str | None = None) -> Served:
        """The bundle's answer to ``query`` as ``principal``: cited sentences of the served hits
        it may read, or an abstention."""
        if self.documents is None:
            raise ValueError(f"{self.opened.folder}: the bundle does not name its corpus_documents, "
                             "so its sentences cannot be cited; pass documents= to the Service")
        who = self.principal(principal)
        started = time.perf_counter()
        result = self._retrieve(query, who, None)  # the served top_n, as the evaluation answers
        request_id = _request_id()
        answer_started = time.perf_counter()
        if self._scorer is None:  # the selector or reranker loads on first use, not per request
            self._scorer = self.opened.scorer()
        answer = extractive_answer(request_id, query, result.hits, self.documents, self._scorer,
                                   AnswerSettings.from_bundle(self.opened.bundle), who)
        finished = time.perf_counter()
        served = Served(request_id, "answer", who.as_list(), result, _stage_ms(result), answer)
        served.latency_ms["answer"] = (finished - answer_started) * 1000
        served.latency_ms["total"] = (finished - started) * 1000
        self._record(served)
        return served

    def _retrieve(self, query: str, principal: Principal, top_n: int | None) -> SearchResult:
        """The one place a request reaches the ranking pipeline, as ``principal``: ``search``
        and ``answer`` both come through here."""
        return self.pipeline.search([query], top_n, principal=principal)[0]

    def _record(self, served: Served) -> None:
        if self.audit is None:
            return
        try:
            self.audit.submit(self.record_of(served))
        except Exception as error:  # noqa: BLE001 - building the row must not fail the request either
            self.audit.count_failure(f"{type(error).__name__}: {error}")

    def record_of(self, served: Served) -> AuditRecord:
        """The audit row of a served request: exactly what it returned."""
        answer = served.answer
        hits = [{"rank": h.rank, "chunk_id": h.chunk_id, "doc_id": h.doc_id, "start": h.start, "end": h.end,
                 "groups": list(h.groups), "scores": {k: float(v) for k, v in h.scores.items()}}
                for h in served.result.hits]
        citations = None
        if answer is not None:
            citations = [{"doc_id": doc, "sentence": int(sentence), "score": _float(getattr(s, "score", None))}
                         for s in answer.sentences for doc, sentence in s.citations]
        return AuditRecord(
            request_id=served.request_id, kind=served.kind, query=served.result.query,
            query_sha256=query_sha256(served.result.query), principal=served.principal,
            served_from=self.served_from.source, serving=self.pipeline.config.label(),
            bundle_path=self.served_from.path, bundle_sha256=self.served_from.sha256,
            registry_version=self.served_from.registry_version, hits=hits, citations=citations,
            abstained=answer.abstained if answer is not None else None,
            evidence_score=_float(answer.evidence_score) if answer is not None else None,
            latency_ms=dict(served.latency_ms), created_at=utc_stamp(),
        )

    def close(self, timeout: float = 10.0) -> None:
        """Write the queued audit rows (at most ``timeout`` seconds) and stop the writer."""
        if self.audit is not None:
            self.audit.close(timeout)


def _float(value) -> float | None:
    return None if value is None else float(value)


def _request_id() -> str:
    return uuid.uuid4().hex


def _stage_ms(result: SearchResult) -> dict[str, float]:
    """The pipeline's stage timings (ann, bm25, fusion, rerank) in milliseconds; the request's
    own total is measured by the service around everything it did."""
    return {stage: seconds * 1000 for stage, seconds in result.timings.items() if stage != "total"}
