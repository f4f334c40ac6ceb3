"""The evaluation report: the base dense retriever and BM25 on the frozen split."""


import dagster as dg

from ..config import EvaluationConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.labels import LabeledQueries
from ..core.report import to_html, to_markdown
from ..core.serialization import read_chunks, write_jsonl
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output

REPORT_VERSION = "1"


@dg.asset(
    group_name="evaluation",
    code_version=REPORT_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Recall@k, MRR@10 and nDCG@10 (pytrec_eval) of the dense retriever and BM25 on the frozen "
        "split, with per-query values and query latency. Markdown here; JSON, HTML and per-query "
        "figures as artifacts and in MLflow."
    ),
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    faiss_index: ArtifactRef,
    bm25_index: ArtifactRef,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.bm25 import BM25Index
    from ..core.dense_index import DenseIndex
    from ..core.encoder import load_encoder, model_fingerprint, set_offline
    from ..core.evaluation import Retrievers, evaluate_retrieval

    with mlflow.run(context, REPORT_VERSION) as tracked:
        inputs = {
            "faiss_index": faiss_index.sha256,
            "bm25_index": bm25_index.sha256,
            "labeled_queries": labeled_queries.sha256,
            "corpus_chunks": corpus_chunks.sha256,
        }
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        manifest = read_json(f"{faiss_index.path}/manifest.json")
        if manifest["corpus_chunks"] != corpus_chunks.sha256:
            raise ValueError("faiss_index was built from other chunks than corpus_chunks: re-materialize faiss_index")
        set_offline(True)
        # Queries must be encoded by the very model that built the index.
        if model_fingerprint(manifest["encoder_path"]) != manifest["encoder_sha256"]:
            raise ValueError(f"the encoder at {manifest['encoder_path']} changed since the index was built")
        encoder = load_encoder(manifest["encoder_path"], manifest["max_seq_length"])
        retrievers = Retrievers(
            dense=DenseIndex.load(faiss_index.path), encoder=encoder, bm25=BM25Index.load(bm25_index.path),
            encoder_name=manifest["encoder"], index_type=manifest["index_type"],
        )
        labels = LabeledQueries.load(labeled_queries.path)
        chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
        report, per_query = evaluate_retrieval(
            labels, config.split, chunks, retrievers, tuple(config.k_values), config.latency_queries
        )
        report["inputs"] = inputs
        markdown = to_markdown(report)
        with atomic_artifact_dir(artifacts.path(), "evaluation_report") as pending:
            write_json(pending.path / "report.json", report)
            (pending.path / "report.md").write_text(markdown + "\n", encoding="utf-8")
            (pending.path / "report.html").write_text(to_html(report), encoding="utf-8")
            write_jsonl(pending.path / "per_query.jsonl", (
                {"system": system, "query_id": q, **values}
                for system, rows in per_query.items() for q, values in sorted(rows.items())
            ))
        for system, values in report["systems"].items():
            tracked.log_metrics({f"{system}.{k}": v for k, v in values["metrics"].items()})
        for system, values in report["latency"].items():
            tracked.log_metrics({f"{system}.latency_{k}": v for k, v in values.items() if k != "n"})
        for name in ("report.json", "report.md", "report.html", "per_query.jsonl"):
            tracked.log_artifact(f"{pending.ref.path}/{name}", "evaluation_report")
        dense, bm25 = report["systems"]["dense"]["metrics"], report["systems"]["bm25"]["metrics"]
        return artifact_output(pending.ref, tracked, {
            "report": dg.MetadataValue.md(markdown),
            "report_html": dg.MetadataValue.path(f"{pending.ref.path}/report.html"),
            "dense_ndcg@10": dg.MetadataValue.float(dense["ndcg@10"]),
            "bm25_ndcg@10": dg.MetadataValue.float(bm25["ndcg@10"]),
            "dense_recall@100": dg.MetadataValue.float(dense.get("recall@100", float("nan"))),
            "queries": dg.MetadataValue.int(report["info"]["n_queries"]),
        })
