"""Pseudo-queries as training queries: mined like the labeled ones, then made into training rows.

A pair (``core/weak/pseudo_queries.py``) is a query whose one relevant document is its own
(``pair.doc_id``): mining's labeled-positive filter then removes every chunk of that document,
so no part of the text the query was cut from becomes its negative. Its positive, which the
margin rule (TopK-PercPos) measures candidates against:

- ``pair_chunk``: the chunk the pair came from (inverse cloze, title). For inverse cloze that
  chunk still holds the query sentence, so the positive scores high and the margin lets through
  what scores below ``max_positive_ratio`` of a near-verbatim match;
- for a crop (a span of the document, no chunk): the labeled rule (``positives.py``): the
  document's single chunk, else the chunk the mining retriever scores highest for the query
  (``best_match``).

Everything else is ``mine()`` with the labeled queries' ``MiningSettings``, BM25 candidates
and cross-encoder check (feedback labels name labeled queries only); the query id of a mined
pseudo row is the pair's id.

A training row is ``(pair.query, pair.passage(with_title), negatives)``: the pair's own positive
text (the chunk with the sentence cut out, the crop), never the whole chunk, which for inverse
cloze holds the query verbatim and would teach string matching.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..data.chunking import Chunk, passage_text
from ..weak.pseudo_queries import PseudoPair
from .bi_encoder_data import TrainSplit, encoded_split
from .mining import CrossScorer, MinedQuery, MiningResult, MiningSettings
from .positives import positive_chunks

PAIR_CHUNK = "pair_chunk"  # the positive rule of a pair that names its chunk


def sample_pairs(pairs: Sequence[PseudoPair], max_queries: int, seed: int) -> list[PseudoPair]:
    """At most ``max_queries`` pairs (0: none), a seeded sample kept in the pairs' order."""
    if max_queries < 0:
        raise ValueError("pseudo_max_queries must be 0 (mine none) or more")
    if len(pairs) <= max_queries:
        return list(pairs)
    keep = set(random.Random(seed).sample(range(len(pairs)), max_queries))
    return [p for i, p in enumerate(pairs) if i in keep]


def pseudo_split(pairs: Sequence[PseudoPair], chunks: list[Chunk], index, encoder) -> TrainSplit:
    """The pairs as a mining split: queries encoded by the mining retriever's encoder, each with
    its own document as the one relevant document and its positive as the module says."""
    qrels = {p.pair_id: {p.doc_id: 1} for p in pairs}
    crops = {p.pair_id: qrels[p.pair_id] for p in pairs if p.chunk_id is None}

    def choose(score):
        best = positive_chunks(crops, chunks, [], score) if crops else {}
        return {p.pair_id: [(p.chunk_id, PAIR_CHUNK)] if p.chunk_id else best.get(p.pair_id, []) for p in pairs}

    return encoded_split([p.pair_id for p in pairs], [p.query for p in pairs], qrels, chunks, index, encoder, choose)


def mine_pseudo(pairs: Sequence[PseudoPair], chunks: list[Chunk], index, encoder, settings: MiningSettings,
                bm25=None, bm25_visible=None, cross_scorer: CrossScorer | None = None) -> MiningResult:
    """Hard negatives for ``pairs`` (already sampled): :func:`pseudo_split`, BM25's candidates
    when ``settings.use_bm25`` (``bm25`` and its visibility mask given), then ``mine()``.
    ``cross_scorer`` must know the pairs' ids as query ids."""
    split = pseudo_split(pairs, chunks, index, encoder)
    hits = bm25.search([p.query for p in pairs], settings.range_max, bm25_visible) if settings.use_bm25 and bm25 else None
    return split.mine(settings, hits, None, cross_scorer)


def build_pseudo_rows(mined: Sequence[MinedQuery], pairs_by_id: dict[str, PseudoPair], chunks_by_id: dict[str, Chunk],
                      with_title: bool) -> list[tuple[str, str, list[str]]]:
    """One row per mined pair with negatives: (query, the pair's passage, negatives' texts),
    passages rendered as the serving index renders them (``with_title``)."""
    rows = []
    for item in mined:
        if not item.negatives:
            continue
        pair = pairs_by_id[item.query_id]
        rows.append((pair.query, pair.passage(with_title),
                     [passage_text(chunks_by_id[n["chunk_id"]], with_title) for n in item.negatives]))
    return rows
