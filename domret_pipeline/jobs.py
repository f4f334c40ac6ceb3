"""Jobs. The pipeline's jobs run in one process (every extra step process would re-import
torch); the corpus shards' encoding, the one step that grows with the corpus, runs on a Dask
cluster (one run per shard partition, each step on a Dask worker)."""

from __future__ import annotations

import dagster as dg

from .dask_executor import run_scoped_dask_executor


SHARD_SELECTION = dg.AssetSelection.assets("base_chunk_embeddings", "tuned_chunk_embeddings")
# The partitioned shard assets run in their own job: a run of the pipeline's jobs has no
# partition, and the indexes read the published shards as inputs from outside the run.
PIPELINE_ASSETS = dg.AssetSelection.all() - SHARD_SELECTION

# dagster.yaml limits runs carrying this tag to one at a time (one training run on a small machine).
MODEL_TRAINING_TAG = {"domret/model-training": "true"}

full_pipeline_job = dg.define_asset_job(
    name="domret_full",
    selection=PIPELINE_ASSETS,
    executor_def=dg.in_process_executor,
    tags=MODEL_TRAINING_TAG,
    # Names every asset (a test holds it to the graph), so the UI's job page says what it runs.
    description=(
        "Materialize the whole graph: the corpus (corpus_documents, corpus_chunks) and labeled_queries; the "
        "pseudo_queries cut from the corpus (weak supervision: mined by hard_negatives, trained on by the "
        "embedding_checkpoint and the reranker_adapter when their dev choices say so); "
        "the base_faiss_index and bm25_index; hard_negatives, the fine-tuned embedding_checkpoint and its "
        "faiss_index; the LoRA reranker_adapter, the evidence-trained sentence_selector and the serving_config "
        "chosen on dev; the evaluation_report "
        "with its release gate; champion_release when the gate passes; and the labeling_queue."
    ),
)

retrain_job = dg.define_asset_job(
    name="domret_retrain",
    selection=PIPELINE_ASSETS,
    executor_def=dg.in_process_executor,
    tags={**MODEL_TRAINING_TAG, "domret/retrain": "true"},
    description=(
        "Retrain with feedback: labeled_queries and hard_negatives read the feedback store (up to the "
        "id range the sensor saw), everything downstream is re-materialized, and the challenger goes "
        "through the release gate."
    ),
)

encode_shards_job = dg.define_asset_job(
    name="domret_encode_shards",
    selection=SHARD_SELECTION,
    # The scheduler's address is run config (the executor's config is re-read inside each worker,
    # which need not share the launcher's environment): `domret shards encode` fills it in; a
    # backfill from the UI takes it from the launchpad, e.g. address: {env: DOMRET_DASK_SCHEDULER}.
    # dagster-dask's executor with run-scoped task keys (dask_executor.py: concurrent runs collided).
    executor_def=run_scoped_dask_executor,
    description=(
        "Encode one corpus shard (a partition of base_chunk_embeddings or tuned_chunk_embeddings) on the Dask "
        "cluster named in the run config (execution.config.address). Launch a backfill over the stale shards (or `domret shards encode`), "
        "then build the index with vectors_from: shards."
    ),
)
