"""The evaluation report: BM25, the base and the fine-tuned dense retriever on the frozen split."""

from pathlib import Path

import dagster as dg

from ..config import EvaluationConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, write_json
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import read_chunks, write_jsonl
from ..core.evaluation.report import to_html, to_markdown
from ..core.manifests import DenseIndexManifest, read_manifest
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, plot_metadata

REPORT_VERSION = "12"  # 12: +llm serving families, the rewrite endpoint's calls; 11: the training choices made on dev; 10: rewritten (+prf) serving families and the rewrite's latency; 9: the injection probe section; 8: every system runs as the evaluation principal
BASE, TUNED = "dense_base", "dense_tuned"


@dg.asset(
    group_name="evaluation",
    code_version=REPORT_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "BM25, the base and the fine-tuned dense retriever side by side on the frozen split: "
        "nDCG@10, MRR@10, Recall@10/100 (pytrec_eval), paired significance tests, the hard-negative "
        "slice and per-slice figures, embedding-space diagnostics with plots, and query latency. "
        "Then the serving configurations (dense, hybrid, dense+rerank, hybrid+rerank at their dev-chosen "
        "settings, and the served one) with per-stage latency p50/p95/p99 and the reranker's share. "
        "Markdown here; JSON, a self-contained HTML page and per-query figures as artifacts and in MLflow."
    ),
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    base_faiss_index: ArtifactRef,
    faiss_index: ArtifactRef,
    bm25_index: ArtifactRef,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    serving_config: ArtifactRef,
    corpus_documents: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from dataclasses import replace

    from ..core.answers.extractive import AbstentionSettings, AnswerSettings, encoder_scorer
    from ..core.artifacts import read_json
    from ..core.data.serialization import read_documents
    from ..core.evaluation.answers import RememberedSearch, calibrate
    from ..core.evaluation.diagnostics import report_plots
    from ..core.evaluation.retrievers import DenseSystem, evaluate_retrieval
    from ..core.release.comparison import EndToEndSystem, evaluate_release, gate_summary
    from ..core.release.gate import missing_blocking_slices
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.retrieval.encoder import set_offline
    from ..core.evaluation.training_choices import training_choices
    from ..core.serving.bundle import open_bundle
    from ..core.serving.dev_choice import best_per_family, evaluate_serving
    from ..core.serving.search import SearchPipeline, ServingConfig

    from ..core.retrieval.access import Principal

    set_offline(True)
    gate_settings = config.gate_settings()  # a bad level or resample count fails here, not after the evaluation
    principal = Principal.of(config.principal)  # every system below searches and answers as it
    with mlflow.run(context, REPORT_VERSION) as tracked:
        inputs = {"base_faiss_index": base_faiss_index.sha256, "faiss_index": faiss_index.sha256,
                  "bm25_index": bm25_index.sha256, "labeled_queries": labeled_queries.sha256,
                  "corpus_chunks": corpus_chunks.sha256, "serving_config": serving_config.sha256}
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        serving = read_json(f"{serving_config.path}/serving.json")
        for name, ref in (("faiss_index", faiss_index), ("bm25_index", bm25_index), ("corpus_chunks", corpus_chunks)):
            if serving["artifacts"][name]["sha256"] != ref.sha256:
                raise ValueError(f"serving_config was chosen with another {name}: re-materialize serving_config")
        # The challenger bundle holds the tuned index, its encoder, BM25 and the reranker (each
        # verified by hash): open it once and reuse its models for every section below.
        challenger = open_bundle(serving_config.path, load_all=True)
        challenger.pipeline.principal = principal
        systems, with_title = [], {}
        for name, ref in ((BASE, base_faiss_index), (TUNED, faiss_index)):
            if name == TUNED:
                index, encoder, manifest = challenger.index, challenger.encoder, read_manifest(ref.path, DenseIndexManifest)
            else:
                index, encoder, manifest = open_with_encoder(Path(ref.path))
            if manifest.corpus_chunks != corpus_chunks.sha256:
                raise ValueError(f"{name} was built from other chunks than corpus_chunks: re-materialize it")
            systems.append(DenseSystem(name, index, encoder, manifest.encoder, manifest.index_type))
            with_title[name] = manifest.with_title  # passages as each index rendered them
        labels = LabeledQueries.load(labeled_queries.path)
        in_split = {labels.slices[q] for q in labels.qrels_for(config.split) if q in labels.slices}
        missing = missing_blocking_slices(gate_settings, in_split)
        if missing:  # a misspelt slice would block nothing: refuse before the long evaluation
            raise ValueError(f"blocking_slices {missing} name no slice of the {config.split} split "
                             f"(its slices: {', '.join(sorted(in_split)) or 'none'})")
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        bm25 = BM25Index.load(Path(bm25_index.path))
        report, per_query, arrays = evaluate_retrieval(
            labels, config.split, chunks, systems, bm25, tuple(config.k_values), config.latency_queries,
            principal=principal,
        )
        report["info"]["principal"] = principal.as_list()
        documents = {d.doc_id: d for d in read_documents(f"{corpus_documents.path}/documents.jsonl")}
        # judgements on documents the principal may not read: its figures count them as misses
        report["info"]["judgements_not_readable"] = sum(not principal.may_read(documents[d].groups)
                                                        for r in labels.qrels_for(config.split).values() for d in r)
        reranker_ref = serving["artifacts"]["reranker_adapter"]
        # The reranker variants (precision, token limit) the report reads: each family's
        # dev-chosen configuration, the served one, and the default for the full-pipeline timing.
        dev_rows = serving["dev"]["table"]
        families = best_per_family({r["config"]: r["ndcg@10"] for r in dev_rows},
                                   [ServingConfig.from_dict(r["settings"]) for r in dev_rows])
        served = ServingConfig.from_dict(serving["config"])
        variants = {c.variant() for c in [*families.values(), served] if c.rerank} | {served.variant()}
        reranker = challenger.rerankers(variants) if challenger.reranker is not None else None
        report["serving"], serving_per_query = evaluate_serving(
            labels.qrels_for(config.split), labels.queries, chunks, systems[1].index, systems[1].encoder, bm25, reranker,
            serving, config.latency_queries, with_title[TUNED], principal=principal, expander=challenger.expander,
        )
        if challenger.expander is not None:  # what the llm rewrite's endpoint was asked here, and how often it failed
            report["serving"]["rewrite_endpoint"] = challenger.expander.record()
        per_query.update({f"pipeline:{name}": rows for name, rows in serving_per_query.items()})
        inputs["reranker_adapter"] = reranker_ref["sha256"]

        # End to end: the base model, the champion (when one is registered) and this run's
        # challenger, answering the same frozen queries with citations.
        settings = AnswerSettings.from_bundle(serving)

        generator = None
        if config.generator == "openai":
            import os

            from ..core.answers.generator import OpenAICompatibleGenerator

            if not (config.generator_base_url and config.generator_model):
                raise ValueError("generator 'openai' needs generator_base_url and generator_model")
            generator = OpenAICompatibleGenerator(config.generator_base_url, config.generator_model,
                                                  os.environ.get(config.generator_api_key_env, ""))

        def end_to_end(name, opened, label="", pipeline=None):
            return EndToEndSystem(name, pipeline or opened.pipeline, opened.documents or documents, opened.scorer(),
                                  AnswerSettings.from_bundle(opened.bundle), label, generator)

        # the challenger's searches, answered by its scorer and by the bi-encoder: searched once
        challenger_searches = RememberedSearch(challenger.pipeline)

        # The bi-encoder's answer settings (a fixed count of sentences) as serving_config tried them.
        encoder_tried = serving["answer"].get("scorers_tried", {}).get("encoder", {})
        fixed = replace(settings, max_sentences=encoder_tried.get("max_sentences", settings.max_sentences),
                        sentence_threshold=float("-inf"))
        base_pipeline = SearchPipeline(chunks, systems[0].index, systems[0].encoder, ServingConfig("dense", depth=100),
                                       bm25, None, with_title[BASE], principal=principal)
        base_scorer = encoder_scorer(systems[0].encoder)
        # the base model's threshold is calibrated for the same target as the challenger's
        base_threshold, _ = calibrate(base_pipeline, labels, "dev", documents, base_scorer, fixed,
                                      AbstentionSettings.from_bundle(serving))
        e2e = {
            "base": EndToEndSystem("base", base_pipeline, documents, base_scorer, replace(fixed, threshold=base_threshold),
                                   "dense (base encoder)", generator),
            "challenger": end_to_end("challenger", challenger, pipeline=challenger_searches),
        }
        if serving["answer"].get("scorer", "encoder") != "encoder" and "threshold" in encoder_tried and generator is None:
            # the same searches answered with bi-encoder sentence scores: what the served scorer changed
            e2e["challenger_encoder"] = EndToEndSystem(
                "challenger_encoder", challenger_searches, challenger.documents or documents,
                challenger.scorer("encoder", encoder_tried.get("abstention_scorer")),
                replace(fixed, threshold=encoder_tried["threshold"]), "challenger, bi-encoder sentence scores")
        registry = mlflow.registry()
        champion = registry.champion() if registry else None
        if champion is not None:
            ArtifactRef(champion.serving_config["path"], champion.serving_config["sha256"]).verify()
            opened = open_bundle(champion.serving_config["path"], load_all=True)
            opened.pipeline.principal = principal
            e2e["champion"] = end_to_end("champion", opened, f"v{champion.version}: {opened.pipeline.config.label()}")
            inputs["champion_version"] = champion.version
            inputs["champion_serving_config"] = champion.serving_config["sha256"]
        report["release"], release_per_query = evaluate_release(labels, config.split, e2e, gate_settings,
                                                                {"challenger": serving_per_query["served"],
                                                                 "challenger_encoder": serving_per_query["served"]})
        per_query.update({f"release:{name}": rows for name, rows in release_per_query.items()})
        if config.injection_probe:  # prompt injection, measured on a planted copy of the corpus
            from ..core.evaluation.injection import query_candidates
            from ..core.evaluation.injection_counts import extractive_step, generator_step, run_injection_probe

            report["injection"] = run_injection_probe(
                challenger.pipeline, challenger.documents or documents, query_candidates(labels, config.split),
                seed=config.injection_seed, per_kind=config.injection_probes_per_kind, passages=settings.passages,
                extractive=extractive_step(challenger.scorer(), settings),
                generator=None if generator is None else generator_step(generator, settings.passages))
        inputs["corpus_documents"] = corpus_documents.sha256
        report["training_choices"] = training_choices(serving)
        report["inputs"] = inputs
        markdown = to_markdown(report)
        with atomic_artifact_dir(artifacts.path(), "evaluation_report") as pending:
            plots = report_plots(pending.path, arrays, report["release"].get("curves", {}), config.split)
            for name, answers in report["release"].pop("answers", {}).items():
                write_jsonl(pending.path / f"answers_{name}.jsonl", ({"query_id": q, **a} for q, a in sorted(answers.items())))
            write_json(pending.path / "report.json", report)
            (pending.path / "report.md").write_text(markdown + "\n", encoding="utf-8")
            (pending.path / "report.html").write_text(to_html(report, plots), encoding="utf-8")
            write_jsonl(pending.path / "per_query.jsonl", (
                {"system": system, "query_id": q, **values}
                for system, rows in per_query.items() for q, values in sorted(rows.items())
            ))
        final = Path(pending.ref.path)
        for system, values in report["systems"].items():
            tracked.log_metrics({f"{system}.{k}": v for k, v in values["metrics"].items()})
        for row in report["release"]["gate"]["rows"]:  # the gate's bounds, to follow them across runs
            tracked.log_metrics({f"gate.{row['metric']}.{k}": row[k] for k in ("delta", "ci_low", "ci_high") if k in row})
        for system, values in report["latency"].items():
            tracked.log_metrics({f"{system}.latency_{k}": v for k, v in values.items() if k != "n"})
        for name, row in report["serving"]["rows"].items():
            tracked.log_metrics({f"pipeline.{name}.{k}": v for k, v in row["metrics"].items()})
        for setup, values in report["serving"]["latency"].items():
            for stage, lat in values["stages"].items():
                tracked.log_metrics({f"latency.{setup}.{stage}.{k}": v for k, v in lat.items() if k != "n"})
        for path, values in report.get("injection", {}).get("paths", {}).items():
            tracked.log_metrics({f"injection.{path}.{k}": v for k, v in values["total"].items()})
        for system, values in report["diagnostics"].items():
            tracked.log_metrics({f"{system}.uniformity": values["uniformity"],
                                 f"{system}.positive_minus_negative": values["positive_minus_negative"]})
        for file in sorted(final.iterdir()):
            tracked.log_artifact(file, "evaluation_report")
        base, tuned = report["systems"][BASE]["metrics"], report["systems"][TUNED]["metrics"]
        test = report["significance"][TUNED]["ndcg@10"]
        return artifact_output(pending.ref, tracked, {
            "report": dg.MetadataValue.md(markdown),
            "report_html": dg.MetadataValue.path(str(final / "report.html")),
            "base_ndcg@10": dg.MetadataValue.float(base["ndcg@10"]),
            "tuned_ndcg@10": dg.MetadataValue.float(tuned["ndcg@10"]),
            "tuned_minus_base_ndcg@10": dg.MetadataValue.float(tuned["ndcg@10"] - base["ndcg@10"]),
            "p_value_ndcg@10": dg.MetadataValue.float(test["p_randomization"]),
            "bm25_ndcg@10": dg.MetadataValue.float(report["systems"]["bm25"]["metrics"]["ndcg@10"]),
            "hard_negative_slice_queries": dg.MetadataValue.int(report["slices"].get("hard_negative", {}).get("n_queries", 0)),
            "queries": dg.MetadataValue.int(report["info"]["n_queries"]),
            "served": report["serving"]["served"],
            "release_gate": dg.MetadataValue.md(gate_summary(report["release"])),
            "gate_passed": dg.MetadataValue.bool(report["release"]["gate"]["passed"]),
            "served_ndcg@10": dg.MetadataValue.float(report["serving"]["rows"]["served"]["metrics"]["ndcg@10"]),
            **plot_metadata(final, {path.stem: path for path in plots.values()}),
        })
