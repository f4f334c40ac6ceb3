"""Jobs. Model-heavy work runs in one process: every extra step process would re-import torch."""

from __future__ import annotations

import dagster as dg

# dagster.yaml limits runs carrying this tag to one at a time (one training run on a small machine).
MODEL_TRAINING_TAG = {"domret/model-training": "true"}

full_pipeline_job = dg.define_asset_job(
    name="domret_full",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    tags=MODEL_TRAINING_TAG,
    description="Materialize the whole graph: corpus, labels, indexes and the evaluation report.",
)

retrain_job = dg.define_asset_job(
    name="domret_retrain",
    selection=dg.AssetSelection.all(),
    executor_def=dg.in_process_executor,
    tags={**MODEL_TRAINING_TAG, "domret/retrain": "true"},
    description=(
        "Retrain with feedback: labeled_queries and hard_negatives read the feedback store (up to the "
        "id range the sensor saw), everything downstream is re-materialized, and the challenger goes "
        "through the release gate."
    ),
)
