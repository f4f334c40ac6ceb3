"""The feedback sensor and the weekly retrain schedule. Both start stopped (README: how to
turn them on). When the deployment builds the tuned index from shards, both start the
three-stage chain of ``sharded_retrain.py`` instead of one in-process retrain.

The sensor is cheap on purpose: no model imports, one indexed range query on the feedback
store per tick. Its cursor is the last feedback id it acted on; the run key is the id range
(``feedback-<first>-<last>``), so the same labels never trigger twice, even after the daemon
restarts and re-evaluates an old cursor.
"""

from __future__ import annotations

import os

import dagster as dg

from .jobs import retrain_job
from .resources import FeedbackStoreResource
from .sharded_retrain import checkpoint_request, is_sharded

FEEDBACK_IDS_TAG = "domret/feedback_ids"


def retrain_run_config(resource: FeedbackStoreResource, max_id: int | None) -> dict:
    """The retrain run's config: the deployment's YAML (data paths, recipes) with feedback on."""
    config: dict = {}
    if resource.retrain_run_config:
        from .run_config import load_run_config  # a YAML error names the file and line

        config = load_run_config(resource.retrain_run_config)
    ops = config.setdefault("ops", {})
    for asset in ("labeled_queries", "hard_negatives"):
        ops.setdefault(asset, {}).setdefault("config", {}).update({"use_feedback": True, "feedback_max_id": max_id})
    return config


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a retrain when at least retrain_min_labels new feedback labels arrived, or any critical one.",
)
def feedback_sensor(context: dg.SensorEvaluationContext, feedback: FeedbackStoreResource):
    cursor = int(context.cursor or 0)
    try:
        new = feedback.store().new_since(cursor)
    except RuntimeError as error:  # the store was never migrated: nothing has been imported yet
        return dg.SkipReason(str(error))
    if new.count == 0:
        return dg.SkipReason(f"no feedback label after id {cursor}")
    if new.count < feedback.retrain_min_labels and new.critical == 0:
        return dg.SkipReason(f"{new.count} new label(s) after id {cursor} (up to id {new.max_id}), none critical; "
                             f"a retrain needs {feedback.retrain_min_labels}")
    first, last = cursor + 1, new.max_id
    config = retrain_run_config(feedback, last)
    tags = {FEEDBACK_IDS_TAG: f"{first}-{last}", "domret/trigger": "critical" if new.critical else "count"}
    if is_sharded(config):  # a chain of three stages (sharded_retrain.py), starting with the checkpoint
        request = checkpoint_request(config, f"feedback-{first}-{last}", tags)
        if isinstance(request, dg.SkipReason):
            return request  # cursor kept: the same labels trigger once the scheduler is configured
    else:
        request = dg.RunRequest(run_key=f"feedback-{first}-{last}", run_config=config, tags=tags)
    context.update_cursor(str(last))
    return request


@dg.schedule(
    name="weekly_retrain",
    job=retrain_job,
    cron_schedule=os.environ.get("DOMRET_RETRAIN_CRON", "0 3 * * 1"),  # Mondays 03:00
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="The controlled cadence: retrain on every feedback label so far, through the release gate.",
)
def weekly_retrain(context: dg.ScheduleEvaluationContext, feedback: FeedbackStoreResource):
    # The deployment's run config (data paths, recipes) like the sensor's requests: a static
    # config would retrain on the bundled sample. No max id: every label so far.
    config, tags = retrain_run_config(feedback, None), {"domret/trigger": "schedule"}
    if is_sharded(config):
        return checkpoint_request(config, f"schedule-{context.scheduled_execution_time:%Y%m%dT%H%M}", tags)
    return dg.RunRequest(run_config=config, tags=tags)
