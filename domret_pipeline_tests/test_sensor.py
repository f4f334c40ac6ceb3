"""The feedback sensor on a real SQLite store, with Dagster's sensor test context."""

import json

import dagster as dg

from domret_pipeline.core.feedback.store import FeedbackLabel
from domret_pipeline.resources import FeedbackStoreResource
from domret_pipeline.sensors import FEEDBACK_IDS_TAG, feedback_sensor


def _labels(n, critical=False, start=0):
    return [FeedbackLabel(query=f"query {start + i}", label="relevant", doc_id="slo-a", critical=critical,
                          created_at=f"2026-11-27T00:00:{start + i:02d}+00:00") for i in range(n)]


def tick(instance, resource, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"feedback": resource})
    return feedback_sensor(context), context.cursor


def test_sensor_skips_requests_once_and_advances_its_cursor(tmp_path):
    resource = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db", retrain_min_labels=3)
    with dg.instance_for_test() as instance:
        # no store yet, then an empty store: skip, with the reason
        result, cursor = tick(instance, resource)
        assert isinstance(result, dg.SkipReason) and "migrate" in result.skip_message
        store = resource.store()
        store.migrate()
        result, cursor = tick(instance, resource)
        assert isinstance(result, dg.SkipReason) and "no feedback label after id 0" in result.skip_message

        store.add(_labels(2))
        result, cursor = tick(instance, resource, cursor)
        assert isinstance(result, dg.SkipReason) and "2 new label(s)" in result.skip_message and "needs 3" in result.skip_message
        assert cursor is None  # not acted on: the labels wait for more

        store.add(_labels(1, start=2))
        result, cursor = tick(instance, resource, cursor)
        assert isinstance(result, dg.RunRequest) and result.run_key == "feedback-1-3"
        assert result.tags[FEEDBACK_IDS_TAG] == "1-3" and cursor == "3"
        ops = result.run_config["ops"]
        assert ops["labeled_queries"]["config"] == {"use_feedback": True, "feedback_max_id": 3}
        assert ops["hard_negatives"]["config"]["feedback_max_id"] == 3

        # evaluating again from the advanced cursor: nothing new, no duplicate request
        again, cursor = tick(instance, resource, cursor)
        assert isinstance(again, dg.SkipReason) and cursor == "3"
        # a daemon restarting from an old cursor asks for the same run key (Dagster dedups it)
        replay, _ = tick(instance, resource, None)
        assert replay.run_key == "feedback-1-3"

        # one critical label is enough
        store.add(_labels(1, critical=True, start=3))
        result, cursor = tick(instance, resource, cursor)
        assert result.run_key == "feedback-4-4" and result.tags["domret/trigger"] == "critical" and cursor == "4"


def test_retrain_requests_carry_the_deployment_run_config(tmp_path):
    config = tmp_path / "retrain.yaml"
    config.write_text("ops:\n  corpus_documents:\n    config:\n      path: /data/corpus.jsonl\n")
    resource = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db", retrain_min_labels=1,
                                     retrain_run_config=str(config))
    resource.store().migrate()
    resource.store().add(_labels(1))
    with dg.instance_for_test() as instance:
        result, _ = tick(instance, resource)
    assert result.run_config["ops"]["corpus_documents"]["config"]["path"] == "/data/corpus.jsonl"
    assert json.dumps(result.run_config)  # serialisable, as the daemon stores it
