"""The team configuration on a real PostgreSQL server (started by the ``postgres`` fixture):
the project's own stores and their migrations (on SQLite too, the same tests), the Dagster
instance of ``deploy/team/dagster.yaml``, and MLflow's tracking and registry store."""

import shutil
import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

from domret_pipeline.core.audit.store import AuditRecord, AuditStore, query_sha256
from domret_pipeline.core.feedback import store as feedback_store
from domret_pipeline.core.feedback.store import SCHEMA_VERSION, FeedbackLabel, FeedbackStore
from domret_pipeline.resources import FeedbackStoreResource, MlflowTracker

ROOT = Path(__file__).resolve().parents[1]
TEAM_INSTANCE = ROOT / "deploy" / "team" / "dagster.yaml"


def fresh_database(postgres, prefix: str) -> str:
    return postgres.create_database(f"{prefix}_{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path) -> str:
    """One empty database on each engine the stores support."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/team.db"
    return fresh_database(request.getfixturevalue("postgres"), "stores")


# Two rows as release 2 stored them (keyed with the file name); the second had no timestamp
# of its own and was stamped at import.
RELEASE_2_ROWS = [
    {"query": "who approves SLO exceptions", "label": "relevant", "doc_id": "slo-a", "user": "ana",
     "created_at": "2026-11-20T00:00:00+00:00"},
    {"query": "Leeds forklift speed", "label": "relevant", "chunk_id": "fl-a#0", "critical": True},
]


def test_the_feedback_schema_migrates_with_its_rows(database_url):
    old = FeedbackStore(database_url)
    with old.engine.begin() as connection:
        old.schema.create(connection)
        for version in (1, 2):
            feedback_store.MIGRATIONS[version](connection, old.feedback, old.schema)
        connection.execute(old.schema.insert().values(version=2))
        for row in RELEASE_2_ROWS:  # no explicit ids: the id sequence must count these rows
            label = FeedbackLabel(**row, source="import:f.jsonl")
            key = label.legacy_key()
            label.created_at = label.created_at or "2026-11-21T00:00:00+00:00"
            connection.execute(old.feedback.insert().values(dedup_key=key, **{
                k: v for k, v in label.as_dict().items() if k != "id"}))
    with pytest.raises(RuntimeError, match="domret feedback migrate"):
        old.rows()

    assert old.migrate() == 2 and old.version() == SCHEMA_VERSION
    assert old.migrate() == SCHEMA_VERSION  # idempotent
    stored = old.rows()
    assert [(r.id, r.critical) for r in stored] == [(1, False), (2, True)]
    # re-keyed on content: the same rows from a renamed file are duplicates
    again = old.add([FeedbackLabel(**row, source="import:g.jsonl") for row in RELEASE_2_ROWS])
    assert (again.inserted, again.duplicates) == (0, 2)
    new = old.add([FeedbackLabel(query="PID-3 unmapped values", label="not_relevant", doc_id="hl7-b")])
    assert (new.inserted, new.first_id) == (1, 3)
    counts = old.new_since(1)  # the sensor's range query (a boolean summed as an integer)
    assert (counts.count, counts.critical, counts.max_id) == (2, 1, 3)


def test_both_stores_share_one_database_and_migrate_from_the_cli(database_url, capsys):
    from domret_pipeline.cli import main
    from domret_pipeline.core.audit.store import SCHEMA_VERSION as AUDIT_VERSION

    # a server's password (the test server trusts 127.0.0.1 and ignores it) is never printed
    cli_url = database_url.replace("@", ":s3cret@", 1) if database_url.startswith("postgresql") else database_url
    assert main(["feedback", "migrate", "--url", cli_url]) == 0
    assert main(["audit", "migrate", "--url", cli_url]) == 0
    out = capsys.readouterr().out
    assert f"schema version {SCHEMA_VERSION}" in out and f"schema version {AUDIT_VERSION}" in out
    assert "s3cret" not in out and out.count("***") == (2 if cli_url != database_url else 0)
    assert (FeedbackStore(database_url).version(), AuditStore(database_url).version()) == (SCHEMA_VERSION, AUDIT_VERSION)

    store = AuditStore(database_url)
    search = AuditRecord(request_id="r-search", kind="search", query="Leeds forklift speed",
                         query_sha256=query_sha256("Leeds forklift speed"), principal=["ops", "public"],
                         served_from="champion", serving="dense+rerank", registry_version="3",
                         hits=[{"rank": 1, "chunk_id": "fl-a#0", "doc_id": "fl-a", "scores": {"dense": 0.61}}],
                         latency_ms={"dense": 1.5, "total": 2.25}, created_at="2026-11-01T08:00:00+00:00")
    answer = AuditRecord(request_id="r-answer", kind="answer", query="forklifts at Leeds drive",
                         query_sha256=query_sha256("forklifts at Leeds drive"), served_from="latest",
                         hits=[], citations=[{"doc_id": "fl-a", "sentence": 0, "score": 0.875}], abstained=False,
                         evidence_score=0.875, latency_ms={"total": 3.0})
    first, second = store.write(search), store.write(answer)
    assert second == first + 1
    read = store.get("r-search")
    assert (read.principal, read.hits, read.latency_ms, read.abstained) == (search.principal, search.hits,
                                                                            search.latency_ms, None)
    read = store.get(second)
    assert (read.citations, read.abstained, read.evidence_score) == (answer.citations, False, 0.875)
    assert [r.request_id for r in store.rows(newest_first=True)] == ["r-answer", "r-search"]
    assert [r.request_id for r in store.rows(kind="search")] == ["r-search"]
    assert [r.request_id for r in store.rows(since="2026-11-02T00:00:00.000000+00:00")] == ["r-answer"]
    assert store.purge(older_than_days=7) == 1 and [r.request_id for r in store.rows()] == ["r-answer"]
    hashed = AuditStore(database_url, query_mode="hash")
    hashed.write(AuditRecord(request_id="r-hash", kind="search", query="secret text",
                             query_sha256=query_sha256("secret text")))
    assert store.get("r-hash").query is None and store.get("r-hash").query_sha256 == query_sha256("secret text")
    # the feedback store beside it is untouched by the audit rows
    assert FeedbackStore(database_url).rows() == []


def test_the_team_instance_keeps_the_projects_settings_but_the_storage():
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    team = yaml.safe_load(TEAM_INSTANCE.read_text())
    assert set(team["storage"]) == {"postgres"}
    # local artifacts and compute logs default to folders under $DAGSTER_HOME
    assert {k: v for k, v in local.items() if k not in ("storage", "local_artifact_storage", "compute_logs")} == \
        {k: v for k, v in team.items() if k != "storage"}


@dg.asset(code_version="1", description="Logs a run to MLflow and releases a version, as the release does.")
def team_probe(context: dg.AssetExecutionContext, mlflow: MlflowTracker,
               feedback: FeedbackStoreResource) -> dg.MaterializeResult:
    labels = feedback.store().new_since(0)
    registry = mlflow.registry()
    with mlflow.run(context, "1") as tracked:
        tracked.log_params({"feedback_labels": labels.count})
        tracked.log_metrics({"ndcg@10": 0.5})
        version = registry.register(tracked.run_id, {"path": "bundle", "sha256": "0" * 64}, None, {"ndcg@10": 0.5})
    champion = registry.promote(version.version)
    return dg.MaterializeResult(metadata={"mlflow_run": tracked.url, "version": champion.version})


def _count(url: str, sql: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(sql)).scalar())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_team_configuration_runs_on_postgresql(postgres, tmp_path, monkeypatch):
    """DOMRET_ENV=team's resources and deploy/team/dagster.yaml, every database on the server."""
    from dagster._core.scheduler.instigation import InstigatorStatus
    from dagster._core.test_utils import in_process_test_workspace
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
    from mlflow.tracking import MlflowClient

    from domret_pipeline.definitions import resources_for
    from domret_pipeline.registry import PREVIOUS, Registry
    from domret_pipeline.run_transactions import prepare_run, stores_from_resources

    urls = {name: fresh_database(postgres, name) for name in ("dagster", "mlflow", "domret")}
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copy(TEAM_INSTANCE, home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": "127.0.0.1", "DAGSTER_PG_PORT": str(postgres.port),
           "DAGSTER_PG_DB": urls["dagster"].rsplit("/", 1)[1], "DAGSTER_PG_USERNAME": postgres.user,
           "DAGSTER_PG_PASSWORD": "", "DOMRET_ENV": "team",
           "MLFLOW_TRACKING_URI": urls["mlflow"], "DOMRET_MLFLOW_ARTIFACTS": str(tmp_path / "mlflow-artifacts"),
           "MLFLOW_UI_URL": "http://mlflow.test:5000", "DOMRET_FEEDBACK_URL": urls["domret"],
           "DOMRET_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "DOMRET_REFS_DIR": str(tmp_path / "refs")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    feedback = FeedbackStore(urls["domret"])
    feedback.migrate()
    feedback.add([FeedbackLabel(query="Leeds forklift speed", label="relevant", doc_id="fl-a")])

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        results = [dg.materialize([team_probe], resources=resources_for("team"), instance=instance) for _ in range(2)]
        assert all(r.success for r in results)
        run = instance.get_run_by_id(results[0].run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "__ephemeral_asset_job__"
        events = {e.dagster_event.event_type for e in instance.all_logs(results[0].run_id) if e.dagster_event}
        assert {dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.ASSET_MATERIALIZATION} <= events
        latest = instance.get_latest_materialization_event(dg.AssetKey("team_probe"))
        assert latest.run_id == results[1].run_id
        assert latest.asset_materialization.metadata["version"].value == "2"

        # the schedule, started as `dagster schedule start weekly_retrain` starts it (from the
        # code location loaded in this process rather than in a code server), is on the server
        origin = LoadableTargetOrigin(executable_path=sys.executable, module_name="domret_pipeline.definitions",
                                      working_directory=str(ROOT))
        with in_process_test_workspace(instance, origin) as workspace:
            (location,) = workspace.code_locations
            (repository,) = location.get_repositories().values()
            instance.start_schedule(repository.get_schedule("weekly_retrain"))
        states = {s.name: s.status for s in instance.all_instigator_state()}
        assert states.get("weekly_retrain") == InstigatorStatus.RUNNING, states

        # `domret run`'s start-up sweep reads the run history and MLflow on the servers:
        # both runs finished, so there is nothing to close
        stores = stores_from_resources(resources_for("team"))
        assert stores.tracking_uri == urls["mlflow"]
        assert prepare_run(stores, instance) == []

    # the rows are in the server's databases, not in a file beside the test
    assert _count(urls["dagster"], "SELECT count(*) FROM runs") == 2
    assert _count(urls["dagster"], "SELECT count(*) FROM jobs WHERE job_type = 'SCHEDULE'") == 1
    client = MlflowClient(tracking_uri=urls["mlflow"])
    experiment = client.get_experiment_by_name("domret_pipeline")
    mlflow_runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["dagster.run_id"] for r in mlflow_runs) == sorted(r.run_id for r in results)
    assert all(r.data.params == {"feedback_labels": "1"} and r.data.metrics == {"ndcg_at_10": 0.5}
               and r.info.status == "FINISHED" for r in mlflow_runs)
    registry = Registry(urls["mlflow"])
    assert (registry.champion().version, registry.get(PREVIOUS).version) == ("2", "1")
    assert _count(urls["mlflow"], "SELECT count(*) FROM model_versions") == 2


def test_missing_server_programs_are_an_error_not_a_skip(monkeypatch):
    from domret_pipeline_tests import postgres_server

    monkeypatch.setattr(postgres_server.shutil, "which", lambda name: None)
    monkeypatch.setattr(postgres_server, "SEARCH_DIRS", [])
    with pytest.raises(RuntimeError, match="initdb is not installed.*apt-get install postgresql-15"):
        postgres_server.server_binary("initdb")
