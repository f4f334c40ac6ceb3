"""The sentence selector in the graph: trained where the labels carry train and dev evidence,
offered to the answer step, recorded in the serving bundle, and compared in the report with
the bi-encoder's sentence scores on the same searches."""

import json
from pathlib import Path

import dagster as dg

from domret_pipeline.core.data.serialization import write_jsonl
from domret_pipeline.core.serving.bundle import open_bundle

from .fake_llm import FakeChatServer
from .graph_helpers import materialize, run_config


def test_the_selector_trains_serves_and_is_compared_in_the_report(tmp_path, tiny_encoder, mlflow_uri, small_dataset):
    # split_salt t1: q3, q4 train; q5 dev; q1, q2, q6 test. Evidence in every split.
    evidence = tmp_path / "evidence.jsonl"
    write_jsonl(evidence, [{"query_id": q, "doc_id": d, "label": "SUPPORT", "sentences": [0]}
                           for q, d in (("q1", "slo-a"), ("q2", "slo-b"), ("q3", "fl-a"), ("q4", "fl-b"), ("q5", "hl7-a"))])
    config = run_config(small_dataset, tiny_encoder, evidence_path=str(evidence))
    config["ops"]["serving_config"]["config"]["answer_scorer"] = "selector"  # serve it, whatever dev says
    # The llm query rewriter rides along (a local fake endpoint): tried on dev, recorded, reported.
    server = FakeChatServer(lambda request: "Forklifts and SLO exceptions are described in the handbook.")
    config["ops"]["serving_config"]["config"].update(rewriters=["prf", "llm"], generator_base_url=server.url,
                                                     generator_model="fake")
    try:
        with dg.instance_for_test() as instance:
            result = materialize(tmp_path, tiny_encoder, mlflow_uri, config, instance)
    finally:
        server.close()
    assert result.success
    events = {m.asset_key.to_user_string(): m
              for m in (e.event_specific_data.materialization for e in result.get_asset_materialization_events())}
    selector_dir = Path(events["sentence_selector"].metadata["artifact_path"].value)
    card = json.loads((selector_dir / "card.json").read_text())
    assert card["trained"] and card["train_queries"] == 2 and card["dev_queries"] == 1
    assert (selector_dir / "merged").is_dir() and card["threshold"] > float("-inf")
    assert "per-sentence threshold" in events["sentence_selector"].metadata["card"].value

    serving_dir = Path(events["serving_config"].metadata["artifact_path"].value)
    bundle = json.loads((serving_dir / "serving.json").read_text())
    answer = bundle["answer"]
    # the bi-encoder is calibrated too (the fallback and the report's comparison), not eligible here
    assert answer["scorer"] == "selector" and set(answer["scorers_tried"]) == {"selector", "encoder"}
    assert "encoder" in answer["reasons"][-1] and "(not eligible)" in answer["reasons"][-1]
    # its per-sentence threshold: its own (dev F1) or a refinement on the dev answers, as recorded
    assert answer["max_sentences"] == 4  # selector_max_sentences
    assert answer["sentence_threshold"] == answer["scorers_tried"]["selector"]["sentence_threshold"]
    assert answer["scorers_tried"]["selector"]["settings_tried"] > 1
    assert answer["passage_weight"] == answer["scorers_tried"]["selector"]["passage_weight"]
    assert bundle["artifacts"]["sentence_selector"]["sha256"] == events["sentence_selector"].metadata["content_sha256"].value
    assert bundle["rewrite_endpoint"] == {"base_url": server.url, "model": "fake", "api_key_env": "OPENAI_API_KEY",
                                          "timeout_s": 10.0}
    assert bundle["rewrite_calls"]["calls"] > 0 and bundle["rewrite_calls"]["failures"] == 0
    assert any("+llm (fake)" in row["config"] for row in bundle["dev"]["table"])
    assert any(r.startswith("rewrite ") for r in bundle["config"]["reasons"])
    # what serving loads for the bundle scores sentences with the selector, verified by hash
    opened = open_bundle(serving_dir)
    scores = opened.scorer()("Leeds forklift speed", ["Forklifts at Leeds drive at most 8 km/h in aisles.", "Bay C."])
    assert len(scores) == 2
    # abstention on the selector's own best score or the bi-encoder's, as dev chose; served the same way
    tried = answer["scorers_tried"]
    assert answer["abstention_scorer"] == tried["selector"]["abstention_scorer"] in (None, "encoder")
    assert tried["encoder"]["abstention_scorer"] in (None, "selector")
    assert getattr(opened.scorer(), "name", None) == answer["abstention_scorer"]

    report = json.loads((Path(events["evaluation_report"].metadata["artifact_path"].value) / "report.json").read_text())
    llm_families = {name for name in report["serving"]["rows"] if "+llm" in name}
    assert llm_families and all("+llm (fake)" in report["serving"]["rows"][n]["config"] for n in llm_families)
    release = report["release"]
    assert set(release["systems"]) == {"base", "challenger", "challenger_encoder"}
    assert release["gate"]["reference"] == "base"  # the bi-encoder variant is compared, never gated
    step = release["answer_step"]
    assert (step["before"], step["after"]) == ("challenger_encoder", "challenger")
    assert step["tests"]["abstention_correct"]["n_queries"] == report["info"]["n_queries"]
    assert {"citation_f1", "citation_f1_doc"} <= set(release["systems"]["challenger"]["metrics"])
    assert "Answer step: bi-encoder sentence scores" in events["evaluation_report"].metadata["report"].value
