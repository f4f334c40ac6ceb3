"""Active learning: which queries to label next.

For a pool of queries (labeled train/dev queries and the queries users sent as feedback;
never the frozen test split), the serving pipeline is run (its stages once per batch) and
three signals of uncertainty are read:

- **abstained**: the answer step found no sentence above its threshold;
- **disagreement**: 1 - Jaccard overlap of the dense and BM25 top-10 documents (the two
  retrievers see the query differently);
- **margin**: the gap between the first and second result's final score, in units of the
  top-10 scores' standard deviation (a small gap: the system barely preferred its answer).

Queries are ordered abstained first, then by disagreement (high first), then margin (small
first), and each row says which signals put it there.
"""

from __future__ import annotations

import numpy as np

from ..answers.extractive import extractive_answer


def _top_docs(hits: list[tuple[str, float]], chunk_to_doc: dict[str, str], k: int = 10) -> list[str]:
    docs: list[str] = []
    for chunk_id, _ in hits:
        doc = chunk_to_doc[chunk_id]
        if doc not in docs:
            docs.append(doc)
        if len(docs) == k:
            break
    return docs


DISAGREEMENT_CHUNKS = 40  # the top chunks of each retriever whose top-10 documents are compared


def labeling_queue(opened, queries: dict[str, str], documents, threshold: float, answer_settings,
                   top_k: int = 50, batch_size: int = 32) -> list[dict]:
    """``opened``: an :class:`~.serving.bundle.OpenBundle` (the champion's, or the latest) opened with
    BM25 loaded. One run of its pipeline's stages per batch gives both the served results and
    the dense and BM25 rankings whose disagreement is read."""
    pipeline = opened.pipeline
    chunk_to_doc = {c.chunk_id: c.doc_id for c in opened.chunks}
    scorer = opened.scorer()
    qids = sorted(queries)
    rows = []
    for start in range(0, len(qids), batch_size):
        batch = qids[start : start + batch_size]
        texts = [queries[q] for q in batch]
        # The depth search(texts, top_n=10) runs at, so the results are the served ones; BM25
        # runs even under a dense first stage (a served first stage always has the dense one).
        stages = pipeline.run_stages(texts, lexical=True, depth=max(pipeline.config.retrieval_depth(), 10))
        results = pipeline.results(stages, top_n=10)
        for qid, text, result, d_hits, b_hits in zip(batch, texts, results, stages.dense, stages.lexical):
            answer = extractive_answer(qid, text, result.hits, documents, scorer, answer_settings)
            score = answer.evidence_score
            abstained = score is None or score < threshold
            d_docs = set(_top_docs(d_hits[:DISAGREEMENT_CHUNKS], chunk_to_doc))
            b_docs = set(_top_docs(b_hits[:DISAGREEMENT_CHUNKS], chunk_to_doc))
            disagreement = 1.0 - len(d_docs & b_docs) / max(len(d_docs | b_docs), 1)
            finals = np.array([h.scores["final"] for h in result.hits])
            margin = float((finals[0] - finals[1]) / (finals.std() or 1.0)) if len(finals) > 1 else float("inf")
            rows.append({"query_id": qid, "query": text, "abstained": bool(abstained),
                         "evidence_score": score, "disagreement": disagreement, "margin": margin,
                         "top_documents": [h.doc_id for h in result.hits[:5]]})
    if rows:
        high_disagreement = np.quantile([r["disagreement"] for r in rows], 0.8)
        small_margin = np.quantile([r["margin"] for r in rows if np.isfinite(r["margin"])] or [0.0], 0.2)
        for r in rows:
            r["reasons"] = [name for name, hit in (("abstained", r["abstained"]),
                                                   ("dense/BM25 disagree", r["disagreement"] >= high_disagreement),
                                                   ("close top scores", r["margin"] <= small_margin)) if hit]
    rows.sort(key=lambda r: (not r["abstained"], -r["disagreement"], r["margin"], r["query_id"]))
    return rows[:top_k]
