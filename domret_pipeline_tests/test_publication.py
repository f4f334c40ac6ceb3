"""Run-scoped publication and the start-up sweep, on a two-asset graph (no models): what is
published when, what a refused or interrupted publication leaves, and what the sweep closes."""


import json
import os
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest

from domret_pipeline import publication
from domret_pipeline.core.artifacts import OWNER_SUFFIX, ArtifactRef, atomic_artifact_dir
from domret_pipeline.core.processes import identity
from domret_pipeline.io_manager import ArtifactRefIOManager
from domret_pipeline.publication import ensure_layout, publish_run, published_refs
from domret_pipeline.recovery import OWNER_TAGS, sweep
from domret_pipeline.resources import ArtifactStore, MlflowTracker
from domret_pipeline.run_transactions import domret_publish, domret_recovery


class TextConfig(dg.Config):
    text: str = "one"


@dg.asset(io_manager_key="artifact_io_manager")
def upstream(config: TextConfig, artifacts: ArtifactStore) -> ArtifactRef:
    with atomic_artifact_dir(artifacts.path(), "upstream") as pending:
        (pending.path / "text.txt").write_text(config.text)
    return pending.ref


@dg.asset(io_manager_key="artifact_io_manager")
def downstream(upstream: ArtifactRef, artifacts: ArtifactStore) -> ArtifactRef:
    with atomic_artifact_dir(artifacts.path(), "downstream") as pending:
        (pending.path / "text.txt").write_text(Path(upstream.path, "text.txt").read_text() + "!")
    return pending.ref


def resources(home: Path) -> dict:
    return {"artifacts": ArtifactStore(root=str(home / "artifacts")),
            "artifact_io_manager": ArtifactRefIOManager(base_dir=str(home / "refs")),
            "mlflow": MlflowTracker(enabled=False)}


def run(home: Path, instance, selection: list[str], text: str = "one"):
    return dg.materialize([upstream, downstream], resources=resources(home), instance=instance, selection=selection,
                          run_config={"ops": {"upstream": {"config": {"text": text}}}} if "upstream" in selection else None)


def latest(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "refs").glob("*.json"))}


def test_only_a_published_run_moves_the_latest_references(tmp_path):
    with dg.instance_for_test() as instance:
        first = run(tmp_path, instance, ["upstream", "downstream"])
        assert latest(tmp_path) == {}  # written under the run only
        assert publish_run(tmp_path / "refs", first.run_id).published
        refs = latest(tmp_path)
        assert set(refs) == {"upstream.json", "downstream.json"}
        assert (tmp_path / "refs" / "upstream.json").is_symlink()
        # publishing again is a no-op (the CLI and the daemon's sensor may both try)
        assert publish_run(tmp_path / "refs", first.run_id).published and latest(tmp_path) == refs

        # a --select run of downstream alone reads the published upstream, and publishes on top
        second = run(tmp_path, instance, ["downstream"])
        reads = json.loads((tmp_path / "refs/runs" / second.run_id / "_reads/upstream.json").read_text())
        assert reads["source"] == "published" and reads["sha256"] == json.loads(refs["upstream.json"])["sha256"]
        outcome = publish_run(tmp_path / "refs", second.run_id)
        assert outcome.published and outcome.assets == ["downstream"]
        assert latest(tmp_path)["upstream.json"] == refs["upstream.json"]


def test_a_partial_run_whose_upstream_changed_meanwhile_is_refused(tmp_path):
    with dg.instance_for_test() as instance:
        assert publish_run(tmp_path / "refs", run(tmp_path, instance, ["upstream", "downstream"]).run_id).published
        stale = run(tmp_path, instance, ["downstream"])  # built on upstream "one"
        assert publish_run(tmp_path / "refs", run(tmp_path, instance, ["upstream"], "two").run_id).published
        before = latest(tmp_path)
        outcome = publish_run(tmp_path / "refs", stale.run_id)
        assert not outcome.published and "upstream was" in outcome.reason and "another run published since" in outcome.reason
        assert latest(tmp_path) == before
        # refused once, refused for good: a retry (the sensor) does not publish it later
        assert not publish_run(tmp_path / "refs", stale.run_id).published


def test_a_kill_before_the_commit_leaves_the_old_set_and_after_it_the_new_one(tmp_path, monkeypatch):
    with dg.instance_for_test() as instance:
        assert publish_run(tmp_path / "refs", run(tmp_path, instance, ["upstream", "downstream"]).run_id).published
        before = latest(tmp_path)
        second = run(tmp_path, instance, ["upstream", "downstream"], "two")
        real_link = publication._link

        def killed_at_commit(link, target):
            if link.name == publication.CURRENT:
                raise KeyboardInterrupt("killed")  # stands for a kill at the commit point
            real_link(link, target)

        monkeypatch.setattr(publication, "_link", killed_at_commit)
        with pytest.raises(KeyboardInterrupt):
            publish_run(tmp_path / "refs", second.run_id)
        assert latest(tmp_path) == before  # the new publication folder exists, but nothing points at it
        monkeypatch.undo()
        assert publish_run(tmp_path / "refs", second.run_id).published
        after = latest(tmp_path)
        assert set(after) == set(before) and all(after[k] != before[k] for k in before)


def test_references_from_before_this_change_become_the_first_publication(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "corpus_documents.json").write_text('{"path": "/x", "sha256": "abc"}')
    (refs / "runs" / "r1").mkdir(parents=True)
    ensure_layout(refs)
    assert (refs / "corpus_documents.json").is_symlink()
    assert (refs / "corpus_documents.json").read_text() == '{"path": "/x", "sha256": "abc"}'
    assert published_refs(refs) == {"corpus_documents.json": '{"path": "/x", "sha256": "abc"}'}


class FakeRegistry:
    """The registry calls publication makes: champion, promote, tag."""

    name = "fake"

    def __init__(self, champion: str | None, fail: bool = False):
        self.current, self.fail, self.tags = champion, fail, {}
        self.client = self

    def champion(self):
        return type("V", (), {"version": self.current})() if self.current else None

    def promote(self, version):
        if self.fail:
            raise KeyboardInterrupt("killed between the commit and the alias move")
        self.current = version

    def set_model_version_tag(self, name, version, key, value):
        self.tags[(version, key)] = value


def _release_run(refs: Path, artifacts: Path, registered: str, gated_against: str | None) -> str:
    run_id = uuid.uuid4().hex
    with atomic_artifact_dir(artifacts, "champion_release") as pending:
        (pending.path / "release.json").write_text(json.dumps({"registered_version": registered,
                                                               "gated_against_version": gated_against}))
    publication.write_run_ref(refs, run_id, ["champion_release"], pending.ref.to_json())
    return run_id


def test_the_champion_moves_with_the_publication_and_an_interrupted_move_is_completed(tmp_path):
    refs, artifacts = tmp_path / "refs", tmp_path / "artifacts"
    registry = FakeRegistry("1", fail=True)
    with pytest.raises(KeyboardInterrupt):
        publish_run(refs, _release_run(refs, artifacts, "2", "1"), registry)
    assert "champion_release.json" in latest(tmp_path) and registry.current == "1"  # committed, alias not moved yet
    registry.fail = False
    assert publication.complete_publication(refs, registry) == "2" and registry.current == "2"
    assert registry.tags[("2", "domret.release_state")] == "published"
    assert publication.complete_publication(refs, registry) is None  # done once; an operator's rollback stays

    # a challenger gated against v1 is not promoted over v2: refused, nothing moves
    before = latest(tmp_path)
    outcome = publish_run(refs, _release_run(refs, artifacts, "3", "1"), registry)
    assert not outcome.published and "champion is now v2" in outcome.reason
    assert registry.current == "2" and latest(tmp_path) == before
    assert registry.tags[("3", "domret.release_state")] == "refused"


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_the_sweep_closes_what_dead_processes_left_and_nothing_else(tmp_path, mlflow_uri):
    from dagster._core.storage.dagster_run import DagsterRun
    from mlflow.tracking import MlflowClient

    dead = {**identity(), "pid": str(_dead_pid()), "started": "1"}
    staging = tmp_path / "artifacts" / ".staging"
    staging.mkdir(parents=True)
    for name, owner in (("dead-1", dead), ("alive-1", identity()), ("other-host-1", {**dead, "host": "elsewhere"})):
        (staging / name).mkdir()
        (staging / (name + OWNER_SUFFIX)).write_text(json.dumps(owner))
    with dg.instance_for_test() as instance:
        runs = {}
        for name, owner in (("dead", dead), ("alive", identity())):
            runs[name] = DagsterRun(job_name="domret_full", run_id=uuid.uuid4().hex, status=dg.DagsterRunStatus.STARTED,
                                    tags={tag: owner[key] for key, tag in OWNER_TAGS.items()})
            instance.add_run(runs[name])
        client = MlflowClient(tracking_uri=mlflow_uri)
        experiment = client.create_experiment(f"sweep-{tmp_path.name}")
        mlflow_runs = {name: client.create_run(experiment, tags={"dagster.run_id": r.run_id}).info.run_id
                       for name, r in runs.items()}

        report = sweep(instance, tmp_path / "artifacts", tracking_uri=mlflow_uri)

        assert report.failed_runs == [runs["dead"].run_id] and report.staging == ["dead-1"]
        assert instance.get_run_by_id(runs["dead"].run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(runs["alive"].run_id).status == dg.DagsterRunStatus.STARTED
        assert report.mlflow_runs == [mlflow_runs["dead"]]
        assert client.get_run(mlflow_runs["dead"]).info.status == "FAILED"
        assert client.get_run(mlflow_runs["alive"]).info.status == "RUNNING"
        assert sorted(p.name for p in staging.iterdir() if p.is_dir()) == ["alive-1", "other-host-1"]
        client.set_terminated(mlflow_runs["alive"])


def test_the_daemon_sensor_publishes_a_successful_run(tmp_path):
    with dg.instance_for_test() as instance:
        result = run(tmp_path, instance, ["upstream", "downstream"])
        context = dg.build_run_status_sensor_context(
            sensor_name="domret_publish", dagster_instance=instance, dagster_run=instance.get_run_by_id(result.run_id),
            dagster_event=result.get_run_success_event(), resources=resources(tmp_path))
        domret_publish(context)
    assert set(latest(tmp_path)) == {"upstream.json", "downstream.json"}
    assert publication.previous_outcome(tmp_path / "refs", result.run_id).published
    assert os.path.islink(tmp_path / "refs" / publication.CURRENT)


def test_the_daemon_recovery_sensor_runs_the_sweep(tmp_path):
    staging = tmp_path / "artifacts" / ".staging"
    staging.mkdir(parents=True)
    (staging / "corpus_chunks-dead").mkdir()
    (staging / ("corpus_chunks-dead" + OWNER_SUFFIX)).write_text(json.dumps({**identity(), "pid": str(_dead_pid()),
                                                                               "started": "1"}))
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources(tmp_path))
        result = domret_recovery(context)
        assert "removed staging folder corpus_chunks-dead" in result.skip_message
        assert list(staging.iterdir()) == []
        assert domret_recovery(dg.build_sensor_context(instance=instance, resources=resources(tmp_path))).skip_message \
            == "nothing left open by a dead process"
