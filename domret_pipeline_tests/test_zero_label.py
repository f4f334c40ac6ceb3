"""Zero-label mode (issue 17, item 3; core/weak/pseudo_evaluation.py): with no judged train
query, held-out pseudo-queries become dev and test queries, their documents never train, and
the report says plainly that their figures are not user relevance."""

import json
from pathlib import Path

import dagster as dg
import pytest

from domret_pipeline.config import PseudoQueriesConfig
from domret_pipeline.core.data.labels import LabeledQueries
from domret_pipeline.core.weak.pseudo_evaluation import (
    NOT_USER_RELEVANCE, PSEUDO_SLICE, add_pseudo_evaluation, held_out_split, wanted,
)
from domret_pipeline.core.weak.pseudo_queries import eval_documents, generate_pseudo_queries

from .conftest import make_resources
from .settings_helpers import settings_for
from .test_pseudo_queries import chunks_of, corpus


def empty_labels() -> LabeledQueries:
    return LabeledQueries({}, {}, {})


def add(labels, docs, fraction=0.5, max_queries=50, **values):
    settings = settings_for(PseudoQueriesConfig, **{"kinds": ["inverse_cloze"], **values})
    return add_pseudo_evaluation(labels, docs, chunks_of(docs), settings, fraction, max_queries, "salt")


def test_auto_adds_pseudo_queries_exactly_when_no_train_query_is_judged():
    assert wanted("auto", empty_labels())[0]
    judged = LabeledQueries({"q": "t"}, {"q": "train"}, {"q": {"d0": 1}})
    use, reason = wanted("auto", judged)
    assert not use and "1 judged train" in reason
    assert wanted("on", judged)[0] and not wanted("off", empty_labels())[0]
    with pytest.raises(ValueError, match="pseudo_evaluation"):
        wanted("sometimes", judged)


def test_held_out_documents_give_one_dev_or_test_query_each_deterministically_and_never_train():
    docs = corpus(24)
    labels, again = empty_labels(), empty_labels()
    record = add(labels, docs)
    add(again, docs)
    assert labels == again and record.used and record.queries["dev"] and record.queries["test"]
    assert set(labels.splits.values()) == {"dev", "test"}
    for qid in labels.queries:
        (doc,) = labels.qrels[qid]
        assert labels.slices[qid] == PSEUDO_SLICE and qid.startswith("pseudo:")
        assert held_out_split(doc, 0.5, "salt") == labels.splits[qid]
        text = next(d for d in docs if d.doc_id == doc).text
        assert labels.queries[qid] in text  # a sentence of its own document
    assert sum(record.queries.values()) == len({d for q in labels.qrels.values() for d in q})
    # The held-out documents are evaluation documents: pseudo_queries cuts no training pair from them.
    held = eval_documents(labels)
    training = generate_pseudo_queries(docs, chunks_of(docs), PseudoQueriesConfig().settings(), held)
    assert training.pairs and not {p.doc_id for p in training.pairs} & held


def test_a_document_relevant_to_a_judged_train_query_is_never_held_out_and_the_cap_holds():
    docs = corpus(24)
    everything = add(empty_labels(), docs, fraction=0.99)
    judged_doc = "d0"
    labels = LabeledQueries({"q": "rules"}, {"q": "train"}, {"q": {judged_doc: 1}})
    add(labels, docs, fraction=0.99)
    assert judged_doc not in {d for q, docs_ in labels.qrels.items() if q != "q" for d in docs_}
    assert everything.held_out_documents == 24
    capped = empty_labels()
    record = add(capped, docs, fraction=0.99, max_queries=3)
    assert record.queries == {"dev": 3, "test": 3}


def test_zero_label_labeled_queries_asset_holds_out_pseudo_queries(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
    from domret_pipeline.assets.labels import labeled_queries

    config = {"ops": {
        "corpus_documents": {"config": {"path": str(small_dataset["corpus"])}},
        "corpus_chunks": {"config": {"chunk_tokens": 64, "overlap_tokens": 4}},
        "labeled_queries": {"config": {"queries_path": None, "qrels_path": None, "evidence_path": None,
                                       "pseudo_eval_fraction": 0.9}},
    }}
    result = dg.materialize([corpus_documents, corpus_chunks, labeled_queries],
                            resources=make_resources(tmp_path, tiny_encoder, mlflow_uri), run_config=config)
    assert result.success
    meta = next(e.event_specific_data.materialization.metadata for e in result.get_asset_materialization_events()
                if e.asset_key.to_user_string() == "labeled_queries")
    folder = Path(meta["artifact_path"].value)
    labels = LabeledQueries.load(folder)
    assert labels.queries and not labels.ids("train")
    assert meta["pseudo_dev_queries"].value == len(labels.ids("dev")) > 0
    assert meta["pseudo_test_queries"].value == len(labels.ids("test")) > 0
    assert "not user relevance" in meta["pseudo_evaluation"].value and "zero-label" in meta["pseudo_evaluation"].value
    record = json.loads((folder / "pseudo_evaluation.json").read_text())
    assert record["used"] and record["queries"] == {"dev": len(labels.ids("dev")), "test": len(labels.ids("test"))}
    # Lineage: the chunks the pseudo-queries were cut from are an input of the labels.
    from domret_pipeline.core.release.lineage import read_node

    chunks_sha = next(e.event_specific_data.materialization.metadata["content_sha256"].value
                      for e in result.get_asset_materialization_events()
                      if e.asset_key.to_user_string() == "corpus_chunks")
    node = read_node("labeled_queries", meta["content_sha256"].value, folder)
    assert node.inputs["corpus_chunks"] == chunks_sha and "dev" in node.summary["pseudo-queries"]


def test_one_label_path_without_the_other_fails_with_one_line(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    from domret_pipeline.assets.corpus import corpus_chunks, corpus_documents
    from domret_pipeline.assets.labels import labeled_queries

    config = {"ops": {
        "corpus_documents": {"config": {"path": str(small_dataset["corpus"])}},
        "labeled_queries": {"config": {"queries_path": str(small_dataset["queries"]), "qrels_path": None}},
    }}
    with pytest.raises(ValueError, match="both queries_path and qrels_path, or neither"):
        dg.materialize([corpus_documents, corpus_chunks, labeled_queries],
                       resources=make_resources(tmp_path, tiny_encoder, mlflow_uri), run_config=config)


def test_the_report_says_pseudo_query_figures_are_not_user_relevance():
    from domret_pipeline.core.evaluation.report import to_markdown

    info = {"split": "test", "n_queries": 4, "n_documents": 5, "n_chunks": 6, "encoders": {}}
    report = {"info": {**info, "n_pseudo_queries": 3}, "systems": {}, "significance": {}, "slices": {}}
    text = to_markdown(report)
    assert "3 of 4 queries are held-out pseudo-queries" in text and NOT_USER_RELEVANCE in text
    assert "pseudo-queries" not in to_markdown({**report, "info": info})


def test_with_no_label_file_the_whole_tiny_graph_runs_on_pseudo_queries_and_says_so(tmp_path, tiny_encoder, mlflow_uri,
                                                                                   small_dataset):
    """Zero-label mode end to end: no queries or qrels at all. split_salt "domret" at 0.5 holds
    out fl-a (test) and fl-b (dev); the other four documents give the training pairs."""
    from .graph_helpers import ASSET_NAMES, materialize, run_config

    config = run_config(small_dataset, tiny_encoder, queries_path=None, qrels_path=None, evidence_path=None,
                        split_salt="domret", pseudo_eval_fraction=0.5)
    config["ops"]["pseudo_queries"] = {"config": {"min_query_words": 3}}
    # chunks of more than one sentence: an inverse-cloze query needs a rest of its chunk
    config["ops"]["corpus_chunks"] = {"config": {"chunk_tokens": 64, "overlap_tokens": 4}}
    result = materialize(tmp_path, tiny_encoder, mlflow_uri, config, raise_on_error=False)
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    meta = {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}
    assert set(meta) == set(ASSET_NAMES)
    folder = lambda name: Path(meta[name]["artifact_path"].value)  # noqa: E731
    labels = LabeledQueries.load(folder("labeled_queries"))
    assert not labels.ids("train") and labels.ids("dev") and labels.ids("test")
    assert {d for q in labels.qrels.values() for d in q} == {"fl-a", "fl-b"}
    pairs = [json.loads(line) for line in (folder("pseudo_queries") / "pairs.jsonl").read_text().splitlines()]
    assert pairs and not {p["doc_id"] for p in pairs} & {"fl-a", "fl-b"}  # the held-out documents never train
    checkpoint = json.loads((folder("embedding_checkpoint") / "card.json").read_text())
    assert checkpoint["recipe"] == "pseudo" and "labels" in checkpoint["recipes"]["skipped"]
    reranker = json.loads((folder("reranker_adapter") / "card.json").read_text())
    assert reranker["pretrain"]["zero_label"]
    report = (folder("evaluation_report") / "report.md").read_text()
    assert "| embedding checkpoint | pseudo |" in report and "| reranker pretraining | pseudo |" in report
    n = len(labels.ids("test"))
    assert NOT_USER_RELEVANCE in report and f"{n} of {n} queries are held-out pseudo-queries" in report
