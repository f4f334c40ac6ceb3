"""The tiny graph's run config and the ways tests run it (in process, published as `domret
run` does), shared by the whole-graph tests (test_pipeline, test_pipeline_failures,
test_pipeline_cli) and the fault, fail-fast, retrain and feedback tests."""

import json
from pathlib import Path

import dagster as dg

from domret_pipeline.checks import ALL_CHECKS
from domret_pipeline.definitions import ASSETS

from .conftest import make_resources, publish

ASSET_NAMES = ["corpus_documents", "corpus_chunks", "labeled_queries", "pseudo_queries", "base_faiss_index", "bm25_index",
               "hard_negatives", "embedding_checkpoint", "faiss_index", "reranker_adapter", "sentence_selector", "serving_config",
               "evaluation_report", "champion_release", "labeling_queue"]


def run_config(data: dict, reranker_base: Path, **labels_overrides) -> dict:
    # split_salt "t1" puts q3, q4 in train, q5 in dev and q1, q2, q6 in test
    labels = {"queries_path": str(data["queries"]), "qrels_path": str(data["qrels"]), "split_salt": "t1",
              "evidence_path": str(data["evidence"]), "dev_fraction": 0.3, "test_fraction": 0.3, **labels_overrides}
    return {"ops": {
        "corpus_documents": {"config": {"path": str(data["corpus"])}},
        "labeled_queries": {"config": labels},
        "corpus_chunks": {"config": {"chunk_tokens": 16, "overlap_tokens": 4}},
        "hard_negatives": {"config": {"range_min": 0, "range_max": 20, "num_negatives": 2, "max_positive_ratio": 1.0}},
        "embedding_checkpoint": {"config": {"epochs": 1, "batch_size": 2, "max_seq_length": 64, "learning_rate": 1e-3,
                                            "dev_random_chunks": 5}},
        "reranker_adapter": {"config": {"base_model": str(reranker_base), "max_length": 64, "epochs": 1, "batch_size": 2,
                                        "candidates": 6, "num_negatives": 2, "in_batch_negatives": 1, "lora_r": 4}},
        "sentence_selector": {"config": {"base_model": str(reranker_base), "max_length": 48, "epochs": 1, "batch_size": 2,
                                         "num_negatives": 2, "in_batch_negatives": 1, "lora_r": 4}},
        "serving_config": {"config": {"candidates": [4], "fusion_weights": [1.0], "depth": 20, "top_n": 3}},
        # Random tiny models: gate loosely here; test_release_gate_blocks_a_worse_challenger gates strictly.
        "evaluation_report": {"config": {"latency_queries": 3, **{f"margin_{m}": 1.0 for m in MARGINS}}},
    }}


MARGINS = ["ndcg", "citation_precision", "citation_recall", "faithfulness", "abstention_accuracy"]


def resources_with_feedback(tmp_path, tiny_encoder, mlflow_uri, small_dataset, rows: list[dict]) -> dict:
    """Test resources whose feedback store holds ``rows`` (imported from a JSONL file) and whose
    retrain requests carry the tiny graph's run config, as a deployment's DOMRET_RETRAIN_CONFIG does."""
    import yaml

    from domret_pipeline.core.feedback.files import read_feedback_file
    from domret_pipeline.resources import FeedbackStoreResource

    feedback_file = tmp_path / "feedback.jsonl"
    feedback_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    deployment = tmp_path / "retrain.yaml"
    deployment.write_text(yaml.safe_dump(run_config(small_dataset, tiny_encoder)))
    resources = make_resources(tmp_path, tiny_encoder, mlflow_uri)
    resources["feedback"] = FeedbackStoreResource(url=f"sqlite:///{tmp_path}/feedback.db", retrain_min_labels=3,
                                                  retrain_run_config=str(deployment))
    store = resources["feedback"].store()
    store.migrate()
    assert store.add(read_feedback_file(feedback_file)).inserted == len(rows)
    return resources


def materialize(home, tiny_encoder, mlflow_uri, config, instance=None, raise_on_error=True):
    """Materialize the graph and, when the run succeeded, publish it (as `domret run` does)."""
    result = dg.materialize(
        [*ASSETS, *ALL_CHECKS], resources=make_resources(home, tiny_encoder, mlflow_uri), run_config=config,
        instance=instance, raise_on_error=raise_on_error,
    )
    if result.success:
        assert publish(home, result.run_id, mlflow_uri).published
    return result


def refs(home: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted((home / "refs").glob("*.json"))}
