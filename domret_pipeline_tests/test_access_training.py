"""Access control beyond the search: the evaluation's and the training's principals, and the
whole graph carrying groups from the corpus to the served answer (test_access holds the
ingestion, index, search and answer tests, and the fakes these reuse)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from domret_pipeline.core.retrieval.access import Principal

from .conftest import write_jsonl
from .test_access import QUERY, SECRET, HashEncoder, build, corpus


# -- evaluation and training as a principal ------------------------------------------------------


def test_the_dev_and_report_rankings_run_as_the_given_principal(tmp_path):
    from domret_pipeline.core.serving.dev_choice import collect_rankings

    pipeline, chunks, _ = build(corpus(), "flat", tmp_path, "hybrid")
    for principal, sees in ((None, False), (["hr"], True)):
        stages = collect_rankings(["q"], {"q": QUERY}, chunks, pipeline.index, HashEncoder(), pipeline.bm25, None, 0,
                                  depth=20, principal=principal).stages
        seen = {c.split("#")[0] for ranking in (stages.dense, stages.lexical, stages.hybrid) for c, _ in ranking[0]}
        assert (SECRET in seen) is sees and len(stages.dense[0]) == 20


def test_training_reads_only_what_its_principal_may_read(tmp_path):
    from domret_pipeline.core.data.documents import Evidence
    from domret_pipeline.core.data.labels import LabeledQueries
    from domret_pipeline.core.manifests import LabeledQueriesManifest, write_manifest
    from domret_pipeline.core.training.access import (
        readable_chunks, readable_index, restrict_labels, training_principal,
    )

    labels = LabeledQueries(
        {q: QUERY for q in ("q1", "q2", "q3", "q4")}, {"q1": "train", "q2": "train", "q3": "dev", "q4": "test"},
        {"q1": {SECRET: 1, "pub-1": 1}, "q2": {SECRET: 1}, "q3": {SECRET: 2}, "q4": {SECRET: 1}},
        [Evidence("q1", SECRET, "SUPPORT", (0,)), Evidence("q1", "pub-1", "SUPPORT", (0,)),
         Evidence("q4", SECRET, "SUPPORT", (1,))])
    dropped = restrict_labels(labels, {d.doc_id for d in corpus() if Principal.of(None).may_read(d.groups)})
    assert labels.qrels == {"q1": {"pub-1": 1}, "q4": {SECRET: 1}}  # the frozen test split is untouched
    assert set(labels.queries) == {"q1", "q4"} and [(e.query_id, e.doc_id) for e in labels.evidence] == [
        ("q1", "pub-1"), ("q4", SECRET)]
    assert dropped == {"judgements_dropped": 3, "evidence_dropped": 1, "queries_dropped": 2,
                       "dropped_query_ids": ["q2", "q3"]}

    pipeline, chunks, _ = build(corpus(), "hnsw", tmp_path)
    public = Principal.of(None)
    view = readable_index(pipeline.index, public)
    kept = readable_chunks(chunks, public)
    assert view.chunk_ids == [c.chunk_id for c in kept] and not any(c.doc_id == SECRET for c in kept)
    original = dict(zip(pipeline.index.chunk_ids, pipeline.index.index.reconstruct_n(0, pipeline.index.index.ntotal)))
    np.testing.assert_array_equal(view.index.reconstruct_n(0, view.index.ntotal), np.stack([original[c] for c in view.chunk_ids]))
    everyone = Principal.of(["hr", "finance"])
    assert readable_index(pipeline.index, everyone) is pipeline.index and readable_chunks(chunks, everyone) is chunks
    assert readable_index(pipeline.index, everyone, chunks) is pipeline.index
    # an index from elsewhere (the champion's) is held to this run's chunks too
    assert readable_index(pipeline.index, everyone, kept).chunk_ids == view.chunk_ids

    # the principal travels in the labeled_queries manifest; older manifests read as public
    write_manifest(tmp_path, LabeledQueriesManifest(corpus_documents="h", feedback=None, training_access={
        "principal": ["hr", "public"], **dropped}))
    assert training_principal(tmp_path) == Principal.of(["hr"])
    (tmp_path / "manifest.json").write_text(json.dumps({"corpus_documents": "h", "feedback": None}))
    assert training_principal(tmp_path) == public


# -- the whole graph ------------------------------------------------------------------------------


def test_the_graph_carries_groups_from_the_corpus_to_the_served_answer(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    """Two documents restricted through a field: one a train query's answer (fl-a, hr), one a
    test query's (slo-b, finance). Nothing restricted trains, evaluates or serves as public."""
    import dagster as dg

    from domret_pipeline.api import load_search_pipeline
    from domret_pipeline.core.manifests import DenseIndexManifest, LabeledQueriesManifest, read_manifest
    from domret_pipeline.core.training.mining import read_mined

    from .graph_helpers import materialize, run_config

    restricted = {"fl-a": ["hr"], "slo-b": ["finance"]}
    rows = [json.loads(line) for line in small_dataset["corpus"].read_text().splitlines()]
    write_jsonl(small_dataset["corpus"], [{**r, "acl": restricted.get(r["_id"], [])} for r in rows])
    config = run_config(small_dataset, tiny_encoder)
    config["ops"]["corpus_documents"]["config"]["groups_field"] = "acl"
    with dg.instance_for_test() as instance:
        result = materialize(tmp_path, tiny_encoder, mlflow_uri, config, instance)
    assert result.success
    folder = {name: json.loads((tmp_path / "refs" / f"{name}.json").read_text())["path"]
              for name in ("labeled_queries", "hard_negatives", "faiss_index", "evaluation_report")}

    access = read_manifest(folder["labeled_queries"], LabeledQueriesManifest).training_access
    assert access["principal"] == ["public"] and access["dropped_query_ids"] == ["q3"]  # train query on fl-a
    mined = read_mined(folder["hard_negatives"])
    touched = {c.split("#")[0] for m in mined for c in [p[0] for p in m.positives] + [n["chunk_id"] for n in m.negatives]}
    assert mined and touched and not touched & set(restricted)
    assert read_manifest(folder["faiss_index"], DenseIndexManifest).chunks_per_group["hr"] >= 1

    report = json.loads((Path(folder["evaluation_report"]) / "report.json").read_text())
    assert report["info"]["principal"] == ["public"] and report["info"]["judgements_not_readable"] == 1  # q2 -> slo-b
    for line in (Path(folder["evaluation_report"]) / "answers_challenger.jsonl").read_text().splitlines():
        answer = json.loads(line)
        assert not {c.split("#")[0] for c in answer["retrieved"]} & set(restricted)
        assert not {doc for doc, _ in answer["cited"]} & set(restricted)

    pipeline = load_search_pipeline(tmp_path, latest=True, top_n=6)
    assert "fl-a" not in {h.doc_id for h in pipeline.search(["Leeds forklift speed"])[0].hits}
    hits = pipeline.search(["Leeds forklift speed"], principal=["hr"])[0].hits
    assert "fl-a" in {h.doc_id for h in hits} and "slo-b" not in {h.doc_id for h in hits}
