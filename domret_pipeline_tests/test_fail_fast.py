"""A blocking data check stops the run before any encoding or training (issue 12, defect 7),
and labeled_queries can drop training queries that repeat a frozen test query instead."""

import json

import dagster as dg

from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
from domret_pipeline.assets.labels import labeled_queries
from domret_pipeline.checks import ALL_CHECKS, frozen_split_is_clean
from domret_pipeline.definitions import ASSETS

from .conftest import make_resources
from .graph_helpers import run_config


def leaky_frozen_set(small_dataset, tiny_encoder, **labels_overrides):
    """A frozen test set whose f1 repeats the text of q3, a training query (split salt t1)."""
    root = small_dataset["root"]
    (root / "frozen_queries.jsonl").write_text(
        json.dumps({"_id": "f1", "text": "leeds  Forklift speed"}) + "\n"
        + json.dumps({"_id": "f2", "text": "Lyon forklift speed"}) + "\n")
    (root / "frozen_qrels.tsv").write_text("f1\tfl-a\t1\nf2\tfl-b\t1\n")
    return run_config(small_dataset, tiny_encoder, frozen_test_queries_path=str(root / "frozen_queries.jsonl"),
                      frozen_test_qrels_path=str(root / "frozen_qrels.tsv"), **labels_overrides)


def test_a_failed_label_check_stops_the_run_before_any_encoding(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    config = leaky_frozen_set(small_dataset, tiny_encoder)
    result = dg.materialize([*ASSETS, *ALL_CHECKS], resources=make_resources(tmp_path, tiny_encoder, mlflow_uri),
                            run_config=config, raise_on_error=False)
    assert not result.success
    materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                    for e in result.get_asset_materialization_events()}
    assert materialized == {"corpus_documents", "corpus_chunks", "labeled_queries"}  # no index, no training
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert not started & {"base_faiss_index", "bm25_index", "hard_negatives", "embedding_checkpoint"}
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "frozen_split_is_clean")
    assert not check.passed
    # the message names the repeat: both ids and the text
    assert "f1 (test) = q3 (train)" in check.description and "leeds  forklift speed" in check.description.lower()

    from domret_pipeline.run_summary import failure_lines

    lines = failure_lines(result)
    assert lines[0].startswith("domret: check labeled_queries:frozen_split_is_clean failed: 1 test query repeats")
    assert "drop_train_repeats_of_frozen_test: true" in lines[-1] and lines[-1].count("domret:") == 1


def test_training_repeats_of_frozen_test_queries_can_be_dropped(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    config = leaky_frozen_set(small_dataset, tiny_encoder, drop_train_repeats_of_frozen_test=True)
    result = dg.materialize([corpus_documents, corpus_chunks, labeled_queries, frozen_split_is_clean],
                            resources=make_resources(tmp_path, tiny_encoder, mlflow_uri),
                            run_config={"ops": {k: config["ops"][k] for k in ("corpus_documents", "labeled_queries")}})
    assert result.success and all(c.passed for c in result.get_asset_check_evaluations())
    meta = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                if e.event_specific_data.materialization.asset_key.to_user_string() == "labeled_queries")
    assert meta["dropped_test_repeats"].value == 1 and "| q3 | train | f1 |" in meta["dropped_test_repeats_list"].value
    assert meta["test_queries"].value == 2  # the frozen set stays whole
    folder = meta["artifact_path"].value
    queries = {json.loads(line)["query_id"] for line in open(f"{folder}/queries.jsonl")}
    assert "q3" not in queries and {"f1", "f2"} <= queries
    assert [json.loads(line)["query_id"] for line in open(f"{folder}/dropped_test_repeats.jsonl")] == ["q3"]
