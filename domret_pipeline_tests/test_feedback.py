"""The feedback store on a real SQLite file: schema, imports, the sensor's range query."""

import json

import pytest

from domret_pipeline.core.data.labels import LabeledQueries
from domret_pipeline.core.errors import InputDataError
from domret_pipeline.core.feedback.files import read_feedback_file
from domret_pipeline.core.feedback.store import (
    SCHEMA_VERSION, FeedbackLabel, FeedbackStore, confirmed_negatives, merge_feedback,
)


@pytest.fixture
def store(tmp_path):
    store = FeedbackStore(f"sqlite:///{tmp_path}/feedback.db")
    assert store.migrate() == 0 and store.version() == SCHEMA_VERSION
    return store


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"query": "who approves SLO exceptions", "doc_id": "slo-a", "label": "relevant", "user": "ana"},
        {"query": "who approves SLO exceptions", "doc_id": "slo-b", "label": "not relevant", "user": "ana"},
        {"query": "Leeds forklift speed", "chunk_id": "fl-a#0", "label": "relevant", "critical": True}]


def test_schema_is_created_and_migrated_from_an_older_version(tmp_path):
    from domret_pipeline.core.feedback import store as feedback_store

    old = FeedbackStore(f"sqlite:///{tmp_path}/old.db")
    # a store created by an earlier release: schema version 1, without the critical column
    with old.engine.begin() as connection:
        old.schema.create(connection)
        feedback_store.MIGRATIONS[1](connection, old.feedback, old.schema)
        connection.execute(old.schema.insert().values(version=1))
    with pytest.raises(RuntimeError, match="migrate"):
        old.new_since(0)
    assert old.migrate() == 1 and old.version() == SCHEMA_VERSION
    assert old.new_since(0).count == 0
    assert old.migrate() == SCHEMA_VERSION  # idempotent


def test_import_is_validated_deduplicated_and_all_or_nothing(store, tmp_path):
    labels = read_feedback_file(write(tmp_path / "f.jsonl", ROWS))
    first = store.add(labels)
    assert (first.inserted, first.duplicates, first.first_id, first.last_id) == (3, 0, 1, 3)
    again = store.add(read_feedback_file(tmp_path / "f.jsonl"))
    assert (again.inserted, again.duplicates) == (0, 3)  # same file twice: nothing new
    stored = store.rows()
    assert [r.label for r in stored] == ["relevant", "not_relevant", "relevant"] and stored[2].critical

    bad = write(tmp_path / "bad.jsonl", [ROWS[0], "{broken", {"query": "x", "doc_id": "d", "label": "maybe"},
                                         {"query": "x", "label": "relevant"}, {"query": "x", "doc_id": "d",
                                                                              "label": "relevant", "created_at": "yesterday"}])
    with pytest.raises(InputDataError) as error:
        read_feedback_file(bad)
    text = str(error.value)
    assert f"{bad}:2" in text and f"{bad}:3" in text and f"{bad}:4" in text and f"{bad}:5" in text
    assert "unknown label 'maybe'" in text and "needs a doc_id or a chunk_id" in text
    assert len(store.rows()) == 3  # nothing half-imported


def test_csv_import(store, tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("query,doc_id,label,user\nOBX-3 CUI mapping,hl7-a,relevant,bo\n,hl7-b,relevant,bo\n", encoding="utf-8")
    with pytest.raises(InputDataError, match=f"{path}:3"):
        read_feedback_file(path)


def test_new_since_counts_labels_and_critical_ones_after_the_cursor(store, tmp_path):
    store.add(read_feedback_file(write(tmp_path / "f.jsonl", ROWS)))
    assert (store.new_since(0).count, store.new_since(0).critical, store.new_since(0).max_id) == (3, 1, 3)
    assert (store.new_since(2).count, store.new_since(2).critical) == (1, 1)
    assert store.new_since(3).count == 0 and store.new_since(3).max_id is None


def test_merge_adds_train_judgements_and_never_touches_frozen_queries(store, tmp_path):
    labels = LabeledQueries({"t1": "checkout SLO target"}, {"t1": "test"}, {"t1": {"slo-a": 1}})
    store.add(read_feedback_file(write(tmp_path / "f.jsonl", ROWS + [
        {"query": "checkout SLO target", "query_id": "t1", "doc_id": "slo-b", "label": "relevant"},
        {"query": "x", "doc_id": "nowhere", "label": "relevant"}])))
    feedback = store.rows()
    merge = merge_feedback(labels, feedback, {"fl-a#0": "fl-a"}, {"slo-a", "slo-b", "fl-a"})
    assert merge.new_queries == 2 and merge.new_judgements == 2 and merge.confirmed_negatives == 1
    assert merge.skipped == {"test_split_query": 1, "unknown_document": 1}
    assert merge.used_ids == [1, 2, 3]
    assert labels.qrels["t1"] == {"slo-a": 1}  # the frozen query is untouched
    new = [q for q in labels.queries if q.startswith("fb-")]
    assert all(labels.splits[q] == "train" for q in new)
    negatives = confirmed_negatives(feedback, {"slo-b": ["slo-b#0", "slo-b#1"]})
    assert list(negatives.values()) == [["slo-b#0", "slo-b#1"]]


def test_cli_import_add_and_queue(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "DOMRET_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "domret_pipeline.cli", "feedback"]
    good = write(tmp_path / "f.jsonl", ROWS)
    bad = write(tmp_path / "bad.jsonl", [ROWS[0], {"query": "x", "doc_id": "d", "label": "maybe"}])
    refused = subprocess.run([*cli, "import", str(bad)], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and f"{bad}:2" in refused.stderr and "nothing imported" in refused.stderr
    first = subprocess.run([*cli, "import", str(good)], capture_output=True, text=True, env=env, check=True)
    assert "3 label(s) added (ids 1-3), 0 duplicate(s)" in first.stdout
    again = subprocess.run([*cli, "import", str(good)], capture_output=True, text=True, env=env, check=True)
    assert "0 label(s) added, 3 duplicate(s) ignored" in again.stdout
    added = subprocess.run([*cli, "add", "forklift speed", "not_relevant", "--chunk", "fl-b#0", "--critical", "--user", "bo"],
                           capture_output=True, text=True, env=env, check=True)
    assert "1 label(s) added (ids 4-4)" in added.stdout
    stored = FeedbackStore(f"sqlite:///{tmp_path}/home/feedback.db").rows()
    assert stored[-1].critical and stored[-1].source == "domret search" and stored[0].source == "import:f.jsonl"
    queue = subprocess.run([*cli, "queue"], capture_output=True, text=True, env=env)
    assert queue.returncode == 1 and "no labeling queue yet" in queue.stderr


def test_reimporting_rows_without_timestamps_a_second_later_adds_nothing(store, tmp_path, monkeypatch):
    from datetime import datetime

    from domret_pipeline.core.feedback import store as feedback_store

    class Clock(datetime):  # two imports in different seconds, without sleeping
        times = iter(["2026-11-27T06:00:00+00:00", "2026-11-27T06:00:07+00:00"])

        @classmethod
        def now(cls, tz=None):
            return datetime.fromisoformat(next(cls.times))

    monkeypatch.setattr(feedback_store, "datetime", Clock)
    path = write(tmp_path / "f.jsonl", ROWS)
    first = store.add(read_feedback_file(path))
    again = store.add(read_feedback_file(path))
    assert (first.inserted, again.inserted, again.duplicates) == (3, 0, 3)
    assert {row.created_at for row in store.rows()} == {"2026-11-27T06:00:00+00:00"}  # stamped once, on import
