"""`domret run --config`: the file is checked against the whole job before anything runs,
with or without --select, and every problem is one line naming the file, line and key path."""

import pytest

from domret_pipeline.cli import main


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("DOMRET_HOME", str(tmp_path / "domret"))
    (tmp_path / "dagster").mkdir()

    def run(*argv):
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.err.splitlines()

    return run


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_misspelled_op_under_select_is_refused_not_dropped(tmp_path, cli):
    config = write(tmp_path, "ops:\n  corpus_document:\n    config:\n      path: /data/my-corpus.jsonl\n")
    for select in (["--select", "corpus_documents"], []):
        code, err = cli("run", "--config", str(config), *select)
        assert code == 2
        assert err[0] == f"domret: {config}:2: ops.corpus_document: unknown op (did you mean corpus_documents?)"
        assert len(err) == 2 and err[1].startswith("domret: nothing ran")
    assert not (tmp_path / "domret").exists()  # nothing ran, no reference moved


def test_unknown_keys_and_wrong_types_are_one_line_each(tmp_path, cli):
    config = write(tmp_path, (
        "ops:\n"
        "  corpus_chunks:\n"
        "    config:\n"
        "      chunk_token: 16\n"
        "      overlap_tokens: many\n"
        "  corpus_documents:\n"
        "    config:\n"
        "      on_bad_rows: quar\n"
        "resources:\n"
        "  embedding_model:\n"
        "    config:\n"
        "      max_seq_length: [1]\n"))
    code, err = cli("run", "--config", str(config), "--select", "corpus_chunks")
    assert code == 2 and len(err) == 5, err
    assert set(err[:4]) == {
        f"domret: {config}:4: ops.corpus_chunks.config.chunk_token: unknown key (did you mean chunk_tokens?)",
        f"domret: {config}:5: ops.corpus_chunks.config.overlap_tokens: expected an integer, got 'many'",
        f"domret: {config}:8: ops.corpus_documents.config.on_bad_rows: expected one of fail, quarantine, got 'quar'",
        f"domret: {config}:12: resources.embedding_model.config.max_seq_length: expected an integer, got [1]",
    }


def test_yaml_errors_and_missing_files_name_the_file(tmp_path, cli):
    config = write(tmp_path, "ops:\n  corpus_documents:\n    config:\n      path: [unclosed\n  x: 1\n")
    code, err = cli("run", "--config", str(config))
    assert code == 2 and len(err) == 2
    assert err[0] == (f"domret: {config}:5:4: YAML syntax error: expected ',' or ']', but got ':' "
                      "(while parsing a flow sequence that starts at line 4)")
    code, err = cli("run", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and err[0] == f"domret: {tmp_path / 'nope.yaml'}: config file not found"
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize("name", ["scifact.yaml", "scifact_full.yaml"])
def test_the_committed_run_configs_fit_the_job(name):
    """The configs `make scifact` and the README name are checked against the real job, so a
    renamed or removed key fails here, not an hour into a benchmark run."""
    from pathlib import Path

    from domret_pipeline.definitions import defs
    from domret_pipeline.run_config import check_run_config, load_run_config

    path = Path(__file__).resolve().parents[1] / "configs" / name
    check_run_config(defs.resolve_job_def("domret_full"), load_run_config(path), path)
