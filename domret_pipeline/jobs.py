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
    # Names every asset (a test holds it to the graph), so the UI's job page says what it runs.
    description=(
        "Materialize the whole graph: the corpus (corpus_documents, corpus_chunks) and labeled_queries; "
        "the base_faiss_index and bm25_index; hard_negatives, the fine-tuned embedding_checkpoint and its "
        "faiss_index; the LoRA reranker_adapter, the evidence-trained sentence_selector and the serving_config "
        "chosen on dev; the evaluation_report "
        "with its release gate; champion_release when the gate passes; and the labeling_queue."
    ),
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
