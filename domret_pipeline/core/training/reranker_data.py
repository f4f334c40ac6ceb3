"""Training and dev data for the reranker, from the deployed retriever's own candidates.

The reranker only ever sees what the first stage hands it, so it trains on that: for each
training query, the fine-tuned retriever's top ``candidates`` chunks, with the positive
chunks (the rule of :mod:`.positives`) against the candidates from non-relevant documents
(mined by :func:`.mining.mine` with the window starting at rank 0: the retriever's own
mistakes are the negatives worth learning). Dev samples are the dev queries' candidate
lists in retriever order, so dev reranking nDCG@10 measures exactly the serving task.

Pseudo-pairs (``pseudo_queries``) become examples the same way (:func:`pseudo_examples`): each
pair is a query whose one relevant document is its own, mined by the same :func:`.mining.mine`
with the same window, so no chunk of its document is a negative. Its positive is the pair's own
text (the chunk with the query sentence cut out, or the crop), never the whole chunk, which holds
the query verbatim and would teach the reranker to match copied text.

For distillation (``pretrain: distill``) each pseudo example also carries the first stage's own
scores as the teacher: the retriever's cosine of the query with the pair's passage and with each
mined negative, times :data:`TEACHER_SCALE`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..data.chunking import Chunk, passage_text
from ..weak.pseudo_queries import PseudoPair
from .mining import MiningResult, MiningSettings
from .reranker import DevSample, RerankExample

# Cosines live in [-1, 1] and the margins between candidates are a few hundredths; times 20 (the
# scale of the bi-encoder's MNRL training, so the logits its softmax read) they are margins a
# cross-encoder's logits can match under MarginMSE.
TEACHER_SCALE = 20.0


def rerank_examples(mined: MiningResult, queries: dict[str, str], chunks_by_id: dict[str, Chunk],
                    with_title: bool) -> list[RerankExample]:
    return [
        RerankExample(
            queries[q.query_id],
            [passage_text(chunks_by_id[c], with_title) for c, _, _ in q.positives],
            [passage_text(chunks_by_id[n["chunk_id"]], with_title) for n in q.negatives],
        )
        for q in mined.queries if q.positives and q.negatives
    ]


def dev_samples(qids: list[str], queries: dict[str, str], qrels: dict[str, dict[str, int]], chunks: list[Chunk],
                chunk_ids: list[str], chunk_vectors: np.ndarray, query_vectors: np.ndarray, candidates: int,
                with_title: bool) -> list[DevSample]:
    """Each dev query's top ``candidates`` chunks (exact scores) and every chunk of its
    relevant documents as the relevant passages."""
    by_id = {c.chunk_id: c for c in chunks}
    by_doc: dict[str, list[str]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c.chunk_id)
    samples = []
    for row, q in enumerate(qids):
        order = np.argsort(-(chunk_vectors @ query_vectors[row]), kind="stable")[:candidates]
        relevant = [c for d, rel in sorted(qrels.get(q, {}).items()) if rel > 0 for c in by_doc.get(d, [])]
        samples.append(DevSample(
            queries[q],
            [passage_text(by_id[chunk_ids[i]], with_title) for i in order],
            [passage_text(by_id[c], with_title) for c in relevant],
        ))
    return samples


def reranker_mining(candidates: int, num_negatives: int, max_positive_ratio: float | None) -> MiningSettings:
    """The reranker's own mining rule, for labeled queries and pseudo-pairs alike: its window
    from rank 0 (the retriever's own mistakes), no BM25 candidates, no random fill and no
    cross-encoder check: fixed choices of this stage, not hard_negatives' knobs."""
    ratio = max_positive_ratio if max_positive_ratio is not None else float("inf")
    return MiningSettings(range_min=0, range_max=candidates, max_positive_ratio=ratio, num_negatives=num_negatives,
                          use_bm25=False, fill_random=False, cross_encoder_candidates=0, cross_encoder_margin=0.0)


def prepare(labels, chunks: list[Chunk], index, encoder, candidates: int, num_negatives: int,
            max_positive_ratio: float | None, with_title: bool):
    """Training examples (train split) and dev samples (dev split) from a fine-tuned index and
    its encoder. Returns ``(examples, dev, mined)``; ``mined`` keeps the mining counts. Labels
    with no train query (zero-label mode) give no examples and say nothing: the caller decides
    whether pseudo-pairs can stand in."""
    from ..retrieval.dense_index import all_vectors
    from ..retrieval.encoder import encode
    from .mining import mine
    from .positives import positive_chunks

    vectors = all_vectors(index)
    position = {c: i for i, c in enumerate(index.chunk_ids)}
    chunk_to_doc = {c.chunk_id: c.doc_id for c in chunks}
    qrels = labels.qrels_for("train")
    train_ids = sorted(qrels)
    dev_qrels = labels.qrels_for("dev")
    dev_ids = sorted(dev_qrels)
    if not dev_ids:
        raise ValueError("the dev split has no labeled query: the reranker cannot be early-stopped or judged")
    examples, mined = [], MiningResult([], Counter(), [])
    if train_ids:
        train_vectors = encode(encoder, [labels.queries[q] for q in train_ids])
        qvec = dict(zip(train_ids, train_vectors))
        positives = positive_chunks(qrels, chunks, [e for e in labels.evidence if e.query_id in qrels],
                                    lambda q, ids: [float(vectors[position[c]] @ qvec[q]) for c in ids])
        mined = mine(train_ids, train_vectors, index.chunk_ids, vectors, chunk_to_doc, qrels, positives,
                     reranker_mining(candidates, num_negatives, max_positive_ratio))
        examples = rerank_examples(mined, labels.queries, {c.chunk_id: c for c in chunks}, with_title)
    dev = dev_samples(dev_ids, labels.queries, dev_qrels, chunks, index.chunk_ids, vectors,
                      encode(encoder, [labels.queries[q] for q in dev_ids]), candidates, with_title)
    return examples, dev, mined


def pseudo_examples(pairs: list[PseudoPair], chunks: list[Chunk], index, encoder, candidates: int,
                    num_negatives: int, max_positive_ratio: float | None, with_title: bool,
                    teacher: bool = False) -> tuple[list[RerankExample], MiningResult]:
    """Reranker examples of pseudo-pairs, mined like labeled queries (module docstring): the
    retriever's top ``candidates`` chunks for the pair's query, every chunk of its document
    removed; the positive is ``pair.passage(with_title)``. For the margin rule (off unless
    ``max_positive_ratio``), the pair's positive chunk is its own chunk or, for a crop (a span,
    no chunk), its document's chunk the retriever scores highest (the labeled ``best_match``
    rule). Pairs on documents outside ``chunks`` (unreadable) give no example. ``teacher``:
    attach the first stage's scores (module docstring) for distillation."""
    from .pseudo_pairs import mine_pseudo  # the bi-encoder's mining of the pairs, with this stage's rule

    known, documents = {c.chunk_id for c in chunks}, {c.doc_id for c in chunks}
    pairs = [p for p in pairs if p.chunk_id in known or (p.chunk_id is None and p.doc_id in documents)]
    if not pairs:
        return [], MiningResult([], Counter(), [])
    mined = mine_pseudo(pairs, chunks, index, encoder, reranker_mining(candidates, num_negatives, max_positive_ratio))
    by_pair = {p.pair_id: p for p in pairs}
    by_chunk = {c.chunk_id: c for c in chunks}
    rows = [q for q in mined.queries if q.negatives]
    examples = [RerankExample(by_pair[q.query_id].query, [by_pair[q.query_id].passage(with_title)],
                              [passage_text(by_chunk[n["chunk_id"]], with_title) for n in q.negatives])
                for q in rows]
    if teacher and rows:
        from ..retrieval.encoder import encode

        # the negatives' cosines are the mining's own; the passage is no chunk of the index
        query_vectors = encode(encoder, [e.query for e in examples])
        passage_vectors = encode(encoder, [e.positives[0] for e in examples])
        for example, q, qv, pv in zip(examples, rows, query_vectors, passage_vectors):
            example.teacher = [TEACHER_SCALE * float(qv @ pv)] + [TEACHER_SCALE * n["score"] for n in q.negatives]
    return examples, mined
