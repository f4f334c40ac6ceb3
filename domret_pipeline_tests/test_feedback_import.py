"""Feedback checked at the door (issue 12, defect 5): empty queries, ids unknown to the latest
corpus and labels, renamed files, encodings, and stores keyed by an earlier release."""

import json

import dagster as dg
import pytest

from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
from domret_pipeline.assets.labels import labeled_queries
from domret_pipeline.cli import main
from domret_pipeline.core.feedback import store as feedback_store
from domret_pipeline.core.feedback.store import FeedbackLabel, FeedbackStore

from .conftest import make_resources, publish
from .graph_helpers import run_config

GOOD = [{"query": "Leeds forklift speed", "doc_id": "fl-a", "label": "relevant"},
        {"query": "Lyon batteries", "chunk_id": "fl-b#0", "label": "not_relevant", "created_at": "2026-11-01T00:00:00Z"},
        {"query": "checkout-api availability target", "query_id": "q1", "doc_id": "slo-a", "label": "relevant"}]


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("DOMRET_HOME", str(home))
    monkeypatch.delenv("DOMRET_REFS_DIR", raising=False)
    monkeypatch.delenv("DOMRET_FEEDBACK_URL", raising=False)
    return home


@pytest.fixture
def published(home, tiny_encoder, mlflow_uri, small_dataset):
    """The latest corpus_documents, corpus_chunks and labeled_queries references under home/refs."""
    config = run_config(small_dataset, tiny_encoder)
    result = dg.materialize([corpus_documents, corpus_chunks, labeled_queries],
                            resources=make_resources(home, tiny_encoder, mlflow_uri),
                            run_config={"ops": {k: config["ops"][k] for k in ("corpus_documents", "corpus_chunks",
                                                                               "labeled_queries")}})
    assert result.success and publish(home, result.run_id, mlflow_uri).published  # as `domret run` does
    assert (home / "refs" / "corpus_chunks.json").is_file()
    return home


def domret(capsys, *argv):
    code = main(["feedback", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


def jsonl(path, rows, encoding="utf-8"):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding=encoding)
    return path


def stored(home):
    return FeedbackStore(f"sqlite:///{home}/feedback.db").rows()


def test_an_empty_query_is_refused(home, capsys):
    code, _, err = domret(capsys, "add", "  ", "relevant", "--doc", "d1")
    assert code == 1 and err == ["domret: nothing added: <command line>: empty query"]
    assert stored(home) == []


def test_unknown_ids_are_refused_with_file_and_line_or_quarantined(published, tmp_path, capsys):
    bad = jsonl(tmp_path / "f.jsonl", GOOD + [
        {"query": "x", "doc_id": "nowhere", "label": "relevant"},
        {"query": "x", "chunk_id": "fl-a#99", "label": "relevant"},
        {"query": "x", "query_id": "q404", "doc_id": "fl-a", "label": "relevant"},
        {"query": "x", "chunk_id": "fl-a#0", "doc_id": "fl-b", "label": "relevant"}])
    code, _, err = domret(capsys, "import", str(bad))
    assert code == 1 and stored(published) == []
    assert err[:4] == [f"domret: {bad}:4: unknown document 'nowhere' (not in the latest corpus_documents)",
                       f"domret: {bad}:5: unknown chunk 'fl-a#99' (not in the latest corpus_chunks)",
                       f"domret: {bad}:6: unknown query id 'q404' (not in the latest labeled_queries)",
                       f"domret: {bad}:7: chunk 'fl-a#0' belongs to document 'fl-a', not 'fl-b'"]
    assert err[4].startswith("domret: nothing imported: 4 bad rows")
    code, out, _ = domret(capsys, "import", str(bad), "--on-bad-rows", "quarantine")
    assert code == 0 and "3 label(s) added (ids 1-3), 0 duplicate(s) ignored, 4 bad row(s) quarantined" in out
    assert f"{bad}:4: unknown document 'nowhere'" in out and len(stored(published)) == 3
    code, _, err = domret(capsys, "add", "Leeds speed", "relevant", "--chunk", "fl-a#7")
    assert code == 1 and err == ["domret: nothing added: <command line>: unknown chunk 'fl-a#7' (not in the latest "
                                 "corpus_chunks)"]


def test_the_same_rows_from_a_renamed_file_import_nothing_new(home, tmp_path, capsys):
    first = jsonl(tmp_path / "monday.jsonl", GOOD)
    renamed = tmp_path / "monday-copy.jsonl"
    renamed.write_bytes(first.read_bytes())
    assert domret(capsys, "import", str(first))[1].startswith("3 label(s) added")
    code, out, _ = domret(capsys, "import", str(renamed))
    assert code == 0 and out.startswith("0 label(s) added, 3 duplicate(s) ignored")


def test_utf8_with_or_without_bom_imports_and_other_encodings_are_one_line(home, tmp_path, capsys):
    bom_jsonl = tmp_path / "bom.jsonl"
    bom_jsonl.write_bytes(b"\xef\xbb\xbf" + jsonl(tmp_path / "plain.jsonl", GOOD[:1]).read_bytes())
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes("\ufeffquery,doc_id,label\nwho approves ledger-sync exceptions,slo-b,relevant\n".encode())
    assert domret(capsys, "import", str(bom_jsonl))[0] == 0
    assert domret(capsys, "import", str(bom_csv))[0] == 0
    assert {r.query for r in stored(home)} == {"Leeds forklift speed", "who approves ledger-sync exceptions"}
    latin = tmp_path / "latin.csv"
    latin.write_bytes("query,doc_id,label\nok,slo-a,relevant\nvitesse des chariots à Lyon,fl-b,relevant\n".encode("cp1252"))
    code, _, err = domret(capsys, "import", str(latin))
    assert code == 1 and err == [f"domret: nothing imported: {latin}:3: not valid UTF-8 (byte 0xe0): save the file as UTF-8"]
    utf16 = jsonl(tmp_path / "utf16.jsonl", GOOD, encoding="utf-16")
    code, _, err = domret(capsys, "import", str(utf16))
    assert code == 1 and err == [f"domret: nothing imported: {utf16}:1: UTF-16 text: save the file as UTF-8"]


def test_a_store_keyed_by_the_previous_release_is_rekeyed_on_migration(home, tmp_path, capsys):
    """Version 2 keyed the file name too: after migrating, neither the same file nor a renamed
    copy imports its rows again, whether the rows carried their own timestamp or were stamped."""
    path = jsonl(tmp_path / "f.jsonl", GOOD)
    old = FeedbackStore(f"sqlite:///{home}/feedback.db")
    home.mkdir(exist_ok=True)
    with old.engine.begin() as connection:
        old.schema.create(connection)
        for version in (1, 2):
            feedback_store.MIGRATIONS[version](connection, old.feedback, old.schema)
        connection.execute(old.schema.insert().values(version=2))
        for number, row in enumerate(GOOD, start=1):  # as version 2 stored them: key taken before the stamp
            label = FeedbackLabel(**row, source="import:f.jsonl")
            key = label.legacy_key()
            label.created_at = label.created_at or "2026-11-20T00:00:00+00:00"
            connection.execute(old.feedback.insert().values(id=number, dedup_key=key, **{
                k: v for k, v in label.as_dict().items() if k != "id"}))
    code, out, _ = domret(capsys, "import", str(path))  # migrates on first use
    assert code == 0 and out.startswith("0 label(s) added, 3 duplicate(s) ignored"), out
    renamed = tmp_path / "g.jsonl"
    renamed.write_bytes(path.read_bytes())
    assert domret(capsys, "import", str(renamed))[1].startswith("0 label(s) added, 3 duplicate(s) ignored")
    assert [r.id for r in stored(home)] == [1, 2, 3] and old.version() == 3
