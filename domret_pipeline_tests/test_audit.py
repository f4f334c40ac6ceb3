"""The audit trail (issue 15, item 2): every served search and answer writes one row holding
exactly what was served; a failing or slow store neither fails nor holds up the request and is
counted; queries can be kept as hashes only; retention purges; ``domret audit`` reads rows
back. Most tests serve a hand-built bundle (fixed rankings, a keyword encoder); the last one
serves the tiny graph's champion through the API and the CLI."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from domret_pipeline.core.answers.extractive import AnswerSettings, extractive_answer
from domret_pipeline.core.audit.store import AuditRecord, AuditSettings, AuditStore, export_rows, parse_since, utc_stamp
from domret_pipeline.core.audit.writer import AuditWriter
from domret_pipeline.core.data.chunking import Chunk
from domret_pipeline.core.data.documents import Document
from domret_pipeline.core.serving.bundle import OpenBundle
from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig
from domret_pipeline.core.serving.service import ServedFrom, Service

TEXTS = {
    "slo-a": ("checkout-api SLO", ["The checkout-api availability objective is 99.9%.", "Exceptions need the SRE lead."]),
    "fl-a": ("Forklifts at Leeds", ["Forklifts at Leeds drive at most 8 km/h in aisles.", "Batteries charge in Bay C."]),
    "fl-b": ("Forklifts at Lyon", ["Forklifts at Lyon drive at most 6 km/h in aisles.", "Batteries charge in Zone 4."]),
    "pay-leeds": ("Leeds forklift driver pay", ["Forklift drivers at Leeds earn pay band B.", "Pay reviews are in March."]),
}
GROUPS = {"pay-leeds": ("hr",)}  # the best match for Leeds forklift questions, readable by hr only
VOCAB = sorted({w for _, sentences in TEXTS.values() for s in sentences for w in re.findall(r"[a-z0-9-]+", s.lower())})


class KeywordEncoder:
    """Bag of words over the corpus vocabulary (plus a small constant), L2-normalised: sentence
    scores that answer on-topic queries and abstain on off-topic ones."""

    def get_embedding_dimension(self) -> int:
        return len(VOCAB) + 1

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), len(VOCAB) + 1), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9-]+", text.lower()):
                if word in VOCAB:
                    out[row, VOCAB.index(word)] += 1
            out[row, -1] = 0.1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class FixedIndex:
    """A fixed ranking over its positions (``chunk_ids``), masked as FAISS is by ``visible``."""

    def __init__(self, ranking):
        self.ranking, self.chunk_ids = ranking, [c for c, _ in ranking]

    def search(self, vectors, k, visible=None):
        ranking = [(c, s) for i, (c, s) in enumerate(self.ranking) if visible is None or visible[i]]
        return [ranking[:k] for _ in range(len(vectors))]


def fixed_bm25():
    return FixedIndex([("pay-leeds#0", 9.0), ("fl-a#0", 7.0), ("slo-a#0", 1.0)])


class KeywordReranker:
    def predict(self, pairs, **kwargs):
        return np.array([5.0 if "Leeds" in p else -1.0 for _, p in pairs], dtype=np.float32)


def documents() -> dict[str, Document]:
    docs = {}
    for doc_id, (title, sentences) in TEXTS.items():
        text, spans = "", []
        for sentence in sentences:
            start = len(text) + (1 if text else 0)
            text = f"{text} {sentence}" if text else sentence
            spans.append((start, start + len(sentence)))
        docs[doc_id] = Document(doc_id, text, title, spans, groups=GROUPS.get(doc_id, ("public",)))
    return docs


def opened_bundle(tmp_path, threshold: float = 0.3) -> OpenBundle:
    """A hybrid, reranked bundle: its hits carry dense, bm25, rrf, rerank and final scores."""
    docs = documents()
    chunks = [Chunk(f"{d}#0", d, 0, 0, len(doc.text), 0, 1, 12, doc.text, doc.title, doc.groups) for d, doc in docs.items()]
    config = ServingConfig("hybrid", rerank=True, candidates=3, fusion_weight=1.0, depth=10, top_n=3)
    index = FixedIndex([("pay-leeds#0", 0.95), ("fl-b#0", 0.9), ("fl-a#0", 0.8), ("slo-a#0", 0.1)])
    encoder, bm25, reranker = KeywordEncoder(), fixed_bm25(), KeywordReranker()
    pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker)
    bundle = {"config": config.as_dict(),
              "answer": {"passages": 2, "max_sentences": 2, "threshold": threshold, "scorer": "encoder"}}
    return OpenBundle(tmp_path, bundle, pipeline, index, encoder, bm25, reranker, chunks, docs)


SERVED_FROM = ServedFrom("/bundles/serving_config-abc", "ab" * 32, "7", "champion")


def service_with_store(tmp_path, query_mode: str = "text", **writer_args):
    url = f"sqlite:///{tmp_path}/audit.db"
    writer = AuditWriter(AuditSettings(url, query_mode), **writer_args)
    return Service(opened_bundle(tmp_path), SERVED_FROM, writer), AuditStore(url)


def served_hits(served) -> list[dict]:
    return [{"rank": h.rank, "chunk_id": h.chunk_id, "doc_id": h.doc_id, "start": h.start, "end": h.end,
             "groups": list(h.groups), "scores": h.scores} for h in served.result.hits]


def test_the_row_of_a_search_holds_exactly_what_was_served(tmp_path):
    service, store = service_with_store(tmp_path)
    served = service.search("Leeds forklift speed", principal=["sre", "ops", "sre"])
    other = service.search("checkout-api exceptions", top_n=2)
    assert service.audit.flush() and service.audit_failures == 0
    rows = store.rows()
    assert [r.request_id for r in rows] == [served.request_id, other.request_id]  # one row per request
    row = store.get(served.request_id)
    assert row.id == rows[0].id and store.get(row.id).request_id == served.request_id
    assert row.kind == "search" and row.principal == ["ops", "public", "sre"] == served.principal
    assert row.query == "Leeds forklift speed" and row.query_sha256 == hashlib.sha256(b"Leeds forklift speed").hexdigest()
    assert (row.bundle_path, row.bundle_sha256, row.registry_version, row.served_from) == (
        "/bundles/serving_config-abc", "ab" * 32, "7", "champion")
    assert row.serving == "hybrid+rerank@3 (w=1)"
    assert row.hits == served_hits(served)
    assert row.hits[0]["chunk_id"] == "fl-a#0"  # the reranked order, as served (the dense stage put fl-b first)
    assert set(row.hits[0]["scores"]) == {"dense", "bm25", "rrf", "rerank", "final"}
    fl_b = next(h for h in row.hits if h["chunk_id"] == "fl-b#0")
    assert "bm25" not in fl_b["scores"]  # fl-b had no BM25 hit: the row says so, it does not invent one
    assert row.latency_ms == served.latency_ms and {"ann", "bm25", "fusion", "rerank", "total"} == set(row.latency_ms)
    assert row.citations is None and row.abstained is None and row.evidence_score is None
    assert datetime.fromisoformat(row.created_at).tzinfo is not None
    second = store.get(other.request_id)
    assert second.principal == ["public"] and len(second.hits) == 2 and second.hits == served_hits(other)


def test_answers_are_the_evaluations_and_their_rows_hold_citations_and_abstentions(tmp_path):
    service, store = service_with_store(tmp_path)
    opened = service.opened
    answered = service.answer("forklifts at Leeds drive", principal=["ops"])
    abstained = service.answer("quarterly revenue figures")
    assert service.audit.flush() and service.audit_failures == 0
    # the answer step as the evaluation runs it: the bundle's settings and scorer on the served hits
    for served in (answered, abstained):
        hits = opened.pipeline.search([served.result.query])[0].hits
        expected = extractive_answer(served.request_id, served.result.query, hits, opened.documents, opened.scorer(),
                                     AnswerSettings.from_bundle(opened.bundle), opened.pipeline.principal)
        assert served.answer == expected
    assert not answered.answer.abstained and abstained.answer.abstained
    row = store.get(answered.request_id)
    cited = [{"doc_id": doc, "sentence": i, "score": s.score} for s in answered.answer.sentences for doc, i in s.citations]
    assert (cited[0]["doc_id"], cited[0]["sentence"]) == ("fl-a", 0) and cited[0]["score"] == answered.answer.evidence_score
    assert row.citations == cited
    assert row.kind == "answer" and row.abstained is False and row.evidence_score == answered.answer.evidence_score
    assert row.hits == served_hits(answered) and row.latency_ms == answered.latency_ms and "answer" in row.latency_ms
    row = store.get(abstained.request_id)
    assert row.abstained is True and row.citations == [] and row.evidence_score == abstained.answer.evidence_score


def test_the_principal_decides_what_is_served_and_the_row_records_it(tmp_path):
    service, store = service_with_store(tmp_path)
    public = service.search("Leeds forklift driver pay")
    hr = service.search("Leeds forklift driver pay", principal=["hr"])
    public_answer = service.answer("forklift drivers at Leeds earn")
    hr_answer = service.answer("forklift drivers at Leeds earn", principal="hr")
    assert service.audit.flush() and service.audit_failures == 0
    assert "pay-leeds#0" not in [h.chunk_id for h in public.result.hits]
    assert "pay-leeds#0" in [h.chunk_id for h in hr.result.hits]
    for served in (public, hr, public_answer, hr_answer):
        row = store.get(served.request_id)
        assert row.principal == served.principal and row.hits == served_hits(served)
    assert store.get(public.request_id).principal == ["public"]
    row = store.get(hr.request_id)
    assert row.principal == ["hr", "public"] and {h["chunk_id"]: h["groups"] for h in row.hits}["pay-leeds#0"] == ["hr"]
    # the answer cites the restricted document only for a principal that may read it
    assert hr_answer.answer.sentences[0].citations[0] == ("pay-leeds", 0)
    assert all(doc != "pay-leeds" for s in public_answer.answer.sentences for doc, _ in s.citations)
    assert store.get(hr_answer.request_id).citations[0]["doc_id"] == "pay-leeds"
    assert all(c["doc_id"] != "pay-leeds" for c in store.get(public_answer.request_id).citations)


class RaisingStore:
    url = "raising://store"

    def write(self, record):
        raise OSError("disk full")


class BlockingStore:
    """Holds every write until released: a store that has stopped answering."""

    url = "blocking://store"

    def __init__(self):
        self.entered, self.release, self.records = threading.Event(), threading.Event(), []

    def write(self, record):
        self.entered.set()
        assert self.release.wait(60)
        self.records.append(record)
        return len(self.records)


@pytest.fixture
def audit_warnings():
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("domret.audit")
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.mark.parametrize("make_writer", [
    lambda tmp: AuditWriter(store=RaisingStore()),
    lambda tmp: AuditWriter(AuditSettings("sqlite:////proc/domret-no-such-dir/audit.db")),  # cannot be created
    lambda tmp: AuditWriter(AuditSettings("nosuchdialect://nowhere/audit")),
], ids=["store-raises", "unwritable-sqlite", "unknown-dialect"])
def test_a_failing_store_does_not_fail_the_search_and_is_counted(tmp_path, make_writer, audit_warnings):
    service = Service(opened_bundle(tmp_path), SERVED_FROM, make_writer(tmp_path))
    first = service.search("Leeds forklift speed")
    second = service.answer("forklifts at Leeds drive")
    assert first.result.hits[0].chunk_id == "fl-a#0" and not second.answer.abstained
    assert service.audit.flush()
    assert service.audit_failures == 2 and service.audit.written == 0
    assert service.audit.last_error
    assert len(audit_warnings) == 1 and "audit: row not written" in audit_warnings[0]  # one line, not one per row


def test_a_store_that_hangs_does_not_hold_up_the_search(tmp_path):
    store = BlockingStore()
    service = Service(opened_bundle(tmp_path), SERVED_FROM, AuditWriter(store=store, queue_size=1))
    first = service.search("Leeds forklift speed")
    assert store.entered.wait(60)  # the writer is stuck inside the store's write...
    service.search("checkout-api exceptions")  # ...and requests are still served: one waits in the queue
    third = service.search("Lyon batteries")  # the queue is full: dropped, counted, served anyway
    assert third.result.hits and service.audit_failures == 1 and store.records == []
    store.release.set()
    assert service.audit.flush()
    assert [r.request_id for r in store.records][0] == first.request_id and service.audit.written == 2


def test_hash_mode_keeps_only_the_querys_hash(tmp_path):
    settings = AuditSettings.from_env(f"sqlite:///{tmp_path}/audit.db", {"DOMRET_AUDIT_QUERY": "hash"})
    assert settings.query_mode == "hash"
    service = Service(opened_bundle(tmp_path), SERVED_FROM, AuditWriter(settings))
    secret = "who approves checkout-api exceptions for ACME-4411"
    served = service.search(secret)
    assert service.audit.flush() and service.audit_failures == 0
    row = AuditStore(settings.url).get(served.request_id)
    assert row.query is None and row.query_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert row.hits == served_hits(served)
    from sqlalchemy import create_engine, text

    with create_engine(settings.url).connect() as connection:  # the text is nowhere in the database
        cells = [str(v) for r in connection.execute(text("SELECT * FROM audit_log")) for v in r]
    assert cells and not any("ACME-4411" in c for c in cells)
    # a store opened in hash mode drops the text whoever built the record
    store = AuditStore(settings.url, "hash")
    store.write(AuditRecord("r-direct", "search", "0" * 64, query=secret))
    assert store.get("r-direct").query is None
    with pytest.raises(ValueError, match="text, hash"):
        AuditSettings.from_env(settings.url, {"DOMRET_AUDIT_QUERY": "hashed"})
    with pytest.raises(ValueError, match="number of days"):
        AuditSettings.from_env(settings.url, {"DOMRET_AUDIT_RETENTION_DAYS": "ninety"})


def _aged(store: AuditStore, now: datetime, days_old: list[float]) -> list[int]:
    return [store.write(AuditRecord(f"r{i}", "search", "0" * 64, query=f"q{i}", created_at=utc_stamp(now - timedelta(days=d))))
            for i, d in enumerate(days_old)]


def test_retention_purges_old_rows(tmp_path, monkeypatch, capsys):
    from domret_pipeline.cli import main

    monkeypatch.delenv("DOMRET_AUDIT_RETENTION_DAYS", raising=False)
    url = f"sqlite:///{tmp_path}/audit.db"
    store = AuditStore(url)
    store.migrate()
    now = datetime.now(timezone.utc)
    ids = _aged(store, now, [40, 10, 0.5])
    assert store.purge(30, now) == 1 and [r.id for r in store.rows()] == ids[1:]
    assert store.purge(30, now) == 0
    # on open, when a retention period is set
    writer = AuditWriter(AuditSettings(url, retention_days=7), now=lambda: now)
    writer.submit(AuditRecord("r-new", "search", "0" * 64, query="new"))
    assert writer.flush() and writer.purged == 1 and writer.failures == 0
    assert [r.request_id for r in store.rows()] == ["r2", "r-new"]
    # domret audit purge, with the period from the flag or the environment
    _aged(store, now, [3])
    assert main(["audit", "purge", "--older-than-days", "2", "--url", url]) == 0
    assert "1 audit row(s) older than 2 days deleted" in capsys.readouterr().out
    assert main(["audit", "purge", "--url", url]) == 2
    monkeypatch.setenv("DOMRET_AUDIT_RETENTION_DAYS", "0.25")
    assert main(["audit", "purge", "--url", url]) == 0
    assert [r.request_id for r in store.rows()] == ["r-new"]


def test_the_audit_store_shares_a_database_with_the_feedback_store(tmp_path):
    from domret_pipeline.core.feedback.store import SCHEMA_VERSION as FEEDBACK_VERSION, FeedbackStore

    url = f"sqlite:///{tmp_path}/team.db"
    feedback, audit = FeedbackStore(url), AuditStore(url)
    assert feedback.migrate() == 0 and audit.migrate() == 0  # each from scratch: neither reads the other's version
    assert (feedback.version(), audit.version()) == (FEEDBACK_VERSION, 1)
    assert audit.migrate() == 1 and feedback.migrate() == FEEDBACK_VERSION


def test_domret_audit_lists_and_exports_rows(tmp_path, monkeypatch, capsys):
    from domret_pipeline.cli import main

    monkeypatch.delenv("DOMRET_AUDIT_QUERY", raising=False)
    service, store = service_with_store(tmp_path)
    searched = service.search("Leeds forklift speed", principal=["ops"])
    answered = service.answer("forklifts at Leeds drive")
    service.close()
    url = store.url
    assert main(["audit", "list", "--url", url]) == 0
    out = capsys.readouterr().out
    assert out.index("answer") < out.index("search ")  # newest first
    assert "as ops,public" in out and "v7" in out and "'Leeds forklift speed'" in out and "cited: fl-a:0" in out
    assert main(["audit", "list", "--url", url, "--kind", "search", "--limit", "1"]) == 0
    assert "answer" not in capsys.readouterr().out
    assert main(["audit", "list", "--url", url, "--since", "2999-01-01"]) == 0
    assert "no audit rows" in capsys.readouterr().out

    rows = [r.as_dict() for r in store.rows()]
    assert main(["audit", "export", "--format", "jsonl", "--out", str(tmp_path / "a.jsonl"), "--url", url]) == 0
    exported = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert exported == rows and [r["request_id"] for r in exported] == [searched.request_id, answered.request_id]
    assert main(["audit", "export", "--format", "csv", "--out", str(tmp_path / "a.csv"), "--url", url]) == 0
    with (tmp_path / "a.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [json.loads(r["hits"]) for r in table] == [r["hits"] for r in rows]
    assert json.loads(table[1]["citations"]) == rows[1]["citations"] and table[0]["citations"] == ""
    with pytest.raises(ValueError, match="jsonl, csv"):
        export_rows([], "xml", io.StringIO())


def test_since_takes_dates_times_and_ages():
    now = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)
    assert parse_since("7d", now) == utc_stamp(datetime(2026, 2, 24, 12, 0, tzinfo=timezone.utc))
    assert parse_since("90m", now) == utc_stamp(datetime(2026, 3, 3, 10, 30, tzinfo=timezone.utc))
    assert parse_since("2026-03-01", now) == "2026-03-01T00:00:00.000000+00:00"
    assert parse_since("2026-03-01T10:00+01:00", now) == "2026-03-01T09:00:00.000000+00:00"
    with pytest.raises(ValueError, match="ISO date"):
        parse_since("last tuesday", now)


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory, tiny_encoder):
    """The tiny graph materialized and published under its own DOMRET_HOME, registered as the
    API looks for it (the home's MLflow store, the default model name): champion v1."""
    import dagster as dg

    from domret_pipeline import locations
    from domret_pipeline.checks import ALL_CHECKS
    from domret_pipeline.definitions import ASSETS
    from domret_pipeline.publication import publish_run
    from domret_pipeline.registry import Registry
    from domret_pipeline.resources import MlflowTracker

    from .conftest import make_resources, make_small_dataset
    from .graph_helpers import run_config

    home = tmp_path_factory.mktemp("audit-home")
    uri = locations.local_tracking_uri(home)
    resources = make_resources(home, tiny_encoder, uri)
    resources["mlflow"] = MlflowTracker(tracking_uri=uri, experiment_name="test-audit", artifact_location=str(home / "mlflow-artifacts"),
                                        registered_model=locations.REGISTERED_MODEL)
    result = dg.materialize([*ASSETS, *ALL_CHECKS], resources=resources,
                            run_config=run_config(make_small_dataset(home / "data"), tiny_encoder))
    assert publish_run(home / "refs", result.run_id, Registry(uri)).published
    return home


def test_the_champion_served_through_the_api_and_the_cli_is_audited(champion_home, monkeypatch, capsys):
    from domret_pipeline import api, locations
    from domret_pipeline.cli import main

    for name in ("MLFLOW_TRACKING_URI", "DOMRET_HOME", "DOMRET_AUDIT_URL", "DOMRET_AUDIT_QUERY", "DOMRET_AUDIT_RETENTION_DAYS"):
        monkeypatch.delenv(name, raising=False)
    champion = api.default_registry(champion_home).champion()
    assert champion is not None and champion.version == "1"
    service = api.load_service(champion_home)
    assert service.served_from == ServedFrom(champion.serving_config["path"], champion.serving_config["sha256"], "1", "champion")
    answered = service.answer("Leeds forklift speed", principal=["ops"])
    searched = service.search("who approves exceptions")
    service.close()
    assert service.audit_failures == 0
    store = AuditStore(locations.local_audit_url(champion_home))  # beside feedback.db
    # the answer is the evaluation's: the bundle's settings and scorer on the served hits
    opened, query = service.opened, "Leeds forklift speed"
    assert answered.answer == extractive_answer(answered.request_id, query,
                                                opened.pipeline.search([query], principal=["ops"])[0].hits, opened.documents,
                                                opened.scorer(), AnswerSettings.from_bundle(opened.bundle), ["ops"])
    row = store.get(answered.request_id)
    assert (row.kind, row.principal, row.registry_version, row.served_from) == ("answer", ["ops", "public"], "1", "champion")
    assert (row.bundle_path, row.bundle_sha256) == (champion.serving_config["path"], champion.serving_config["sha256"])
    assert row.hits == served_hits(answered) and row.abstained == answered.answer.abstained
    assert row.citations == [{"doc_id": d, "sentence": i, "score": s.score} for s in answered.answer.sentences
                             for d, i in s.citations]
    assert row.serving == opened.pipeline.config.label() and row.latency_ms == answered.latency_ms
    assert store.get(searched.request_id).hits == served_hits(searched)

    # domret search --answer: one row per query, naming the bundle it served (here --latest)
    assert main(["search", "Leeds forklift speed", "forklift batteries", "--answer", "--json", "--latest",
                 "--home", str(champion_home)]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 2 and all(r["answer"] is not None for r in results)
    for result in results:
        row = store.get(result["request_id"])
        assert (row.kind, row.served_from, row.registry_version, row.query) == ("answer", "latest", None, result["query"])
        assert [(h["chunk_id"], h["scores"]) for h in row.hits] == [(h["chunk_id"], h["scores"]) for h in result["hits"]]
        assert row.citations == [{"doc_id": d, "sentence": i, "score": s["score"]}
                                 for s in result["answer"]["sentences"] for d, i in s["citations"]]
        assert row.abstained == result["answer"]["abstained"]
    assert main(["search", "Leeds forklift speed", "--answer", "--home", str(champion_home), "--as", "ops"]) == 0
    printed = capsys.readouterr().out
    assert "audit request" in printed and "answer" in printed
    request_id = re.search(r"audit request ([0-9a-f]{32})", printed).group(1)
    assert store.get(request_id).principal == ["ops", "public"]
    # the Python one-shot answer is audited too
    one = api.answer("who approves exceptions", ["sre"], home=champion_home)
    assert store.get(one.request_id).principal == ["public", "sre"] and len(store.rows()) == 6
    assert main(["audit", "list", "--home", str(champion_home), "--limit", "6"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("\n#") + listing.startswith("#") == 6 and "v1 (bundle" in listing and "latest (bundle" in listing


def test_exports_name_every_field_of_a_row():
    from dataclasses import fields

    from domret_pipeline.core.audit.store import EXPORT_COLUMNS

    assert sorted(EXPORT_COLUMNS) == sorted(f.name for f in fields(AuditRecord))
