"""The tools folded into `domret` (tune, eval, bench, gpu-tune, sample): their options parse as
the scripts' did, they read a run's published references verified by hash, and the GPU step
runs with nothing but the core importable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from domret_pipeline.cli import build_parser, main
from domret_pipeline.cli import bench, evaluate, gpu_tune, tune
from domret_pipeline.definitions import ASSETS

from .conftest import make_resources, make_small_dataset, publish
from .graph_helpers import run_config

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ("corpus_documents", "corpus_chunks", "labeled_queries", "base_faiss_index", "bm25_index")


@pytest.mark.parametrize("argv, func, expected", [
    (["tune", "embedding", "--epochs", "4", "--lr", "2e-4", "--range", "10", "60", "--fill-random", "--train-precision", "bf16"],
     tune.cmd_tune_embedding, {"epochs": 4, "lr": 2e-4, "range": [10, 60], "fill_random": True, "num_negatives": None,
                               "train_precision": "bf16", "index_ref": ".domret/scifact/refs/base_faiss_index.json"}),
    (["tune", "embedding", "--recipes", "labels", "pseudo_then_labels", "--pseudo-max-queries", "500", "--pseudo-epochs", "2"],
     tune.cmd_tune_embedding, {"recipes": ["labels", "pseudo_then_labels"], "pseudo_max_queries": 500, "pseudo_epochs": 2,
                               "pseudo_max_rows": None}),
    (["tune", "reranker", "--loss", "lambda", "--grid-candidates", "20", "50", "100"], tune.cmd_tune_reranker,
     {"loss": "lambda", "grid_candidates": [20, 50, 100], "epochs": None, "refs": ".domret/scifact/refs"}),
    (["tune", "reranker", "--pretrain", "none", "pseudo", "--pretrain-max-pairs", "1000", "--grid-candidates"],
     tune.cmd_tune_reranker, {"pretrain": ["none", "pseudo"], "pretrain_max_pairs": 1000, "pretrain_epochs": None,
                              "grid_candidates": []}),
    (["eval", "--tuned-model", "m", "--latency-queries", "5"], evaluate.cmd_eval,
     {"tuned_model": "m", "latency_queries": 5, "split": "test", "refs": ".domret/scifact/refs"}),
    (["bench", "graph", "--config", "configs/scifact.yaml", "--select", "reranker_adapter+"], bench.cmd_bench_graph,
     {"config": "configs/scifact.yaml", "select": "reranker_adapter+", "job": "domret_full"}),
    (["bench", "precision", "--refs", "r", "--throughput-sample", "1024"], None,
     {"refs": "r", "throughput_sample": 1024, "rounds": 3, "precisions": "bf16,int8"}),
    (["bench", "training-step", "--freeze-layers", "3"], bench.cmd_bench_training_step,
     {"freeze_layers": 3, "variant": "n3", "batch_size": 64, "work": ".devicework"}),
    (["gpu-tune", "run", "--out", "o", "--only", "a,b", "--beat", "0.7"], None,
     {"out": "o", "only": "a,b", "beat": 0.7, "budget_s": 420.0, "trials": "configs/gpu_tune_embedding.yaml"}),
    (["gpu-tune", "restore", "--deltas", "d", "--model", "m", "--check-dev"], gpu_tune.cmd_restore,
     {"deltas": "d", "model": "m", "check_dev": True, "work": ".devicework"}),
])
def test_subcommands_take_the_scripts_options(argv, func, expected):
    args = build_parser().parse_args(argv)
    assert {k: getattr(args, k) for k in expected} == expected
    if func is not None:
        assert args.func is func
    assert args.verbose is False


def test_tune_options_left_out_take_the_graph_config_defaults():
    """`domret tune` once carried its own defaults (epochs 2 for the reranker where the graph
    trains 1; one negative where it mines 3): a trial then measured another recipe."""
    from domret_pipeline.config import FineTuneConfig, MiningConfig, RerankerConfig

    args = build_parser().parse_args(["tune", "embedding", "--epochs", "7", "--range", "5", "50"])
    training = tune.given(args, epochs="epochs", lr="learning_rate", batch_size="batch_size")
    assert training == {"epochs": 7}
    assert FineTuneConfig(**training).learning_rate == FineTuneConfig().learning_rate
    mining = tune.given(args, num_negatives="num_negatives", range_min="range_min", range_max="range_max")
    assert mining == {"range_min": 5, "range_max": 50}
    assert MiningConfig(**mining).num_negatives == MiningConfig().num_negatives
    args = build_parser().parse_args(["tune", "reranker"])
    assert tune.given(args, epochs="epochs", lr="learning_rate", base_model="base_model") == {}
    assert RerankerConfig().epochs == RerankerConfig(**tune.given(args, epochs="epochs")).epochs


def test_a_tool_without_its_required_option_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "graph"])
    assert "--config" in capsys.readouterr().err


def test_the_gpu_trial_config_loads_and_bad_entries_are_refused_before_any_training(tmp_path):
    from domret_pipeline.gpu_trials import load_trials

    config = load_trials(ROOT / "configs" / "gpu_tune_embedding.yaml")
    assert {t["mining"] for t in config["trials"] if "mining" in t} <= set(config["mining"])
    assert all(isinstance(t.get("learning_rate", 0.0), float) for t in config["trials"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("mining: {n1: {num_negatives: 1}}\ntrials:\n"
                   "  - {name: a, mining: n1, epochs: 1, learning_rate: 5e-5, batch_size: 2}\n"
                   "  - {name: b, mining: n9, epochs: 1, learning_rate: 1.0e-4, batch_size: 2, lr: 1}\n")
    with pytest.raises(SystemExit) as refused:
        load_trials(bad)
    message = str(refused.value)
    assert "'5e-05' is not a number" in message or "'5e-5' is not a number" in message
    assert "mining 'n9'" in message and "unknown keys ['lr']" in message


def test_sample_rewrites_the_bundled_handbook_byte_for_byte(tmp_path, capsys):
    assert main(["sample", str(tmp_path)]) == 0
    bundled = ROOT / "domret_pipeline" / "sample_data" / "handbook"
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/all.tsv", "evidence.jsonl"):
        assert (tmp_path / name).read_bytes() == (bundled / name).read_bytes(), name
    assert "passages" in capsys.readouterr().out


@pytest.fixture(scope="module")
def published(tmp_path_factory, tiny_encoder, mlflow_uri):
    """A run that materialized and published the graph's upstream (data, base index, BM25)."""
    home = tmp_path_factory.mktemp("published")
    data = make_small_dataset(home / "data")
    ops = {k: v for k, v in run_config(data, tiny_encoder)["ops"].items() if k in UPSTREAM}
    result = dg.materialize([a for a in ASSETS if a.key.to_user_string() in UPSTREAM],
                            resources=make_resources(home, tiny_encoder, mlflow_uri), run_config={"ops": ops})
    assert publish(home, result.run_id, mlflow_uri).published
    return home / "refs"


def test_eval_scores_a_checkpoint_from_published_refs_and_refuses_changed_artifacts(published, tiny_encoder, capsys):
    assert main(["eval", "--refs", str(published), "--tuned-model", str(tiny_encoder), "--latency-queries", "2"]) == 0
    out = capsys.readouterr().out
    assert f"checkpoint {tiny_encoder}" in out and "dense_tuned" in out and "dense_base" in out
    assert "command: domret eval --refs" in out

    chunks = Path(json.loads((published / "corpus_chunks.json").read_text())["path"]) / "chunks.jsonl"
    original = chunks.read_bytes()
    try:
        chunks.write_bytes(original + b"\n")
        assert main(["eval", "--refs", str(published), "--tuned-model", str(tiny_encoder)]) == 1
        assert "changed since it was written" in capsys.readouterr().err
    finally:
        chunks.write_bytes(original)


def test_tune_embedding_mines_and_trains_like_the_graph(published, capsys):
    argv = ["tune", "embedding", "--index-ref", str(published / "base_faiss_index.json"), "--epochs", "1",
            "--batch-size", "2", "--max-seq-length", "64", "--range", "0", "20", "--ratio", "1.0", "--dev-candidates", "2"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_rows"] > 0 and result["dev_queries"] > 0
    assert result["dev_history"][0]["epoch"] == 0.0 and len(result["dev_history"]) == 2
    assert result["command"] == "domret " + " ".join(argv)
    from domret_pipeline.config import FineTuneConfig, MiningConfig

    # what the command line left out, the trial took from the graph's config
    assert result["settings"]["training"]["learning_rate"] == FineTuneConfig().learning_rate
    assert result["settings"]["mining"]["num_negatives"] == MiningConfig().num_negatives
    assert result["settings"]["mining"]["range_max"] == 20


# Run as the GPU machine runs it: modules it does not have there cannot be imported.
BARE_MACHINE = """
import runpy, sys
# None in sys.modules: `import x` fails and importlib.util.find_spec("x") says absent, as there.
for name in ("dagster", "mlflow", "faiss", "pydantic", "peft", "bm25s", "pytrec_eval", "sqlalchemy"):
    sys.modules[name] = None
import os, domret_pipeline
assert domret_pipeline.__file__.startswith(os.getcwd()), domret_pipeline.__file__  # this checkout's code
sys.argv = ["gpu_trials", *sys.argv[1:]]
runpy.run_module("domret_pipeline.gpu_trials", run_name="__main__")
"""


def test_gpu_tune_prepare_bare_run_restore_and_training_step(published, tiny_encoder, tmp_path, capsys):
    trials = tmp_path / "trials.yaml"
    trials.write_text("mining:\n  v1: {num_negatives: 1, range_min: 0, range_max: 20, max_positive_ratio: 1.0}\n"
                      "dev: {candidates_per_query: 2, random_chunks: 3}\n"
                      "trials:\n  - {name: t1, mining: v1, epochs: 1, learning_rate: 1.0e-3, batch_size: 2}\n"
                      "  - {name: t1_seed7, from_best: true, seed: 7}\n")
    work, out = tmp_path / "work", tmp_path / "out"
    assert main(["gpu-tune", "prepare", "--refs", str(published), "--work", str(work), "--trials", str(trials)]) == 0
    assert (work / "data.json.gz").is_file() and (work / "base" / "model_fp16.safetensors").is_file()

    bare = subprocess.run([sys.executable, "-c", BARE_MACHINE, "run", "--work", str(work), "--out", str(out),
                           "--trials", str(trials), "--device", "cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": "", "TQDM_DISABLE": "1"})
    assert bare.returncode == 0, bare.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert [t["name"] for t in results["trials"]] == ["t1", "t1_seed7"]
    assert results["trials"][1]["recipe_of"] == "t1" and results["trials"][1]["seed"] == 7
    assert results["command"].startswith("python3 -m domret_pipeline.gpu_trials run")

    model = tmp_path / "restored"
    assert main(["gpu-tune", "restore", "--work", str(work), "--deltas", str(out), "--model", str(model), "--check-dev"]) == 0
    restored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert restored["trial"] == results["best"]["name"]
    assert abs(restored["dev_ndcg@10_here"] - restored["dev_ndcg@10_on_gpu"]) < 0.05

    assert main(["gpu-tune", "report", str(out / "results.json")]) == 0
    table = capsys.readouterr().out
    assert "| t1 | 1 (0–20) | 0.001 | 2 |" in table.replace(f"| {results['date']}, cpu ", "")

    assert main(["bench", "training-step", "--work", str(work), "--variant", "v1", "--batch-size", "2",
                 "--model", str(tiny_encoder), "--max-seq-length", "64"]) == 0
    step = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert step["rows"] == 2 and step["texts_per_row"] == 3 and step["step_seconds"] >= 0


def test_tune_selector_refuses_labels_whose_only_evidence_is_in_the_frozen_split(published, tiny_reranker_base, capsys):
    """The small data set's one evidence row belongs to a test query: the selector must not
    train or tune on it, and says why in one line (its training is tested in test_selector)."""
    argv = ["tune", "selector", "--refs", str(published), "--base-model", str(tiny_reranker_base), "--epochs", "1"]
    assert main(argv) == 1
    assert capsys.readouterr().err.strip() == (
        "domret: tune selector: no training query has sentence evidence and another sentence of its documents to contrast")
