"""The weekly_retrain schedule's run request, executed end to end on the tiny graph (issue 12,
defect 1: it always failed on a twice-logged MLflow param), and feedback_max_id beyond the
newest feedback row."""

from datetime import datetime, timezone

import dagster as dg

from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
from domret_pipeline.assets.labels import labeled_queries
from domret_pipeline.checks import ALL_CHECKS
from domret_pipeline.definitions import ASSETS
from domret_pipeline.jobs import retrain_job
from domret_pipeline.sensors import weekly_retrain

from .graph_helpers import resources_with_feedback, run_config

FEEDBACK = [
    {"query": "Leeds forklift speed", "doc_id": "fl-a", "label": "relevant", "user": "ana"},
    {"query": "speed limit for forklifts in Leeds aisles", "chunk_id": "fl-a#0", "label": "relevant"},
    {"query": "Leeds forklift speed", "doc_id": "fl-b", "label": "not_relevant"},
]


def _resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    return resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset, FEEDBACK)


def _mlflow_params(mlflow_uri, experiment, asset):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return next(r for r in runs if r.data.tags["dagster.asset_key"] == asset).data.params


def test_weekly_retrain_schedule_request_runs_end_to_end(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    resources = _resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset)
    defs = dg.Definitions(assets=ASSETS, asset_checks=ALL_CHECKS, jobs=[retrain_job], schedules=[weekly_retrain],
                          resources=resources)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, resources={"feedback": resources["feedback"]},
                                            scheduled_execution_time=datetime(2026, 11, 30, 3, tzinfo=timezone.utc))
        requests = weekly_retrain.evaluate_tick(context).run_requests
        assert len(requests) == 1
        request = requests[0]
        # the deployment's data, with feedback on and no id cap (every label so far)
        labels_config = request.run_config["ops"]["labeled_queries"]["config"]
        assert labels_config["queries_path"] == str(small_dataset["queries"])
        assert labels_config["use_feedback"] is True and labels_config["feedback_max_id"] is None
        job = defs.resolve_job_def(weekly_retrain.job_name)
        result = job.execute_in_process(run_config=request.run_config, instance=instance, tags=request.tags,
                                        raise_on_error=False)
        failures = [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
        assert result.success, failures
        events = {m.asset_key.to_user_string(): m for m in
                  (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    assert events["labeled_queries"].metadata["feedback_labels_used"].value == 3
    assert "champion_release" in events
    params = _mlflow_params(mlflow_uri, f"test-{tmp_path.name}", "labeled_queries")
    assert params["feedback_max_id"] == "3" and params["feedback_max_id_requested"] == "None"


def test_feedback_max_id_above_the_newest_row(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    resources = _resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset)
    config = run_config(small_dataset, tiny_encoder, use_feedback=True, feedback_max_id=99)
    result = dg.materialize([corpus_documents, corpus_chunks, labeled_queries], resources=resources, raise_on_error=False,
                            run_config={"ops": {k: config["ops"][k] for k in ("corpus_documents", "labeled_queries")}})
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    params = _mlflow_params(mlflow_uri, f"test-{tmp_path.name}", "labeled_queries")
    assert params["feedback_max_id"] == "3" and params["feedback_max_id_requested"] == "99"
