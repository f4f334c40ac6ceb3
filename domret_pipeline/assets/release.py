"""The release: a challenger that passed the gate becomes the registry's champion."""

from pathlib import Path

import dagster as dg

from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.evaluation.report import markdown_table
from ..core.feedback.store import id_ranges
from ..core.manifests import LabeledQueriesManifest, read_manifest
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output

RELEASE_VERSION = "2"  # 2: the gate it records carries intervals and slice verdicts


@dg.asset(
    group_name="release",
    code_version=RELEASE_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Registers this run's serving bundle (embedder index, reranker, BM25, chunks and answer "
        "settings, as one version of the MLflow registered model) once the blocking release gate on "
        "evaluation_report has passed. The `champion` alias moves to it when the run is published "
        "(it succeeded as a whole); the previous champion keeps the `previous_champion` alias: "
        "`domret rollback` restores it."
    ),
)
def champion_release(
    context: dg.AssetExecutionContext,
    evaluation_report: ArtifactRef,
    serving_config: ArtifactRef,
    labeled_queries: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    report = read_json(f"{evaluation_report.path}/report.json")
    release = report["release"]
    if not release["gate"]["passed"]:  # the blocking check stops the run first; this guards direct calls
        raise dg.Failure(f"the release gate failed against the {release['gate']['reference']}: not promoting")
    if report["inputs"]["serving_config"] != serving_config.sha256:
        raise ValueError("evaluation_report judged another serving bundle: re-materialize evaluation_report")
    registry = mlflow.registry()
    if registry is None:
        raise ValueError("the release needs MLflow (the mlflow resource is disabled)")
    with mlflow.run(context, RELEASE_VERSION) as tracked:
        before = registry.champion()
        metrics = release["systems"]["challenger"]["metrics"]
        if before is not None and before.serving_config["sha256"] == serving_config.sha256:
            version, action = before, "unchanged: this bundle is already the champion"
        else:
            tracked.log_artifacts(serving_config.path, "bundle")
            for name in ("report.md", "report.json"):
                tracked.log_artifact(Path(evaluation_report.path) / name, "bundle/evaluation")
            # Lineage for incident reviews: the labels (and the feedback ids) this bundle learned from.
            used = read_manifest(labeled_queries.path, LabeledQueriesManifest).feedback_ids
            # "pending" until the run is published: the alias moves only then (publication.py), so a
            # run that fails or is killed after this step never changes what serves; the start-up
            # sweep (recovery.py) deletes the pending versions of runs that died.
            extra = {"domret.labeled_queries": labeled_queries.sha256, "domret.dagster_run_id": context.run.run_id,
                     "domret.feedback_ids": id_ranges(used)[:5000] or "none", "domret.feedback_labels": str(len(used)),
                     "domret.release_state": "pending"}
            version = registry.register(tracked.run_id, {"path": serving_config.path, "sha256": serving_config.sha256},
                                        {"path": evaluation_report.path, "sha256": evaluation_report.sha256},
                                        {k: v for k, v in metrics.items() if isinstance(v, (int, float))}, extra)
            action = (f"registered v{version.version}: champion when the run is published"
                      + (f" (current champion v{before.version})" if before else ""))
        tracked.set_tag("domret.champion_version", version.version)
        tracked.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        with atomic_artifact_dir(artifacts.path(), "champion_release") as pending:
            write_json(pending.path / "release.json", {
                "action": action, "champion_version": version.version,
                "previous_champion_version": before.version if before else None,
                # what publication promotes, and the champion the gate judged against (it refuses
                # to promote if another run's champion replaced that one meanwhile)
                "registered_version": None if version is before else version.version,
                "gated_against_version": report["inputs"].get("champion_version"),
                "serving_config": {"path": serving_config.path, "sha256": serving_config.sha256},
                "evaluation_report": {"path": evaluation_report.path, "sha256": evaluation_report.sha256},
                "gate": release["gate"],
            })
        from ..core.release.comparison import interval_text  # here: loading the definitions stays light

        rows = [[r["metric"], r["reference"], r["challenger"], interval_text(r), r["margin"], "pass" if r["passed"] else "FAIL"]
                for r in release["gate"]["rows"]]
        return artifact_output(pending.ref, tracked, {
            "action": action,
            "champion_version": version.version,
            "gate": dg.MetadataValue.md(markdown_table(["metric", release["gate"]["reference"], "challenger",
                                                          "difference [interval]", "margin", "verdict"], rows)),
        })
