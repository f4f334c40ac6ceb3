"""Rendering an evaluation report (a plain dict) as Markdown and as a self-contained HTML page."""

from __future__ import annotations

import html

METRIC_COLUMNS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def retrieval_rows(report: dict) -> tuple[list[str], list[list[object]]]:
    headers = ["system", *METRIC_COLUMNS, "queries"]
    rows = [
        [name, *(system["metrics"].get(m, float("nan")) for m in METRIC_COLUMNS), system["n_queries"]]
        for name, system in report["systems"].items()
    ]
    return headers, rows


def latency_rows(report: dict) -> tuple[list[str], list[list[object]]]:
    headers = ["system", "p50 ms", "p95 ms", "p99 ms", "mean ms", "queries timed"]
    rows = [
        [name, lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], lat["mean_ms"], lat["n"]]
        for name, lat in report.get("latency", {}).items()
    ]
    return headers, rows


def to_markdown(report: dict) -> str:
    info = report["info"]
    parts = [
        f"## Retrieval on the frozen `{info['split']}` split",
        f"{info['n_queries']} labeled queries, {info['n_documents']} documents in {info['n_chunks']} chunks; "
        f"dense encoder `{info['encoder']}`, FAISS `{info['index_type']}` index. Chunk hits are aggregated "
        "to documents by their best chunk (max), so figures compare with BEIR.",
        markdown_table(*retrieval_rows(report)),
    ]
    if report.get("latency"):
        parts += ["### Query latency (one query at a time, on this machine)", markdown_table(*latency_rows(report))]
    if info.get("n_without_evidence"):
        parts.append(
            f"{info['n_without_evidence']} of these queries have relevant documents but no evidence "
            "sentences: the right end-to-end answer for them is to abstain."
        )
    return "\n\n".join(parts)


def _html_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: dict) -> str:
    info = report["info"]
    sections = [
        f"<h1>domret evaluation report</h1><p>Frozen split <code>{html.escape(info['split'])}</code>: "
        f"{info['n_queries']} queries, {info['n_documents']} documents, {info['n_chunks']} chunks. "
        f"Encoder <code>{html.escape(info['encoder'])}</code>, index <code>{html.escape(info['index_type'])}</code>.</p>",
        "<h2>Retrieval</h2>" + _html_table(*retrieval_rows(report)),
    ]
    if report.get("latency"):
        sections.append("<h2>Query latency</h2>" + _html_table(*latency_rows(report)))
    inputs = "".join(
        f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(str(v))}</code></td></tr>" for k, v in report.get("inputs", {}).items()
    )
    sections.append(f"<h2>Inputs (lineage)</h2><table>{inputs}</table>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
        "th{background:#f3f3f3}code{font-size:.9em}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>domret report</title><style>{style}</style></head><body>{''.join(sections)}</body></html>"
