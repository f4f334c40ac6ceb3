"""The text of an incident review (``domret incident``): four sections a reviewer reads in order.

1. what the request retrieved and cited, as the audit row recorded it (with the passages and
   sentences as the serving bundle's corpus has them);
2. the same request replayed now by the current and the previous champion, side by side with
   the recorded one, and what changed against each;
3. the lineage of the bundle that served: registry version -> Dagster run -> each artifact's
   materialization (code version, data version, content hash) and MLflow run;
4. what differs between that bundle's lineage and the champion's, and the causes: a corpus
   change, a label change, a model change or a serving settings change.

Kept apart from :mod:`.incident` (the data) so the data can be used without this layout, and
rendered from data only, so ``--json`` and the text never disagree.
"""

from __future__ import annotations


def _when(stamp: str) -> str:
    return stamp[:19].replace("T", " ") + "Z" if stamp else "?"


def _scores(scores: dict) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in scores.items())


def _snippet(text: str | None, width: int = 110) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _answer_cell(kind: str, abstained, citations) -> str:
    if kind != "answer":
        return "-"
    if abstained:
        return "abstained"
    keys = [f"{c['doc_id']}:{c['sentence']}" for c in citations or []]
    return "cited " + (", ".join(keys) if keys else "nothing")


def _retrieved(report) -> list[str]:
    r = report.record
    lines = ["", "1. Retrieved and cited (as recorded)"]
    for hit in r.hits:
        groups = "" if hit.get("groups") in (None, ["public"]) else f", groups {','.join(hit['groups'])}"
        lines.append(f"  {hit['rank']:>2}. {hit['chunk_id']}  ({hit['doc_id']}, chars {hit['start']}-{hit['end']}{groups})  "
                     f"{_scores(hit['scores'])}")
        if hit["chunk_id"] in report.served_texts:
            lines.append(f"      {_snippet(report.served_texts[hit['chunk_id']])}")
    if not r.hits:
        lines.append("  no hit")
    if r.kind == "answer":
        evidence = "none" if r.evidence_score is None else f"{r.evidence_score:.3f}"
        if r.abstained:
            lines.append(f"  answer: abstained (best evidence {evidence})")
        else:
            lines.append(f"  answer (best evidence {evidence}) cited:")
            for c in r.citations or []:
                key = f"{c['doc_id']}:{c['sentence']}"
                score = "" if c.get("score") is None else f" score {c['score']:.3f}"
                lines.append(f"    - {key}{score}: {_snippet(report.served_texts.get(key, '(text not on disk)'))}")
    return lines


def _replayed(report) -> list[str]:
    r = report.record
    lines = ["", f"2. Replayed now as {', '.join(r.principal or ['public'])}"]
    if not report.replays:
        return lines + ["  not replayed"]
    served_by = f"v{r.registry_version}" if r.registry_version else r.served_from
    columns = [(f"recorded ({served_by})", [h["chunk_id"] for h in r.hits], _answer_cell(r.kind, r.abstained, r.citations))]
    for replay in report.replays:
        if replay.error:
            columns.append((replay.label, [], f"not replayed: {replay.error}"))
        else:
            columns.append((replay.label, [h["chunk_id"] for h in replay.hits],
                            _answer_cell(replay.kind, replay.abstained, replay.citations)))
    width = max(18, *(len(c[0]) + 2 for c in columns), *(len(h) + 2 for c in columns for h in c[1]))
    depth = max(len(c[1]) for c in columns)
    lines.append("  rank   " + "".join(c[0].ljust(width) for c in columns).rstrip())
    for i in range(depth):
        lines.append(f"  {i + 1:>4}   " + "".join((c[1][i] if i < len(c[1]) else "-").ljust(width) for c in columns).rstrip())
    if r.kind == "answer":
        lines.append("  answer " + "".join(c[2].ljust(width) for c in columns).rstrip())
    for diff in report.diffs:
        changes = diff.lines()
        lines.append(f"  against {diff.label}: " + ("no change" if not changes else changes[0]))
        lines.extend(f"      {line}" for line in changes[1:])
    return lines


def _value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _node_lines(node, bundle_run: str | None) -> list[str]:
    m, f = node.materialization or {}, node.mlflow or {}
    run = m.get("run_id") or f.get("dagster_run_id") or "?"
    code = m.get("code_version") or f.get("code_version") or "?"
    lines = [f"  {node.name:<21} {node.sha256[:16]}  {code:<4}  {m.get('data_version') or '?':<32}  {run[:8]}"]
    if m.get("url") and run != bundle_run:  # made by an earlier run (this one read it from the published set)
        lines.append(f"      Dagster run {run}  {m['url']}")
    if f.get("run_id"):
        lines.append(f"      MLflow run {f['run_id']}  {f.get('url', '')}".rstrip())
    if node.error:
        lines.append(f"      {node.error}")
    details = ", ".join(f"{k} {_value(v)}" for k, v in node.summary.items() if v not in (None, "", {}))
    if details:
        lines.append(f"      {_snippet(details, 150)}")
    return lines


def _lineage(report) -> list[str]:
    lines = ["", "3. Lineage of the bundle that served"]
    reg, run = report.registry or {}, report.dagster or {}
    if reg.get("version"):
        aliases = f" ({', '.join(reg['aliases'])})" if reg.get("aliases") else ""
        lines.append(f"  registry: {reg.get('model')} v{reg['version']}{aliases}, release state "
                     f"{reg.get('release_state') or '?'}, feedback ids {reg.get('feedback_ids') or 'none'}")
        if reg.get("mlflow_run_id"):
            lines.append(f"  release MLflow run {reg['mlflow_run_id']}  {reg.get('mlflow_url', '')}".rstrip())
    else:
        lines.append("  registry: no registered version holds this bundle")
    if run.get("run_id"):
        status = f" {run['status']}" if run.get("status") else ""
        lines.append(f"  Dagster run {run['run_id']}{status} ({run.get('source', '')})  {run.get('url', '')}".rstrip())
    else:
        lines.append("  Dagster run: not found")
    lineage = report.lineage
    if lineage is None:
        return lines + ["  (no lineage: the row names no bundle)"]
    lines.append(f"  bundle {lineage.bundle_path}")
    lines.append(f"  {'asset':<21} {'content hash':<16}  {'code':<4}  {'data version':<32}  run")
    for node in lineage.ordered():
        lines.extend(_node_lines(node, run.get("run_id")))
    lines.extend(f"  conflict: {c}" for c in lineage.conflicts)
    return lines


def _differences(report) -> list[str]:
    lines = ["", "4. What differs from the bundle that served"]
    if not report.comparisons:
        return lines + ["  nothing to compare: the served bundle is the champion and there is no other"]
    for comparison in report.comparisons:
        lines.append(f"  served {comparison.served[:12]} -> {comparison.label} {comparison.other[:12]}:")
        for change in comparison.changes:
            mark = f"   <- {change.cause}" if change.cause else ""
            lines.append(f"    {change.name:<21} {change.explain()}{mark}")
        lines.append("    causes: " + (", ".join(comparison.causes) if comparison.causes else
                                      "none: every artifact of the lineage is the same"))
    return lines


def render(report) -> str:
    r = report.record
    who = ", ".join(r.principal) if r.principal is not None else "no principal recorded (replayed as public)"
    query = repr(r.query) if r.query is not None else f"sha256:{r.query_sha256[:16]} (text not kept)"
    served_by = f"champion v{r.registry_version}" if r.registry_version else r.served_from
    total = r.latency_ms.get("total")
    lines = [f"Incident review: audit row #{r.id} (request {r.request_id}), {r.kind}, {_when(r.created_at)}",
             f"  query: {query}", f"  as: {who}",
             f"  served by: {served_by}, bundle {(r.bundle_sha256 or '?')[:12]} ({r.serving})"
             + (f", {total:.0f} ms" if total is not None else "")]
    for section in (_retrieved, _replayed, _lineage, _differences):
        lines.extend(section(report))
    if report.notes:
        lines.extend(["", "Notes"] + [f"  - {n}" for n in report.notes])
    return "\n".join(lines)
