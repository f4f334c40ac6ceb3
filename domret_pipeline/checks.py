"""Asset checks: invariants a downstream step relies on, and warnings a person should see."""


from collections import Counter

import dagster as dg

from .assets.answers import sentence_selector
from .assets.corpus import corpus_chunks
from .assets.evaluation import evaluation_report
from .assets.indexes import base_faiss_index, faiss_index
from .assets.labels import labeled_queries
from .assets.reranking import reranker_adapter, serving_config
from .assets.training import embedding_checkpoint
from .core.artifacts import ArtifactRef, read_json
from .core.data.labels import LabeledQueries, test_text_repeats
from .core.data.serialization import read_chunks, read_documents
from .core.evaluation.report import markdown_table
from .core.manifests import DenseIndexManifest, read_manifest
from .core.retrieval.dense_index import DenseIndex


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


def _index_matches_chunks(index_ref: ArtifactRef, chunks_ref: ArtifactRef) -> dg.AssetCheckResult:
    index = DenseIndex.load(index_ref.path)
    chunk_ids = [c.chunk_id for c in read_chunks(f"{chunks_ref.path}/chunks.jsonl")]
    same_source = read_manifest(index_ref.path, DenseIndexManifest).corpus_chunks == chunks_ref.sha256
    return dg.AssetCheckResult(
        passed=index.index.ntotal == len(chunk_ids) and index.chunk_ids == chunk_ids and same_source,
        metadata={"vectors": int(index.index.ntotal), "chunks": len(chunk_ids), "built_from_these_chunks": same_source},
    )


_INDEX_CHECK = "The index holds one vector per chunk, its id map lists the chunks in order, and it was built from these chunks."


@dg.asset_check(asset=base_faiss_index, additional_ins={"corpus_chunks": dg.AssetIn("corpus_chunks")}, blocking=True,
                description=_INDEX_CHECK, name="index_matches_chunks")
def base_index_matches_chunks(base_faiss_index: ArtifactRef, corpus_chunks: ArtifactRef) -> dg.AssetCheckResult:
    return _index_matches_chunks(base_faiss_index, corpus_chunks)


@dg.asset_check(asset=faiss_index, additional_ins={"corpus_chunks": dg.AssetIn("corpus_chunks")}, blocking=True,
                description=_INDEX_CHECK, name="index_matches_chunks")
def tuned_index_matches_chunks(faiss_index: ArtifactRef, corpus_chunks: ArtifactRef) -> dg.AssetCheckResult:
    return _index_matches_chunks(faiss_index, corpus_chunks)


# A corpus whose chunks average a cosine above this looks alike to the model: collapsed.
MAX_UNIFORMITY = 0.9
# Fine-tuning usually spreads the space; a jump this large towards uniform is suspicious.
MAX_UNIFORMITY_RISE = 0.15


@dg.asset_check(
    asset=faiss_index,
    description=(
        f"Warns when the fine-tuned space is too uniform: mean pairwise cosine of 2,000 chunks above "
        f"{MAX_UNIFORMITY}, or more than {MAX_UNIFORMITY_RISE} above the base model's (collapse)."
    ),
)
def embedding_space_not_collapsed(faiss_index: ArtifactRef) -> dg.AssetCheckResult:
    diagnostics = read_manifest(faiss_index.path, DenseIndexManifest).diagnostics
    tuned, base = diagnostics["uniformity"], diagnostics.get("uniformity_base", float("nan"))
    return dg.AssetCheckResult(
        passed=tuned <= MAX_UNIFORMITY and not (tuned - base > MAX_UNIFORMITY_RISE),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"uniformity_tuned": tuned, "uniformity_base": base, "rise": tuned - base},
    )


def _warn_when_below(scores: dict[str, float], score: str, than: tuple[str, ...], strictly_above: bool = False,
                     **metadata) -> dg.AssetCheckResult:
    """A warning (never blocking) that passes when ``scores[score]`` is not below (with
    ``strictly_above``: is above) each score named in ``than``. Its metadata: every score, then ``metadata``."""
    mine = scores[score]
    return dg.AssetCheckResult(
        passed=all(mine > scores[other] if strictly_above else mine >= scores[other] for other in than),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={**scores, **metadata},
    )


@dg.asset_check(
    asset=embedding_checkpoint,
    description="Warns when the fine-tuned model's dev nDCG@10 is below the base model's (over-fitting or a bad recipe).",
)
def tuned_not_below_base_on_dev(embedding_checkpoint: ArtifactRef) -> dg.AssetCheckResult:
    card = read_json(f"{embedding_checkpoint.path}/card.json")
    scores = {key: card[key] for key in ("dev_ndcg@10_base", "dev_ndcg@10")}
    return _warn_when_below(scores, "dev_ndcg@10", ("dev_ndcg@10_base",),
                            gain=card["dev_ndcg@10"] - card["dev_ndcg@10_base"])


@dg.asset_check(
    asset=labeled_queries,
    blocking=True,
    description="The frozen test split is not empty, and no test query repeats the text of a train or dev query (leakage).",
)
def frozen_split_is_clean(labeled_queries: ArtifactRef) -> dg.AssetCheckResult:
    labels = LabeledQueries.load(labeled_queries.path)
    test = labels.qrels_for("test")
    repeats = test_text_repeats(labels)
    leaked = sorted({test_id for _, test_id in repeats})
    # The message names each repeat (ids and text): the person fixing the labels needs them,
    # not a count (issue 12: "without naming the claims").
    shown = "; ".join(f"{test_id} (test) = {other} ({labels.splits[other]}): {labels.queries[test_id][:80]!r}"
                      for other, test_id in repeats[:10])
    more = f"; and {len(repeats) - 10} more" if len(repeats) > 10 else ""
    problems = ([] if test else ["the test split has no judged query"]) + (
        [f"{len(leaked)} test quer{'y repeats' if len(leaked) == 1 else 'ies repeat'} the text of a training query: "
         f"{shown}{more}"] if repeats else [])
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems) or None,
        metadata={"judged_test_queries": len(test), "test_queries_also_in_training": len(leaked),
                  "examples": ", ".join(leaked[:10]) or "none",
                  "repeats": dg.MetadataValue.md(markdown_table(
                      ["test query", "training query", "split", "text"],
                      [[t, o, labels.splits[o], labels.queries[t][:90]] for o, t in repeats[:50]]) if repeats else "none")},
    )


@dg.asset_check(
    asset=evaluation_report,
    description=(
        "Warns when the fine-tuned dense retriever ranks below the base model or below BM25 on the "
        "frozen split (nDCG@10)."
    ),
)
def tuned_beats_baselines(evaluation_report: ArtifactRef) -> dg.AssetCheckResult:
    report = read_json(f"{evaluation_report.path}/report.json")
    scores = {f"{name}_ndcg@10": s["metrics"]["ndcg@10"] for name, s in report["systems"].items()}
    return _warn_when_below(scores, "dense_tuned_ndcg@10", ("dense_base_ndcg@10", "bm25_ndcg@10"))


@dg.asset_check(
    asset=reranker_adapter,
    description=(
        "Warns when the trained reranker, alone, orders the tuned retriever's dev candidates worse than "
        "the retriever did (reranking nDCG@10). Fusion may still make it useful: serving_config decides."
    ),
)
def reranker_beats_first_stage_on_dev(reranker_adapter: ArtifactRef) -> dg.AssetCheckResult:
    card = read_json(f"{reranker_adapter.path}/card.json")
    scores = {key: card[key] for key in ("dev_first_stage_ndcg@10", "dev_ndcg@10")}
    return _warn_when_below(scores, "dev_ndcg@10", ("dev_first_stage_ndcg@10",), strictly_above=True,
                            best_epoch=card["best_epoch"])


@dg.asset_check(
    asset=sentence_selector,
    description=(
        "Warns when the trained sentence selector ranks each dev query's sentences (evidence first) no "
        "better than it did before training; passes, saying why, when the labels had no evidence to train it."
    ),
)
def selector_learned_on_dev(sentence_selector: ArtifactRef) -> dg.AssetCheckResult:
    card = read_json(f"{sentence_selector.path}/card.json")
    if not card["trained"]:
        return dg.AssetCheckResult(passed=True, metadata={"trained": False, "reason": card["reason"]})
    scores = {key: card[key] for key in ("dev_sentence_ndcg@10_start", "dev_sentence_ndcg@10")}
    return _warn_when_below(scores, "dev_sentence_ndcg@10", ("dev_sentence_ndcg@10_start",), strictly_above=True,
                            best_epoch=card["best_epoch"], dev_sentence_f1=card["dev_sentence_f1"])


@dg.asset_check(
    asset=serving_config,
    blocking=True,
    description=(
        "The served configuration is the best of dense and hybrid, or beats it on dev nDCG@10: a "
        "reranker that is worse than the first stage on dev never serves (guards hand-edited bundles)."
    ),
)
def served_not_below_first_stage_on_dev(serving_config: ArtifactRef) -> dg.AssetCheckResult:
    bundle = read_json(f"{serving_config.path}/serving.json")
    scores = {row["config"]: row["ndcg@10"] for row in bundle["dev"]["table"]}
    first_stage = max(scores["dense"], scores["hybrid"])
    served = scores[bundle["label"]]
    return dg.AssetCheckResult(
        passed=served >= first_stage or bundle["label"] == "dense",
        metadata={"served": bundle["label"], "served_dev_ndcg@10": served, "dense_dev_ndcg@10": scores["dense"],
                  "hybrid_dev_ndcg@10": scores["hybrid"], "reasons": "; ".join(bundle["config"]["reasons"])},
    )


@dg.asset_check(
    asset=evaluation_report,
    blocking=True,
    description=(
        "The release gate: fails when the paired bootstrap interval of challenger minus champion (the base "
        "model when there is no champion yet) over the frozen queries does not rule out a loss beyond the "
        "non-inferiority margin on nDCG@10, citation precision, citation recall, faithfulness or abstention "
        "accuracy, on the whole split or on a blocking slice. champion_release runs only after it passes."
    ),
)
def release_gate(evaluation_report: ArtifactRef) -> dg.AssetCheckResult:
    release = read_json(f"{evaluation_report.path}/report.json")["release"]
    failed = [r for r in release["gate"]["rows"] if not r["passed"]]
    return dg.AssetCheckResult(
        passed=release["gate"]["passed"],
        metadata={
            "reference": release["gate"]["reference"],
            "failed_metrics": ", ".join(r["metric"] for r in failed) or "none",
            "failures": "; ".join(release["gate"].get("failures", [])) or "none",
            **{f"{r['metric']}_delta": float(r["delta"]) for r in release["gate"]["rows"] if r.get("delta") is not None},
            **{f"{r['metric']}_ci_low": float(r["ci_low"]) for r in release["gate"]["rows"] if r.get("ci_low") is not None},
        },
    )


ALL_CHECKS = [
    chunk_spans_match_documents, base_index_matches_chunks, tuned_index_matches_chunks, frozen_split_is_clean,
    embedding_space_not_collapsed, tuned_not_below_base_on_dev, tuned_beats_baselines,
    reranker_beats_first_stage_on_dev, selector_learned_on_dev, served_not_below_first_stage_on_dev, release_gate,
]
