"""Incident review (issue 15, item 3): ``domret incident`` and ``api.incident``.

The first tests check the core's judgement on built lineages and requests: which artifact is
blamed (corpus, labels, model, serving settings) when exactly one thing changed, and what a
replay diff reports. The last ones materialize the tiny graph twice under one Dagster instance
(the second time with one corpus document edited and the served top n lowered), serve an
answer with the first champion, and review it: every link of the lineage chain is checked
against the stores themselves (registry, Dagster event log, MLflow), and the "what differs"
section must blame the corpus and the serving settings, and nothing else.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from domret_pipeline.core.audit.incident import Replay, diff_request, query_for_replay
from domret_pipeline.core.audit.store import AuditRecord, query_sha256
from domret_pipeline.core.release.lineage import BundleLineage, LineageNode, compare_lineages

# The graph's lineage: each artifact and the artifacts it records as inputs.
DAG = {
    "corpus_documents": [], "corpus_chunks": ["corpus_documents"], "labeled_queries": ["corpus_documents"],
    "base_faiss_index": ["corpus_chunks", "labeled_queries"], "bm25_index": ["corpus_chunks"],
    "pseudo_queries": ["corpus_documents", "corpus_chunks", "labeled_queries"],
    "hard_negatives": ["labeled_queries", "corpus_chunks", "base_faiss_index", "pseudo_queries"],
    "embedding_checkpoint": ["hard_negatives", "pseudo_queries", "labeled_queries", "corpus_chunks", "base_faiss_index"],
    "faiss_index": ["corpus_chunks", "labeled_queries", "embedding_checkpoint", "base_faiss_index"],
    "reranker_adapter": ["faiss_index", "labeled_queries", "corpus_chunks", "pseudo_queries"],
    "sentence_selector": ["labeled_queries", "corpus_documents", "corpus_chunks", "hard_negatives", "reranker_adapter"],
    "serving_config": ["faiss_index", "bm25_index", "reranker_adapter", "sentence_selector", "corpus_chunks",
                       "labeled_queries", "corpus_documents"],
}
DATA = {"corpus_documents", "corpus_chunks", "labeled_queries"}


def _h(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def built_lineage(own: dict[str, str] | None = None, settings: dict[str, dict] | None = None) -> BundleLineage:
    """A content-addressed lineage as the graph writes one: an artifact's hash covers what it
    holds and the hashes it records of its inputs. ``own``: what an artifact holds by itself (the
    corpus text, the labels, a training run's draw); ``settings``: the settings it was built with."""
    own, settings = own or {}, settings or {}
    hashes, nodes, content = {}, {}, {}
    for name, inputs in DAG.items():
        recorded = {i: hashes[i] for i in inputs}
        held = own.get(name, "v1")
        if name in DATA:  # chunks hold what the documents hold, cut up
            content[name] = _h(name, held, *(content[i] for i in inputs if i in DATA and name == "corpus_chunks"))
        setting = settings.get(name, {"epochs": 1} if name not in DATA else {})
        hashes[name] = _h(name, held, json.dumps(setting, sort_keys=True), *(f"{k}={v}" for k, v in sorted(recorded.items())))
        nodes[name] = LineageNode(name, hashes[name], f"/art/{name}/{hashes[name][:16]}", recorded, {}, dict(setting),
                                  content.get(name))
    return BundleLineage(nodes["serving_config"].path, hashes["serving_config"], nodes)


@pytest.mark.parametrize("changed, expected", [
    ({}, []),
    ({"own": {"corpus_documents": "edited"}}, ["corpus change"]),
    ({"own": {"labeled_queries": "new qrels"}}, ["label change"]),
    ({"settings": {"reranker_adapter": {"epochs": 3}}}, ["model change (reranker)"]),
    ({"own": {"embedding_checkpoint": "another seed"}}, ["model change (embedding checkpoint)"]),
    ({"settings": {"hard_negatives": {"epochs": 1, "num_negatives": 4}}}, ["model change (negative mining)"]),
    ({"settings": {"serving_config": {"top_n": 2}}}, ["serving settings change"]),
    ({"settings": {"pseudo_queries": {"epochs": 1, "kinds": ["crop"]}}}, ["weak supervision change (pseudo-queries)"]),
    ({"own": {"corpus_documents": "edited"}, "settings": {"serving_config": {"top_n": 2}}},
     ["corpus change", "serving settings change"]),
], ids=["nothing", "corpus", "labels", "reranker-settings", "checkpoint-draw", "mining", "serving", "pseudo-queries", "corpus+serving"])
def test_the_comparison_blames_what_changed_by_itself_not_what_was_rebuilt(changed, expected):
    served = built_lineage(settings={"serving_config": {"top_n": 3}})
    settings = {"serving_config": {"top_n": 3}, **changed.get("settings", {})}
    other = built_lineage(changed.get("own"), settings)
    comparison = compare_lineages(served, other, "champion v2")
    assert comparison.causes == expected
    by_name = {c.name: c for c in comparison.changes}
    assert set(by_name) == set(DAG)
    for change in comparison.changes:
        assert (change.status == "same") == (served.nodes[change.name].sha256 == other.nodes[change.name].sha256)
        assert (change.cause is not None) == (change.status == "differs" and change.cause in expected)
    if "own" in changed and "corpus_documents" in changed["own"]:
        labels = by_name["labeled_queries"]  # re-checked against the new corpus: same labels
        assert labels.status == "differs" and labels.content_changed is False and labels.cause is None
        assert labels.inputs_differ == ["corpus_documents"]
        assert "same data" in labels.explain() and "corpus_documents" in labels.explain()
        assert by_name["corpus_documents"].content_changed is True and "its data changed" in by_name["corpus_documents"].explain()
        assert by_name["reranker_adapter"].cause is None and "rebuilt from changed inputs" in by_name["reranker_adapter"].explain()
    if changed.get("settings", {}).get("reranker_adapter"):
        assert by_name["reranker_adapter"].settings_changed == {"epochs": [1, 3]}
        assert by_name["sentence_selector"].inputs_differ == ["reranker_adapter"] and by_name["sentence_selector"].cause is None
        assert by_name["faiss_index"].status == "same"
    if expected == []:
        assert all(c.status == "same" for c in comparison.changes)


def test_an_artifact_missing_from_one_lineage_is_reported():
    served, other = built_lineage(), built_lineage()
    del other.nodes["sentence_selector"]
    change = next(c for c in compare_lineages(served, other).changes if c.name == "sentence_selector")
    assert change.status == "only_served" and change.explain() == "only served"


def _hit(rank, chunk, start=0, end=10):
    return {"rank": rank, "chunk_id": chunk, "doc_id": chunk.split("#")[0], "start": start, "end": end,
            "groups": ["public"], "scores": {"final": 1.0 / rank}}


def test_a_replay_diff_names_hits_spans_citations_texts_and_the_abstention():
    record = AuditRecord("r1", "answer", query_sha256("q"), query="q", principal=["public"],
                         hits=[_hit(1, "a#0"), _hit(2, "b#0"), _hit(3, "c#0", 5, 9)],
                         citations=[{"doc_id": "a", "sentence": 0, "score": 0.9}, {"doc_id": "b", "sentence": 1, "score": 0.8}],
                         abstained=False)
    texts = {"a#0": "A", "b#0": "B", "c#0": "C", "a:0": "Leeds 8 km/h", "b:1": "b one"}
    replay = Replay("champion v2", "2", "f" * 64, "answer", [_hit(1, "c#0", 5, 12), _hit(2, "a#0"), _hit(3, "d#0")],
                    [{"doc_id": "a", "sentence": 0, "score": 0.7}, {"doc_id": "d", "sentence": 0, "score": 0.6}], False,
                    texts={"a#0": "A", "c#0": "C2", "a:0": "Leeds 10 km/h", "d:0": "d"})
    diff = diff_request(record, replay, texts)
    assert (diff.k, diff.left, diff.entered) == (3, ["b#0"], ["d#0"])
    assert diff.moved == {"a#0": [1, 2], "c#0": [3, 1]} and diff.spans_changed == {"c#0": ["5-9", "5-12"]}
    assert diff.passages_changed == ["c#0"]
    assert (diff.cited_removed, diff.cited_added, diff.cited_text_changed) == (["b:1"], ["d:0"], ["a:0"])
    assert diff.abstention is None and not diff.unchanged
    lines = diff.lines()
    assert lines[0] == "left the top 3: b#0" and "entered the top 3: d#0" in lines
    same = Replay("previous champion v1", "1", "e" * 64, "answer", record.hits, record.citations, False, texts=texts)
    assert diff_request(record, same, texts).unchanged and diff_request(record, same, texts).lines() == []
    abstains = Replay("x", None, None, "answer", record.hits, [], True)
    assert diff_request(record, abstains, texts).abstention == [False, True]
    assert "abstention changed: answered -> abstained" in diff_request(record, abstains, texts).lines()


def test_a_row_kept_as_a_hash_is_replayed_only_with_the_text_that_hashes_to_it():
    hashed = AuditRecord("r", "search", query_sha256("salary bands"), query=None)
    assert query_for_replay(hashed, None)[0] is None and "--query" in query_for_replay(hashed, None)[1]
    assert query_for_replay(hashed, "salary bands") == ("salary bands", None)
    text, note = query_for_replay(hashed, "something else")
    assert text is None and "does not hash" in note
    kept = AuditRecord("r", "search", query_sha256("q"), query="q")
    assert query_for_replay(kept, None) == ("q", None)


# -- the tiny graph, twice ----------------------------------------------------------------------

QUERY = "Leeds forklift speed"
AUDIT_ENV = ("MLFLOW_TRACKING_URI", "DOMRET_HOME", "DOMRET_AUDIT_URL", "DOMRET_AUDIT_QUERY", "DOMRET_AUDIT_RETENTION_DAYS",
             "DAGSTER_UI_URL", "MLFLOW_UI_URL")


@pytest.fixture(scope="module")
def two_champions(tmp_path_factory, tiny_encoder):
    """Champion v1 from the tiny graph; an answer served by it (audited); then champion v2 from
    the same graph with one corpus sentence edited (fl-a: 8 km/h -> 10 km/h) and top_n 3 -> 2.
    One Dagster instance on disk holds both runs, as $DAGSTER_HOME does for `domret run`."""
    import dagster as dg

    from domret_pipeline import api, locations
    from domret_pipeline.checks import ALL_CHECKS
    from domret_pipeline.definitions import ASSETS
    from domret_pipeline.publication import publish_run
    from domret_pipeline.registry import Registry
    from domret_pipeline.resources import MlflowTracker

    from .conftest import make_resources, make_small_dataset
    from .graph_helpers import run_config

    home = tmp_path_factory.mktemp("incident-home")
    uri = locations.local_tracking_uri(home)
    resources = make_resources(home, tiny_encoder, uri)
    resources["mlflow"] = MlflowTracker(tracking_uri=uri, experiment_name="test-incident",
                                        artifact_location=str(home / "mlflow-artifacts"),
                                        registered_model=locations.REGISTERED_MODEL)
    first = run_config(make_small_dataset(home / "data1"), tiny_encoder)
    edited = make_small_dataset(home / "data2")
    rows = [json.loads(line) for line in edited["corpus"].read_text().splitlines()]
    for row in rows:
        row["text"] = row["text"].replace("at most 8 km/h", "at most 10 km/h")
    edited["corpus"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    second = run_config(edited, tiny_encoder)
    second["ops"]["serving_config"]["config"]["top_n"] = 2
    # precision "auto" keeps the faster path on this machine's timings: on a busy CI machine the two
    # runs chose differently and the tuned index was (rightly) blamed too; pinned, only the edits differ
    for config in (first, second):
        for index in ("base_faiss_index", "faiss_index"):
            config["ops"][index] = {"config": {"precision": "fp32"}}
    instance_dir = home / "dagster"
    instance_dir.mkdir()
    with pytest.MonkeyPatch.context() as patch, dg.DagsterInstance.local_temp(tempdir=str(instance_dir)) as instance:
        for name in AUDIT_ENV:
            patch.delenv(name, raising=False)
        runs = []
        for config in (first, second):
            result = dg.materialize([*ASSETS, *ALL_CHECKS], resources=resources, run_config=config, instance=instance)
            assert publish_run(home / "refs", result.run_id, Registry(uri)).published
            runs.append(result)
            if len(runs) == 1:
                service = api.load_service(home)
                served = service.answer(QUERY, principal=["ops"])
                service.close()
                assert service.audit_failures == 0
        yield {"home": home, "uri": uri, "instance_dir": instance_dir, "instance": instance, "runs": runs,
               "served": served}


def _materialized(result) -> dict[str, object]:
    """Asset name -> its materialization in a run, from the run's own result (not the event log)."""
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


def test_the_review_of_an_answer_joins_replays_lineage_and_causes(two_champions, monkeypatch):
    from mlflow.tracking import MlflowClient

    from domret_pipeline import api, locations
    from domret_pipeline.core.artifacts import ArtifactRef
    from domret_pipeline.definitions import ASSETS

    for name in AUDIT_ENV:
        monkeypatch.delenv(name, raising=False)
    home, (run1, run2), served = two_champions["home"], two_champions["runs"], two_champions["served"]
    report = api.incident(served.request_id, home=home, instance=two_champions["instance"],
                          dagster_url="http://dagster.test/", mlflow_url="http://mlflow.test")
    record = report.record
    assert (record.request_id, record.kind, record.registry_version, record.principal) == (
        served.request_id, "answer", "1", ["ops", "public"])

    # 1. what was retrieved, with the passages of the corpus that served them
    chunks = {c.chunk_id: c.text for c in served.result.hits}
    assert [h["chunk_id"] for h in record.hits] == list(chunks) and len(chunks) == 3
    assert all(report.served_texts[c] == text for c, text in chunks.items())

    # 2. replays: the previous champion (v1, the bundle that served) reproduces the row; the
    # champion (v2) is what the same principal gets now, checked against the service directly
    assert [r.label for r in report.replays] == ["champion v2", "previous champion v1"]
    now = api.load_service(home, audit=False).answer(QUERY, principal=["ops"])
    v2, v1 = report.replays
    assert [h["chunk_id"] for h in v2.hits] == [h.chunk_id for h in now.result.hits] and len(v2.hits) == 2
    assert v2.abstained == now.answer.abstained and v1.hits == record.hits and v1.abstained == record.abstained
    changed, same = report.diffs
    assert same.label == "previous champion v1" and same.unchanged
    assert changed.left == [c for c in chunks if c not in [h.chunk_id for h in now.result.hits]] and changed.left
    assert changed.entered == [h.chunk_id for h in now.result.hits if h.chunk_id not in chunks]

    # 3. lineage: registry version -> Dagster run -> each materialization -> MLflow run
    client = MlflowClient(locations.local_tracking_uri(home))
    version = client.get_model_version(locations.REGISTERED_MODEL, "1")
    assert report.registry["version"] == "1" and report.registry["aliases"] == ["previous_champion"]
    assert report.registry["dagster_run_id"] == run1.run_id == version.tags["domret.dagster_run_id"]
    assert report.registry["mlflow_run_id"] == version.run_id and version.run_id in report.registry["mlflow_url"]
    assert report.dagster == {"run_id": run1.run_id, "source": "serving_config materialization",
                              "url": f"http://dagster.test/runs/{run1.run_id}", "status": "SUCCESS"}
    made = _materialized(run1)
    code_versions = {k.to_user_string(): v for a in ASSETS for k, v in a.code_versions_by_key.items()}
    nodes = report.lineage.nodes
    assert set(nodes) == set(DAG) and report.lineage.conflicts == []
    assert report.lineage.bundle_sha256 == made["serving_config"].metadata["content_sha256"].value
    for name, node in nodes.items():
        sha = made[name].metadata["content_sha256"].value
        assert node.sha256 == sha and ArtifactRef(node.path, sha).verify()
        assert node.materialization["run_id"] == run1.run_id
        assert node.materialization["code_version"] == code_versions[name] == made[name].tags["dagster/code_version"]
        assert node.materialization["data_version"] == sha[:32]
        run = client.get_run(node.mlflow["run_id"])
        assert (run.data.tags["dagster.run_id"], run.data.tags["dagster.asset_key"], run.data.tags["domret.data_version"]) \
            == (run1.run_id, name, sha)
        assert node.mlflow["url"] == f"http://mlflow.test/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert nodes["labeled_queries"].summary["feedback ids"] == "none"
    assert nodes["corpus_documents"].summary["documents"] == 6

    # 4. what differs from the champion's lineage: the corpus and the serving settings, nothing else
    (comparison,) = report.comparisons
    assert comparison.label == "champion v2"
    assert comparison.other == _materialized(run2)["serving_config"].metadata["content_sha256"].value
    assert comparison.causes == ["corpus change", "serving settings change"]
    by_name = {c.name: c for c in comparison.changes}
    assert by_name["corpus_documents"].content_changed is True
    labels = by_name["labeled_queries"]
    assert labels.status == "differs" and labels.content_changed is False and labels.cause is None
    assert by_name["serving_config"].settings_changed["top_n"] == [3, 2]
    for name in ("hard_negatives", "embedding_checkpoint", "reranker_adapter", "sentence_selector"):
        assert by_name[name].status == "differs" and by_name[name].inputs_differ and by_name[name].cause is None

    text = report.to_text()
    assert f"Incident review: audit row #{record.id} (request {served.request_id}), answer" in text
    assert "against previous champion v1: no change" in text and f"left the top 3: {changed.left[0]}" in text
    assert f"Dagster run {run1.run_id} SUCCESS" in text and "registry: domret_retrieval v1 (previous_champion)" in text
    assert all(node.mlflow["run_id"] in text for node in nodes.values())
    assert "causes: corpus change, serving settings change" in text
    assert "corpus_documents      differs: its data changed   <- corpus change" in text


def test_domret_incident_serves_a_query_now_and_reviews_it(two_champions, monkeypatch, capsys):
    from domret_pipeline import locations
    from domret_pipeline.cli import main
    from domret_pipeline.core.audit.store import AuditStore

    for name in AUDIT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(two_champions["instance_dir"]))  # as the CLI finds it
    home, (run1, run2) = two_champions["home"], two_champions["runs"]
    assert main(["incident", "--query", "who approves ledger-sync exceptions", "--as", "sre", "--search",
                 "--home", str(home), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    record = out["record"]
    assert (record["kind"], record["principal"], record["registry_version"]) == ("search", ["public", "sre"], "2")
    assert AuditStore(locations.local_audit_url(home)).get(record["request_id"]).hits == record["hits"]  # audited
    # served by the champion now: its replay reproduces it; the lineage is run 2's
    assert [d["label"] for d in out["diffs"]] == ["champion v2", "previous champion v1"] and out["diffs"][0]["unchanged"]
    assert out["dagster"]["run_id"] == run2.run_id and out["registry"]["aliases"] == ["champion"]
    assert all(n["materialization"]["run_id"] == run2.run_id for n in out["lineage"]["nodes"].values())
    (comparison,) = out["comparisons"]
    assert comparison["label"] == "previous champion v1"
    assert comparison["causes"] == ["corpus change", "serving settings change"]  # v2 against v1, seen from v2

    assert main(["incident", "999999", "--home", str(home)]) == 1
    assert "no audit row 999999" in capsys.readouterr().err
    assert main(["incident", "--home", str(home)]) == 2
