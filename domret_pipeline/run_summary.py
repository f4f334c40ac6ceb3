"""What `domret` says at the end of a run, for a person: the failed step, the file and line
at fault where there is one, and what to do; the quarantine counts of a run that set rows
aside. Stack traces stay in the Dagster event log (and on the terminal with ``--verbose``):
70 lines of frames in front of the one line that matters hid it.
"""

from __future__ import annotations

import re

from .core.errors import QUARANTINE_HINT

# "path/to/file.jsonl:12" as RowIssue and the loaders write it; the first one is the place to look.
_FILE_LINE = re.compile(r"(?P<file>[^\s'\"()]+):(?P<line>\d+)\b")

CHECK_ADVICE = {
    "frozen_split_is_clean": "drop those training queries with drop_train_repeats_of_frozen_test: true under "
                             "ops.labeled_queries.config, or fix the labels",
    "chunk_spans_match_documents": "the chunker broke its own invariant: report it with the corpus that caused it",
    "index_matches_chunks": "rebuild the index from these chunks (domret run --select 'base_faiss_index+')",
    "served_not_below_first_stage_on_dev": "the serving bundle was edited or built wrong: rebuild serving_config",
    "release_gate": "the challenger was not promoted; the champion is unchanged",
}


def _root_error(error):
    while error.cause is not None:  # the user's error, not Dagster's wrappers around it
        error = error.cause
    return error


def _advice(step: str, error) -> str:
    name = error.cls_name or ""
    message = error.message or ""
    if name == "InputDataError":
        return f"fix the rows listed above, or set on_bad_rows: quarantine under ops.{step}.config to set them aside"
    if "has not been materialized yet" in message:
        return "materialize the upstream assets first (domret run without --select)"
    if name == "FileNotFoundError":
        return f"check the path under ops.{step}.config in your run config"
    if name in ("ValueError", "TypeError") and "config" in message:
        return f"check ops.{step}.config in your run config"
    return "rerun with --verbose for the stack trace (also in the Dagster event log: dagster dev, Runs)"


def failed_checks(result) -> list:
    """Failed blocking (ERROR severity) check evaluations of a run."""
    return [e.event_specific_data for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
            and e.event_specific_data.severity.value == "ERROR"]


def failure_lines(result) -> list[str]:
    """Every failed step and blocking check with its message, then one ``domret:`` summary
    naming the first failed step, its file:line when the message has one, and what to do."""
    lines: list[str] = []
    first: tuple[str, str, str] | None = None  # step, where, advice
    checks = failed_checks(result)
    for evaluation in checks:
        detail = evaluation.description or ", ".join(f"{k}={getattr(v, 'value', v)}" for k, v in evaluation.metadata.items())
        lines.append(f"domret: check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed: {detail}")
        if first is None:
            first = (evaluation.asset_key.to_user_string(), "",
                     CHECK_ADVICE.get(evaluation.check_name, "see the check's metadata in the Dagster UI"))
    for event in result.all_events:
        if not (event.is_step_failure and event.step_key):
            continue
        error = _root_error(event.event_specific_data.error)
        if error.cls_name == "DagsterAssetCheckFailedError":
            continue  # a blocking check failed: reported above, with what it found
        message = (error.message or error.cls_name or "").strip()
        # "pkg.module.InputDataError: 2 invalid rows" -> "2 invalid rows": the class path is noise here
        message = re.sub(rf"^[\w.]*\b{re.escape(error.cls_name or '')}: ", "", message)
        head, *rest = message.splitlines() or [""]
        lines.append(f"domret: step {event.step_key} failed: {head}")
        lines.extend(line for line in rest if line != QUARANTINE_HINT)  # the summary says what to do
        if first is None or first[1] == "":
            found = _FILE_LINE.search(message)
            where = f" at {found.group('file')}:{found.group('line')}" if found else ""
            if first is None or where:
                first = (event.step_key, where, _advice(event.step_key, error))
    step, where, advice = first or ("?", "", "rerun with --verbose to see what happened")
    lines.append(f"domret: run {result.run_id} failed in step {step}{where}: {advice}. Earlier artifacts are untouched.")
    return lines


def quarantine_lines(result) -> list[str]:
    """One line with the rows each asset of the run set aside (``on_bad_rows: quarantine``)."""
    counts = []
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        value = materialization.metadata.get("quarantined_rows")
        if value is not None and value.value:
            counts.append(f"{materialization.asset_key.to_user_string()} {value.value}")
    if not counts:
        return []
    return [f"quarantined rows: {', '.join(counts)} (file, line and reason of each: the asset metadata in the "
            "Dagster UI, and quarantine.jsonl in its artifact folder)"]


def run_artifact(result, asset: str) -> str | None:
    """The artifact folder ``asset`` materialized in this run (None if it did not)."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset:
            return materialization.metadata["artifact_path"].value
    return None


def crash_line(command: str, error: BaseException) -> str:
    """One line for an unexpected error outside a run step (the trace: ``--verbose``)."""
    first = (str(error).strip().splitlines() or [""])[0]
    return f"domret: {command} failed: {type(error).__name__}: {first} (rerun with --verbose for the stack trace)"
