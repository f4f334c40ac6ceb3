"""Fault injection on the tiny graph: a run that fails, or is SIGKILLed, inside any asset changes
nothing anyone reads, and the next start closes what it left open.

One baseline is materialized and published once for the module. Each fault run then
materializes the faulty asset and everything upstream of it with *another* corpus, labels and
chunking (so every output differs from the published one, and a leak would show), and:
- before the sweep, the latest references and the registry (versions and aliases) are byte for
  byte and alias for alias as before;
- after the next start's sweep (the function `domret run` calls first), no staging folder, no
  STARTED Dagster run and no RUNNING MLflow run is left, and the registry is as before (a
  version registered by a dead ``champion_release`` is deleted);
- the next run (the faulty asset alone, reading the published upstream) succeeds and publishes.

Failing is tried in every asset (in process). Killing needs a subprocess per case (a few
seconds of imports each), so it is tried in four representative assets: ``corpus_chunks``
(an upstream step of the same run already produced new output), ``base_faiss_index`` (the
issue's case: killed while writing a large index), ``embedding_checkpoint`` (training, MLflow
artifacts) and ``champion_release`` (killed after registering a registry version).

The module's tests share the baseline and run in order; the last one runs the whole graph again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from domret_pipeline.core.artifacts import ArtifactRef
from domret_pipeline.definitions import defs
from domret_pipeline.jobs import SHARD_SELECTION
from domret_pipeline.registry import Registry
from domret_pipeline.run_transactions import prepare_run, stores_from_resources

from . import fault_injection
from .conftest import make_resources, make_small_dataset, publish, write_jsonl
from .graph_helpers import ASSET_NAMES, run_config

KILLED_IN = ["corpus_chunks", "base_faiss_index", "embedding_checkpoint", "champion_release"]
REPO = Path(__file__).resolve().parents[1]


def upstream_and(asset: str) -> list[str]:
    graph = defs.get_repository_def().asset_graph
    # the shard partitions are deps of the indexes, not part of an in-process run
    selection = dg.AssetSelection.assets(asset).upstream() - SHARD_SELECTION
    return sorted(k.to_user_string() for k in selection.resolve(graph))


class World:
    def __init__(self, root: Path, model: Path):
        self.root, self.model = root, model
        self.home = root / "home"  # the test resources name the registry and experiment "test-home"
        self.mlflow_uri = f"sqlite:///{root}/mlflow.db"
        self.instance_dir = root / "dagster"
        self.instance_dir.mkdir()
        self.config = run_config(make_small_dataset(root / "data"), model)
        changed = make_small_dataset(root / "changed")
        with changed["corpus"].open("a") as corpus:
            corpus.write(json.dumps({"_id": "pl-a", "title": "Pallets", "text": "Pallets are wrapped twice at Leeds."}) + "\n")
        write_jsonl(changed["queries"], [*map(json.loads, changed["queries"].read_text().splitlines()),
                                         {"_id": "q7", "text": "how are pallets wrapped at Leeds"}])
        with (changed["qrels"] / "test.tsv").open("a") as qrels:
            qrels.write("q7\tpl-a\t1\n")
        self.changed_config = run_config(changed, model)
        self.changed_config["ops"]["corpus_chunks"]["config"]["chunk_tokens"] = 20
        self.registry = Registry(self.mlflow_uri, "test-home")
        self.stores = stores_from_resources(make_resources(self.home, model, self.mlflow_uri))

    def spec(self, assets: list[str], config: dict, fault_asset: str = "", mode: str = "") -> dict:
        return {"home": str(self.home), "model": str(self.model), "mlflow_uri": self.mlflow_uri, "config": config,
                "instance_dir": str(self.instance_dir), "assets": assets, "fault_asset": fault_asset, "mode": mode}

    def state(self) -> tuple[dict, dict]:
        """The latest references (bytes) and the registry (version -> aliases)."""
        refs = {p.name: p.read_bytes() for p in sorted((self.home / "refs").glob("*.json"))}
        return refs, {v.version: sorted(v.aliases) for v in self.registry.versions()}

    def visible(self) -> tuple[dict, dict]:
        """What a reader sees: the latest references and the aliases (alias -> version)."""
        refs, versions = self.state()
        return refs, {alias: v for v, aliases in versions.items() for alias in aliases}

    def left_open(self, instance) -> dict:
        staging = self.home / "artifacts" / ".staging"
        started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                    dg.DagsterRunStatus.STARTING]))
        client = self.registry.client
        experiment = client.get_experiment_by_name("test-home")
        running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
        return {"staging": sorted(p.name for p in staging.iterdir()) if staging.is_dir() else [],
                "started": [r.run_id for r in started], "mlflow_running": [r.info.run_id for r in running]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_encoder):
    world = World(tmp_path_factory.mktemp("faults"), tiny_encoder)
    with dg.DagsterInstance.local_temp(tempdir=str(world.instance_dir)) as instance:
        result = fault_injection.materialize(world.spec(ASSET_NAMES, world.config), instance)
        assert result.success and publish(world.home, result.run_id, world.mlflow_uri).published
        assert world.registry.champion().version == "1"
        world.instance = instance
        yield world


def _fault_then_recover(world: World, asset: str, mode: str, monkeypatch, tmp_path) -> None:
    instance = world.instance
    before, seen = world.state(), world.visible()
    spec = world.spec(upstream_and(asset), world.changed_config, asset, mode)
    if mode == "fail":
        fault_injection.inject(asset, mode, monkeypatch.setattr)
        result = fault_injection.materialize(spec, instance)
        monkeypatch.undo()
        assert not result.success
        assert [e.step_key for e in result.all_events if e.is_step_failure] == [asset]
        # a failure (unlike a kill) closes its own MLflow run and staging folder at once
        assert world.left_open(instance) == {"staging": [], "started": [], "mlflow_running": []}
    else:
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        killed = subprocess.run([sys.executable, "-m", "domret_pipeline_tests.fault_injection", str(tmp_path / "spec.json")],
                                cwd=REPO, capture_output=True, text=True, timeout=900)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        # the kill left things open (so the sweep below has work to do)
        opened = world.left_open(instance)
        assert opened["started"] and opened["mlflow_running"] and any(asset in s for s in opened["staging"])

    # nothing anyone reads changed, before any clean-up (a champion_release that got through
    # registered a version, still unaliased: the sweep deletes it below)
    assert world.visible() == seen

    # the next start's sweep closes everything the fault left open
    swept = prepare_run(world.stores, instance)
    assert world.left_open(instance) == {"staging": [], "started": [], "mlflow_running": []}
    assert world.state() == before
    if mode == "kill":
        assert any("marked run" in line for line in swept) and any("staging" in line for line in swept)
    if asset == "champion_release":  # it registered a version before the fault: deleted by the sweep
        assert any("registry version" in line for line in swept)
    assert not prepare_run(world.stores, instance)  # and a second sweep finds nothing

    # the next run succeeds, reading the published upstream, and is published
    again = fault_injection.materialize(world.spec([asset], world.config), instance)
    assert again.success
    assert publish(world.home, again.run_id, world.mlflow_uri).published
    for text in world.state()[0].values():
        ArtifactRef.from_json(text).verify()


@pytest.mark.parametrize("asset", ASSET_NAMES)
def test_a_failed_step_changes_nothing(world, asset, monkeypatch, tmp_path):
    _fault_then_recover(world, asset, "fail", monkeypatch, tmp_path)


@pytest.mark.parametrize("asset", KILLED_IN)
def test_a_killed_run_changes_nothing_and_is_closed_on_the_next_start(world, asset, monkeypatch, tmp_path):
    _fault_then_recover(world, asset, "kill", monkeypatch, tmp_path)


def test_after_the_faults_the_whole_graph_runs_and_publishes(world):
    before_refs, _ = world.state()
    result = fault_injection.materialize(world.spec(ASSET_NAMES, world.changed_config), world.instance)
    assert result.success
    outcome = publish(world.home, result.run_id, world.mlflow_uri)
    assert outcome.published and sorted(outcome.assets) == sorted(ASSET_NAMES)
    refs, versions = world.state()
    assert all(refs[name] != before_refs[name] for name in ("corpus_documents.json", "corpus_chunks.json",
                                                            "base_faiss_index.json", "evaluation_report.json"))
    assert world.registry.champion().version == outcome.promoted_version == max(versions, key=int)
