"""Asset checks: invariants a downstream step relies on, and warnings a person should see."""


from collections import Counter

import dagster as dg

from .assets.corpus import corpus_chunks
from .assets.evaluation import evaluation_report
from .assets.indexes import faiss_index
from .assets.labels import labeled_queries
from .core.artifacts import ArtifactRef, read_json
from .core.dense_index import DenseIndex
from .core.labels import LabeledQueries
from .core.serialization import read_chunks, read_documents


@dg.asset_check(
    asset=corpus_chunks,
    additional_ins={"corpus_documents": dg.AssetIn("corpus_documents")},
    blocking=True,
    description="Every chunk's text is exactly its document's [start, end) span, ids are unique, and every document has a chunk.",
)
def chunk_spans_match_documents(corpus_chunks: ArtifactRef, corpus_documents: ArtifactRef) -> dg.AssetCheckResult:
    documents = {d.doc_id: d for d in read_documents(f"{corpus_documents.path}/documents.jsonl")}
    chunks = read_chunks(f"{corpus_chunks.path}/chunks.jsonl")
    bad_spans = [c.chunk_id for c in chunks if documents[c.doc_id].text[c.start : c.end] != c.text]
    duplicate_ids = [i for i, n in Counter(c.chunk_id for c in chunks).items() if n > 1]
    uncovered = sorted(set(documents) - {c.doc_id for c in chunks})
    return dg.AssetCheckResult(
        passed=not (bad_spans or duplicate_ids or uncovered),
        metadata={
            "chunks_with_wrong_span": len(bad_spans),
            "duplicate_chunk_ids": len(duplicate_ids),
            "documents_without_chunk": len(uncovered),
            "examples": ", ".join((bad_spans + duplicate_ids + uncovered)[:10]) or "none",
        },
    )


@dg.asset_check(
    asset=faiss_index,
    additional_ins={"corpus_chunks": dg.AssetIn("corpus_chunks")},
    blocking=True,
    description="The index holds one vector per chunk, its id map lists the chunks in order, and it was built from these chunks.",
)
def index_matches_chunks(faiss_index: ArtifactRef, corpus_chunks: ArtifactRef) -> dg.AssetCheckResult:
    index = DenseIndex.load(faiss_index.path)
    chunk_ids = [c.chunk_id for c in read_chunks(f"{corpus_chunks.path}/chunks.jsonl")]
    manifest = read_json(f"{faiss_index.path}/manifest.json")
    same_source = manifest["corpus_chunks"] == corpus_chunks.sha256
    return dg.AssetCheckResult(
        passed=index.index.ntotal == len(chunk_ids) and index.chunk_ids == chunk_ids and same_source,
        metadata={"vectors": int(index.index.ntotal), "chunks": len(chunk_ids), "built_from_these_chunks": same_source},
    )


@dg.asset_check(
    asset=labeled_queries,
    blocking=True,
    description="The frozen test split is not empty, and no test query repeats the text of a train or dev query (leakage).",
)
def frozen_split_is_clean(labeled_queries: ArtifactRef) -> dg.AssetCheckResult:
    labels = LabeledQueries.load(labeled_queries.path)
    test = labels.qrels_for("test")
    seen = {" ".join(labels.queries[q].lower().split()) for q in labels.ids("train") + labels.ids("dev")}
    leaked = [q for q in labels.ids("test") if " ".join(labels.queries[q].lower().split()) in seen]
    return dg.AssetCheckResult(
        passed=bool(test) and not leaked,
        metadata={"judged_test_queries": len(test), "test_queries_also_in_training": len(leaked),
                  "examples": ", ".join(leaked[:10]) or "none"},
    )


@dg.asset_check(
    asset=evaluation_report,
    description=(
        "Warns when the dense retriever ranks worse than the BM25 baseline on the frozen split "
        "(nDCG@10): a sign the encoder is not calibrated to this corpus yet."
    ),
)
def dense_not_below_bm25(evaluation_report: ArtifactRef) -> dg.AssetCheckResult:
    report = read_json(f"{evaluation_report.path}/report.json")
    dense = report["systems"]["dense"]["metrics"]["ndcg@10"]
    bm25 = report["systems"]["bm25"]["metrics"]["ndcg@10"]
    return dg.AssetCheckResult(
        passed=dense >= bm25,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"dense_ndcg@10": dense, "bm25_ndcg@10": bm25, "difference": dense - bm25},
    )


ALL_CHECKS = [chunk_spans_match_documents, index_matches_chunks, frozen_split_is_clean, dense_not_below_bm25]
