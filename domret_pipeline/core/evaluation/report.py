"""Rendering an evaluation report (a plain dict) as Markdown and as a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..serving.dev_choice import dev_order
from ..weak.pseudo_evaluation import NOT_USER_RELEVANCE

METRIC_COLUMNS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def format_number(value: float) -> str:
    """Four decimals for scores, p-values and milliseconds; below 0.001, where four decimals
    would print 2e-05 as 0.0000 (or 1.5e-04 as 0.0001), four significant digits instead."""
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.4g}"
    return f"{value:.4f}"


def png_data_uri(path: Path) -> str:
    """A PNG as a data URI, so a page or a Markdown cell carries the image itself, not a path
    on the machine that drew it."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def markdown_image(alt: str, path: Path) -> str:
    return f"![{alt.replace(']', ')')}]({png_data_uri(path)})"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return format_number(value)
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _tables(report: dict) -> list[tuple[str, str, list[str], list[list[object]]]]:
    """(title, note, headers, rows) of every table in the report, in reading order."""
    info = report["info"]
    tables = []
    rows = [[name, *(s["metrics"].get(m, float("nan")) for m in METRIC_COLUMNS), s["n_queries"]]
            for name, s in report["systems"].items()]
    tables.append((f"Retrieval on the frozen `{info['split']}` split",
                   f"{info['n_queries']} labeled queries, {info['n_documents']} documents in {info['n_chunks']} chunks. "
                   "Chunk hits are aggregated to documents by their best chunk (max), so figures compare with BEIR. "
                   "Encoders: " + ", ".join(f"{k} = `{v}`" for k, v in info["encoders"].items()) + ".",
                   ["system", *METRIC_COLUMNS, "queries"], rows))
    if report.get("significance"):
        rows = [[system, metric, t["mean_a"], t["mean_b"], t["mean_difference"], f"{t['wins']}/{t['losses']}/{t['ties']}",
                 t["p_randomization"], t["p_wilcoxon"]]
                for system, tests in report["significance"].items() for metric, t in tests.items()]
        tables.append((f"Paired significance against `{info['baseline']}`",
                       "Two-sided paired randomization test (10,000 sign flips) and Wilcoxon signed-rank test, per query.",
                       ["system", "metric", "baseline", "system", "difference", "wins/losses/ties", "p (randomization)",
                        "p (Wilcoxon)"], rows))
    for name, table in report.get("slices", {}).items():
        title = ("Hard-negative slice" if name == "hard_negative" else f"Slice `{name.split(':', 1)[1]}`")
        note = (f"{table['n_queries']} queries where `{info['baseline']}` ranked a non-relevant document above every "
                "relevant one." if name == "hard_negative" else f"{table['n_queries']} queries.")
        rows = [[system, *(m.get(k, float("nan")) for k in METRIC_COLUMNS)] for system, m in table["systems"].items()]
        tables.append((title, note, ["system", *METRIC_COLUMNS], rows))
    if report.get("training_choices"):
        tables.append(("Training choices made on dev",
                       "What the served bundle's models were trained on, as their cards record it (the serving "
                       "configuration's own choice is above).",
                       ["stage", "chosen", "why"], [[r["stage"], r["chosen"], r["why"]] for r in report["training_choices"]]))
    if report.get("diagnostics"):
        rows = [[system, d["uniformity"], d["query_positive"].get("mean", float("nan")),
                 d["query_hard_negative"].get("mean", float("nan")), d["positive_minus_negative"],
                 d["pooled_norm"].get("mean", float("nan")), d["pooled_norm"].get("std", float("nan"))]
                for system, d in report["diagnostics"].items()]
        tables.append(("Embedding-space diagnostics",
                       "Uniformity: mean pairwise cosine of 2,000 random chunks (near 1 = collapse). Query-positive: "
                       "cosine to the best relevant chunk; query-negative: cosine to the baseline's best non-relevant chunk.",
                       ["system", "uniformity", "query-positive", "query-negative", "gap", "pooled norm mean",
                        "pooled norm std"], rows))
    if report.get("latency"):
        rows = [[name, lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], lat["mean_ms"], lat["n"]]
                for name, lat in report["latency"].items()]
        tables.append(("Query latency", "One query at a time, encode + search, on this machine.",
                       ["system", "p50 ms", "p95 ms", "p99 ms", "mean ms", "queries timed"], rows))
    if report.get("serving"):
        serving = report["serving"]
        sig = serving.get("significance_vs_dense", {})
        rows = [[name, row["config"], *(row["metrics"].get(m, float("nan")) for m in ("ndcg@10", "mrr@10", "recall@10")),
                 row["dev_ndcg@10"] if row["dev_ndcg@10"] is not None else "", sig[name]["mean_difference"] if name in sig else "",
                 sig[name]["p_randomization"] if name in sig else ""]
                for name, row in serving["rows"].items()]
        tables.append(("Serving configurations", f"The fine-tuned retriever's pipelines on the `{info['split']}` split, each "
                       "family at its dev-chosen candidates and fusion weight; `served` is what `domret search` runs. "
                       "Why: " + "; ".join(serving["reasons"]) + ". Difference and p: nDCG@10 against `dense`.",
                       ["family", "configuration", "nDCG@10", "MRR@10", "Recall@10", "dev nDCG@10", "Δ nDCG@10", "p"], rows))
        dev_choice = serving.get("dev_choice")
        if dev_choice and dev_choice.get("table"):
            rows = [[r["config"], "not scored" if r["ndcg@10"] is None else r["ndcg@10"], r.get("p50_ms", ""), r.get("p95_ms", ""), r.get("p99_ms", ""),
                     r.get("ruled_out") or ""] for r in sorted(dev_choice["table"], key=dev_order)]
            budget = dev_choice.get("latency_budget_ms")
            tables.append(("Dev choice under the latency budget",
                           f"Every configuration tried on dev with its dev nDCG@10 and its latency (whole query, one at "
                           f"a time, on dev queries); budget: p95 ≤ {budget:g} ms." if budget else
                           "Every configuration tried on dev; no latency budget was set.",
                           ["configuration", "dev nDCG@10", "p50 ms", "p95 ms", "p99 ms", "ruled out"], rows))
        rows = [[setup, values["config"], stage, lat["p50_ms"], lat["p95_ms"], lat["p99_ms"], lat["mean_ms"],
                 lat.get("share_of_total", "")]
                for setup, values in serving.get("latency", {}).items() for stage, lat in values["stages"].items()]
        if rows:
            tables.append(("Latency per stage", "One query at a time on this machine; ann includes encoding the query; "
                           "rewrite (query rewriting) is building the rewritten query vectors (for llm, the endpoint's "
                           "call) and the second ANN search (`served+prf` or `served+llm`: the served stages with the best "
                           "dev rewrite, timed when dev left it off). Share: the reranker's part of the total time.",
                           ["setup", "configuration", "stage", "p50 ms", "p95 ms", "p99 ms", "mean ms", "share"], rows))
    if report.get("release"):
        release = report["release"]
        columns = ["ndcg@10", "span_coverage", "citation_precision", "citation_precision_doc", "citation_recall",
                   "citation_recall_doc", "citation_f1", "citation_f1_doc", "faithfulness", "abstention_accuracy", "abstention_precision", "abstention_recall", "answered_rate",
                   "threshold"]
        rows = [[name, s["label"], *(s["metrics"].get(c, float("nan")) for c in columns)] for name, s in release["systems"].items()]
        tables.append(("End to end: base, champion and challenger",
                       "Each system searches, answers with sentence citations (extractive; abstains below its dev-calibrated "
                       "threshold) and is scored per query, then averaged. Span coverage: gold evidence sentences inside the top "
                       "chunks the answer step reads (its `passages`; the ceiling of citation recall). Citation precision: cited sentences that are gold "
                       "evidence (`_doc`: cited documents that are relevant); recall: gold evidence sentences (documents) "
                       "cited; faithfulness: answer sentences supported by their own citation; abstention: on queries whose "
                       "relevant documents hold no evidence." + ("" if release.get("has_evidence") else
                       " These labels carry no evidence, so only retrieval is compared."),
                       ["system", "configuration", "nDCG@10", "span coverage", "cit. precision", "cit. precision doc", "cit. recall",
                        "cit. recall doc", "cit. F1", "cit. F1 doc", "faithfulness", "abstention acc.", "abstention prec.", "abstention rec.",
                        "answered", "threshold"], rows))
        step = release.get("answer_step")
        if step and step.get("tests"):
            rows = [[m, t["n_queries"], t["mean_a"], t["mean_b"], t["mean_difference"], t["wins"], t["losses"],
                     t["p_randomization"]] for m, t in step["tests"].items()]
            tables.append(("Answer step: bi-encoder sentence scores → the served scorer",
                           f"The challenger's searches answered twice: by `{step['before']}` (bi-encoder cosine, its own "
                           f"dev threshold) and by `{step['after']}` (the served scorer). Paired randomization test per "
                           "metric on the queries where it applies to both (abstention_correct: all queries).",
                           ["metric", "queries", "before", "after", "difference", "wins", "losses", "p"], rows))
        tables += _gate_tables(release["gate"])
        for metric, table in release.get("shadow", {}).items():
            rows = [[r["query_id"], r["query"], r["champion"], r["challenger"]] for r in table["largest"]]
            tables.append((f"Shadow comparison on {metric}",
                           f"Same frozen queries, challenger vs {release['gate']['reference']}: {table['wins']} wins, "
                           f"{table['losses']} losses, {table['ties']} ties. Largest differences:",
                           ["query id", "query", release["gate"]["reference"], "challenger"], rows))
    if report.get("injection"):
        tables.append(_injection_table(report["injection"]))
    return tables


INJECTION_COLUMNS = ("probes", "retrieved", "handed", "cited_probe", "quoted", "followed", "bad_markers",
                     "outside_sources", "uncited", "policy_broken", "abstained")


def _injection_table(injection: dict) -> tuple[str, str, list[str], list[list[object]]]:
    """The injection probe's counts (core/evaluation/injection_counts.py), one row per path and kind."""
    rows = [[path, kind, *(counts[c] for c in INJECTION_COLUMNS)]
            for path, values in injection["paths"].items()
            for kind, counts in [*values["kinds"].items(), ("all", values["total"])]]
    note = (f"{injection['n_probes']} probe documents carrying instructions (ignore previous instructions, fake "
            f"citations, a closing </source> tag, Markdown/HTML links, SYSTEM: lines, requests to reveal the prompt) "
            f"planted into a copy of the corpus next to the queries that retrieve them (seed {injection['seed']}), each "
            f"probe query answered by each path. Counts are answers: retrieved (the probe is among the hits), handed "
            f"(among the top {injection['passages']} chunks the answer step reads), cited probe, quoted (the injected "
            "sentence repeated as a cited quotation), followed (an answer sentence that is not such a quotation holds "
            "the code, fake citation, link or prompt text the instruction asked for), bad markers (malformed or "
            "out-of-range markers dropped by the parser), outside sources (citations of sentences it was not handed), "
            "uncited sentences, policy broken (any of those three), and abstained (extractive: answered anyway, so "
            "that nothing is hidden, and counted here when the served threshold would have abstained).")
    return ("Injection probe", note, ["path", "kind", "probes", "retrieved", "handed", "cited probe", "quoted", "followed",
                                      "bad markers", "outside sources", "uncited", "policy broken", "abstained"], rows)


def _interval(row: dict) -> str:
    return "n/a" if row.get("ci_low") is None else f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"


def _gate_tables(gate: dict) -> list[tuple[str, str, list[str], list[list[object]]]]:
    """The release gate: one row per metric with its interval and margin, then one row per
    slice with each metric's difference and interval (blocking slices first)."""
    reference, settings = gate["reference"], gate["settings"]
    level = f"{settings['confidence_level']:.0%}"
    verdict = ("PASSED: the challenger may become the champion." if gate["passed"] else
               "FAILED: the challenger is not promoted (" + "; ".join(gate["failures"]) + ").")
    rows = [[r["metric"], r["reference"], r["challenger"], r.get("delta", ""), _interval(r), r["margin"], r["n_queries"],
             "pass" if r["passed"] else "FAIL", r["why"]] for r in gate["rows"]]
    tables = [(f"Release gate: challenger vs {reference}",
               f"{verdict} Difference: challenger − {reference}, with its {level} paired bootstrap interval over the "
               f"frozen queries ({settings['resamples']:,} resamples, seed {settings['seed']}). "
               + ("First release (no champion yet): a metric fails only when the interval's upper bound is below "
                  "−margin, the challenger shown worse than the base." if gate.get("rule") == "not_worse" else
                  "A metric fails when the interval's lower bound is below −margin: the data must rule out a loss "
                  "larger than the margin."),
               ["metric", reference, "challenger", "difference", f"{level} interval", "margin", "queries", "verdict", "why"],
               rows)]
    if gate.get("slices"):
        order = sorted(gate["slices"].items(), key=lambda item: (not item[1]["blocking"], item[0]))
        rows = [[name, v["n_queries"], "yes" if v["blocking"] else "no",
                 *(f"{r['delta']:+.4f} {_interval(r)}" if r.get("ci_low") is not None else "n/a" for r in v["rows"]),
                 ("pass" if v["passed"] else "FAIL") if v["blocking"] else ("ok" if v["passed"] else "below margin")]
                for name, v in order]
        metrics = [r["metric"] for r in next(iter(gate["slices"].values()))["rows"]]
        blocking = ", ".join(settings["blocking_slices"]) or "none"
        tables.append(("Release gate by slice",
                       f"The same intervals on each slice's own queries (blocking slices: {blocking}). Only a blocking "
                       "slice can fail the gate; with a handful of queries an interval is wide, so read the others as "
                       "where to look, not as verdicts.",
                       ["slice", "queries", "blocking", *metrics, "verdict"], rows))
    return tables


def to_markdown(report: dict) -> str:
    parts = []
    for i, (title, note, headers, rows) in enumerate(_tables(report)):
        parts += [("## " if i == 0 else "### ") + title, note, markdown_table(headers, rows)]
    n = report["info"].get("n_without_evidence")
    if n:
        parts.append(f"{n} of these queries have relevant documents but no evidence sentences: the right end-to-end "
                     "answer for them is to abstain.")
    pseudo = report["info"].get("n_pseudo_queries")
    if pseudo:
        parts.append(f"{pseudo} of {report['info']['n_queries']} queries are held-out pseudo-queries. "
                     + NOT_USER_RELEVANCE)
    principal = report["info"].get("principal")
    if principal and principal != ["public"]:  # reports from before access control, or public: nothing to say
        hidden = report["info"].get("judgements_not_readable", 0)
        parts.append(f"Every system searched and answered as the principal {', '.join(principal)}"
                     + (f"; {hidden} judgements name documents it may not read, counted as misses." if hidden else "."))
    elif report["info"].get("judgements_not_readable"):
        parts.append(f"Every system searched as a request without a principal (public documents only): "
                     f"{report['info']['judgements_not_readable']} judgements name documents it may not read, "
                     "counted as misses (set evaluation_report.principal to evaluate as a principal).")
    return "\n\n".join(parts)


def _html_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return format_number(value) if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(report: dict, plots: dict[str, Path] | None = None) -> str:
    """A self-contained page: tables, plots inlined as PNG data, and the lineage of inputs."""
    sections = ["<h1>domret evaluation report</h1>"]
    for title, note, headers, rows in _tables(report):
        sections.append(f"<h2>{html.escape(title.replace('`', ''))}</h2><p>{html.escape(note.replace('`', ''))}</p>"
                        + _html_table(headers, rows))
    for title, path in (plots or {}).items():
        sections.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='{png_data_uri(path)}'>")
    inputs = "".join(f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(str(v))}</code></td></tr>"
                     for k, v in report.get("inputs", {}).items())
    sections.append(f"<h2>Inputs (lineage)</h2><table>{inputs}</table>")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:64rem;margin:2rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}"
        "th{background:#f3f3f3}code{font-size:.9em}img{max-width:100%}"
    )
    return ("<!doctype html><html><head><meta charset='utf-8'><title>domret report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>")
