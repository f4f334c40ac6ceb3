"""The `domret` command on the tiny graph: run, report, search, promote and rollback in
subprocesses, and the asset selection it resolves."""

import json
import os
import subprocess
import sys

from domret_pipeline.definitions import defs

from .graph_helpers import MARGINS, run_config


def test_cli_runs_the_job_and_prints_the_report(tmp_path, tiny_encoder, small_dataset):
    import yaml

    config = run_config(small_dataset, tiny_encoder)
    config["resources"] = {"embedding_model": {"config": {"model_name_or_path": str(tiny_encoder), "max_seq_length": 128}}}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "DOMRET_HOME": str(tmp_path / "domret")}
    (tmp_path / "dagster").mkdir()
    cli = [sys.executable, "-m", "domret_pipeline.cli"]
    run = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| dense_tuned |" in run.stdout and "| bm25 |" in run.stdout
    report = subprocess.run([*cli, "report", "--json"], capture_output=True, text=True, env=env, check=True)
    assert json.loads(report.stdout)["info"]["split"] == "test"
    # domret search serves the latest bundle, and the bundle of a named run
    found = subprocess.run([*cli, "search", "Leeds forklift speed", "who approves exceptions", "--json", "--top-n", "2"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert found.returncode == 0, found.stderr[-3000:]
    results = json.loads(found.stdout)["results"]
    assert [r["query"] for r in results] == ["Leeds forklift speed", "who approves exceptions"]
    hit = results[0]["hits"][0]
    assert hit["rank"] == 1 and hit["doc_id"] and hit["end"] > hit["start"] and "final" in hit["scores"]
    assert "total" in results[0]["timings"]
    run_id = run.stdout.split()[1]
    named = subprocess.run([*cli, "search", "Leeds forklift speed", "--run", run_id], capture_output=True, text=True, env=env,
                           timeout=300)
    assert named.returncode == 0 and "1. " in named.stdout, named.stderr[-3000:]
    missing = subprocess.run([*cli, "search", "x", "--run", "no-such-run"], capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and "no-such-run" in missing.stderr

    # a bad corpus makes the CLI fail with the file and line, and the old report stays
    config["ops"]["corpus_documents"]["config"]["path"] = str(tmp_path / "missing.jsonl")
    config_path.write_text(yaml.safe_dump(config))
    failed = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert failed.returncode == 1 and "corpus not found" in failed.stderr
    again = subprocess.run([*cli, "report", "--json"], capture_output=True, text=True, env=env, check=True)
    assert json.loads(again.stdout) == json.loads(report.stdout)

    # a second run with another bundle becomes champion v2; search follows the champion, and
    # one rollback brings v1 back
    def served_top_n():
        out = subprocess.run([*cli, "search", "forklift", "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)["serving"]["top_n"]

    assert served_top_n() == 3
    config["ops"]["corpus_documents"]["config"]["path"] = str(small_dataset["corpus"])
    config["ops"]["serving_config"]["config"]["top_n"] = 2
    config_path.write_text(yaml.safe_dump(config))
    second = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert served_top_n() == 2
    listing = subprocess.run([*cli, "promote"], capture_output=True, text=True, env=env, check=True).stdout
    assert "v1" in listing and "v2" in listing and "champion: v2" in listing
    back = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert back.returncode == 0 and "champion: v1" in back.stdout
    assert served_top_n() == 3
    again = subprocess.run([*cli, "rollback"], capture_output=True, text=True, env=env)
    assert again.returncode == 1 and "no previous champion" in again.stderr
    # a challenger the gate rejects: the CLI says why, and the champion stays
    config["ops"]["serving_config"]["config"]["top_n"] = 4
    config["ops"]["evaluation_report"]["config"].update({f"margin_{m}": -1.0 for m in MARGINS})
    config_path.write_text(yaml.safe_dump(config))
    blocked = subprocess.run([*cli, "run", "--config", str(config_path)], capture_output=True, text=True, env=env, timeout=600)
    assert blocked.returncode == 1 and "Release gate against the champion: FAILED" in blocked.stderr, blocked.stderr[-2000:]
    assert served_top_n() == 3


def test_cli_selection_resolves_downstream_and_rejects_unknown_assets():
    import pytest

    from domret_pipeline.cli.common import asset_selection

    names = lambda spec: sorted(k.to_user_string() for k in asset_selection(defs, spec))  # noqa: E731
    assert names("reranker_adapter+") == ["champion_release", "evaluation_report", "labeling_queue", "reranker_adapter",
                                          "sentence_selector", "serving_config"]
    assert names("hard_negatives, faiss_index") == ["faiss_index", "hard_negatives"]
    with pytest.raises(SystemExit, match="unknown asset 'nope'"):
        asset_selection(defs, "nope+")
