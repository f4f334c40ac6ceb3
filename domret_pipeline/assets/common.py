"""What every asset does at the end: record where its artifact is and what it hashes to."""

from pathlib import Path

import dagster as dg

from ..core.artifacts import ArtifactRef
from ..core.evaluation.report import markdown_image, markdown_table
from ..resources import TrackedRun

ARTIFACT_IO = "artifact_io_manager"


def artifact_output(ref: ArtifactRef, tracked: TrackedRun, metadata: dict) -> dg.Output:
    """An Output carrying the reference, a DataVersion from the content hash and UI metadata."""
    tracked.set_tag("domret.data_version", ref.sha256)
    tracked.set_tag("domret.artifact_path", ref.path)
    full = {
        "artifact_path": dg.MetadataValue.path(ref.path),
        "content_sha256": ref.sha256,
        **metadata,
    }
    if tracked.url:
        full["mlflow_run"] = dg.MetadataValue.url(tracked.url)
    return dg.Output(ref, data_version=dg.DataVersion(ref.sha256[:32]), metadata=full)


def issues_table(issues, limit: int = 20) -> dg.MetadataValue:
    rows = [[i.file, i.line, i.row_id or "", i.reason] for i in issues[:limit]]
    more = f"\n\n… and {len(issues) - limit} more" if len(issues) > limit else ""
    return dg.MetadataValue.md(markdown_table(["file", "line", "id", "reason"], rows) + more if rows else "none")


def precision_table_md(choice) -> str:
    """The parity check of a :class:`PrecisionChoice` as a Markdown table for the UI."""
    head = f"**{choice.precision}** ({choice.reason})"
    if not choice.trials:
        return head
    return head + "\n\n" + markdown_table(
        ["precision", "status", "dev nDCG@10", "loss vs fp32", f"agreement mean ({choice.agreement})", "agreement min",
         "seconds", "speed-up", "reason"], choice.table())


def precision_metrics(choice) -> dict:
    """MLflow metrics of a parity check: per precision, its dev nDCG@10 and speed-up."""
    out = {}
    for trial in choice.trials:
        if trial.ndcg is not None:
            out[f"precision_{trial.precision}_dev_ndcg@10"] = trial.ndcg
            out[f"precision_{trial.precision}_speedup"] = trial.speedup
    return out


def plot_metadata(artifact_dir: str | Path, plots: dict[str, Path]) -> dict[str, dg.MetadataValue]:
    """Plots shown in the asset's metadata: Markdown with the PNG embedded as data, because a
    path (MetadataValue.path) shows only text, naming a file on whichever machine ran the step.
    The plots were drawn in the staging folder; they are read, by name, from the artifact's
    final folder."""
    return {key: dg.MetadataValue.md(markdown_image(key, Path(artifact_dir) / path.name)) for key, path in plots.items()}
