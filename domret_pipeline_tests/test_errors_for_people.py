"""What a person sees when `domret` fails (issue 12, defect 6): one summary naming the step,
the file and line, and what to do; no stack trace without --verbose; quarantine counts."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from domret_pipeline.cli import main
from domret_pipeline.core.data.loaders import load_corpus
from domret_pipeline.core.errors import InputDataError


def test_a_csv_without_its_text_column_is_one_error_for_the_column(tmp_path):
    path = tmp_path / "docs.csv"
    pd.DataFrame({"_id": ["a", "b", "c"], "body": ["Alpha.", "Beta.", "Gamma."]}).to_csv(path, index=False)
    with pytest.raises(InputDataError) as error:
        load_corpus(path, "csv")
    assert len(error.value.issues) == 1
    assert str(error.value.issues[0]) == f"{path}:1: no column 'text' (columns: _id, body); set id_field / text_field"


def domret_run(tmp_path, corpus_config: dict, *extra):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {"corpus_documents": {"config": corpus_config}}}))
    (tmp_path / "dagster").mkdir(exist_ok=True)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "DOMRET_HOME": str(tmp_path / "domret")}
    return subprocess.run([sys.executable, "-m", "domret_pipeline.cli", "run", "--config", str(config), "--select",
                           "corpus_documents", *extra], capture_output=True, text=True, env=env, timeout=600)


def test_a_failed_step_ends_with_one_summary_and_no_stack_trace(tmp_path, small_dataset):
    bad = small_dataset["root"] / "bad.jsonl"
    bad.write_text(small_dataset["corpus"].read_text() + '{"_id": "x", "text": "broken\n')
    run = domret_run(tmp_path, {"path": str(bad)})
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and 'File "' not in run.stderr, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("domret: run ") and f"failed in step corpus_documents at {bad}:7:" in last
    assert "on_bad_rows: quarantine" in last
    assert f"domret: step corpus_documents failed: 1 invalid input row(s):\n  - {bad}:7: malformed JSON" in run.stderr
    assert sum(line.startswith("domret: run ") for line in run.stderr.splitlines()) == 1
    verbose = domret_run(tmp_path, {"path": str(bad)}, "--verbose")
    assert verbose.returncode == 1 and 'File "' in verbose.stderr  # the trace, for whoever asks


def test_quarantine_counts_are_printed_at_the_end_of_a_run(tmp_path, small_dataset):
    corpus = small_dataset["corpus"]
    corpus.write_text(corpus.read_text() + '{"_id": "slo-a", "text": "duplicate id"}\n{"_id": "e", "text": ""}\n')
    run = domret_run(tmp_path, {"path": str(corpus), "on_bad_rows": "quarantine"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "quarantined rows: corpus_documents 2 " in run.stdout


def test_an_unexpected_error_is_one_line_without_verbose(tmp_path, monkeypatch, capsys):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "evaluation_report.json").write_text("{not json")
    monkeypatch.setenv("DOMRET_HOME", str(tmp_path))
    assert main(["report"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("domret: report failed: JSONDecodeError:") and "--verbose" in err[0]
    with pytest.raises(ValueError):
        main(["report", "--verbose"])
