"""Hard-negative mining with false-negative control.

The same rules serve the labeled train queries and the pseudo-queries cut from the corpus
(``pseudo_pairs.py``: a pair's own document is its one relevant document). For each query, candidates come from the current retriever's ranking (dense and,
optionally, BM25) inside a rank window ``[range_min, range_max)``. Filters, in order:

1. **labeled positive**: every chunk of every document labeled relevant for the query is
   removed (not only the chosen positive chunk);
2. **margin** (NV-Retriever's TopK-PercPos): a candidate whose dense score exceeds
   ``max_positive_ratio`` times the score of the query's weakest positive is removed, since a
   passage scoring almost as high as a known answer is likely an unlabeled answer;
3. **cross-encoder** (optional, once a reranker exists): a cross-encoder reads the query with
   its positives and with its ``cross_encoder_candidates`` best survivors; a candidate it
   scores above the weakest positive minus ``cross_encoder_margin`` is removed. A bi-encoder
   scores query and passage apart and misses what a cross-encoder reading both catches.
   With the check on, only checked candidates can become negatives.

The best survivors by dense score become the negatives. Feedback labels marked "not
relevant" are confirmed negatives: they go first, regardless of window and margin. With
``fill_random``, a query left with no negative gets one random non-relevant chunk (source
``random``) so it still trains against in-batch negatives instead of being dropped; these
are counted apart and are not hard negatives.

Why not sentence-transformers' ``mine_hard_negatives``: it re-encodes the whole corpus
(minutes on CPU) although the base FAISS index already holds those vectors; it matches
positives by text, so other relevant documents of a multi-positive query could be mined as
negatives; and it has no notion of chunk ids or BM25 candidates. The rule it implements
(``relative_margin``) is the same margin as here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

_SCORE_BLOCK = 512  # queries scored against the chunks at once
# (query id, chunk ids) -> one cross-encoder relevance score per chunk, higher = more relevant
CrossScorer = Callable[[str, list[str]], Sequence[float]]


class NoNegativesError(ValueError):
    """The filters left no negative at all: training on this set would be meaningless."""


@dataclass
class MiningSettings:
    """The filters' settings. The knobs have no default here: their one definition is
    ``config.MiningConfig``, and ``MiningConfig.settings()`` builds this (test_settings pins
    it). ``seed`` (of ``fill_random``'s draw) is not a run-config knob and keeps its default."""

    range_min: int
    range_max: int
    max_positive_ratio: float
    num_negatives: int
    use_bm25: bool
    fill_random: bool
    cross_encoder_candidates: int
    cross_encoder_margin: float
    seed: int = 0


@dataclass
class MinedQuery:
    query_id: str
    positives: list[tuple[str, float, str]]  # (chunk_id, dense score, rule)
    negatives: list[dict] = field(default_factory=list)  # {chunk_id, score, source, rank}


@dataclass
class MiningResult:
    queries: list[MinedQuery]
    removed: Counter  # filter name -> candidates removed
    queries_without_negatives: list[str]
    cross_checked: int = 0  # candidates the cross-encoder read (0: check off)

    @property
    def n_negatives(self) -> int:
        return sum(len(q.negatives) for q in self.queries)


def mine(
    query_ids: list[str],
    query_vectors: np.ndarray,
    chunk_ids: list[str],
    chunk_vectors: np.ndarray,
    chunk_to_doc: dict[str, str],
    qrels: dict[str, dict[str, int]],
    positives: dict[str, list[tuple[str, str]]],
    settings: MiningSettings,
    bm25_hits: list[list[tuple[str, float]]] | None = None,
    confirmed_negatives: dict[str, list[str]] | None = None,
    cross_scorer: CrossScorer | None = None,
) -> MiningResult:
    """Mine negatives for each query. Raises :class:`NoNegativesError` when none survive."""
    if cross_scorer is not None and settings.cross_encoder_candidates < 1:
        raise ValueError("cross_encoder_candidates must be at least 1 when the cross-encoder check is on")
    if not 0 <= settings.range_min < settings.range_max:
        raise ValueError("need 0 <= range_min < range_max")
    if not settings.max_positive_ratio > 0:
        # Above 1 the margin lets through candidates that outscore a positive: the reranker's
        # training wants exactly those (the retriever's own mistakes); inf switches it off.
        raise ValueError("max_positive_ratio must be positive")
    position = {cid: i for i, cid in enumerate(chunk_ids)}
    scores_all = None
    removed: Counter = Counter()
    mined: list[MinedQuery] = []
    without: list[str] = []
    confirmed_negatives = confirmed_negatives or {}
    rng = np.random.default_rng(settings.seed)
    cross_checked = 0

    for row, qid in enumerate(query_ids):
        if row % _SCORE_BLOCK == 0:
            # Exact cosine scores (vectors are normalised), a block of queries at a time: all
            # of the pseudo-queries against every chunk at once would take gigabytes.
            scores_all = query_vectors[row:row + _SCORE_BLOCK] @ chunk_vectors.T
        scores = scores_all[row % _SCORE_BLOCK]
        relevant_docs = {d for d, rel in qrels.get(qid, {}).items() if rel > 0}
        pos = [(cid, float(scores[position[cid]]), rule) for cid, rule in positives.get(qid, []) if cid in position]
        if not pos:
            removed["query_without_positive"] += 1
            continue
        threshold = settings.max_positive_ratio * min(score for _, score, _ in pos)
        negatives: list[dict] = []
        seen: set[str] = set()
        for cid in confirmed_negatives.get(qid, []):
            if cid in position and chunk_to_doc[cid] not in relevant_docs and cid not in seen:
                negatives.append({"chunk_id": cid, "score": float(scores[position[cid]]), "source": "feedback", "rank": -1})
                seen.add(cid)
        order = np.argsort(-scores, kind="stable")[: settings.range_max]
        candidates = [(chunk_ids[i], rank, "dense") for rank, i in enumerate(order)]
        if settings.use_bm25 and bm25_hits is not None:
            candidates += [(cid, rank, "bm25") for rank, (cid, _) in enumerate(bm25_hits[row][: settings.range_max])]
        kept = []
        for cid, rank, source in candidates:
            if cid in seen:
                continue
            seen.add(cid)
            if rank < settings.range_min:
                removed[f"{source}_above_window"] += 1
            elif chunk_to_doc[cid] in relevant_docs:
                removed["labeled_positive"] += 1
            elif scores[position[cid]] > threshold:
                removed["margin"] += 1
            else:
                kept.append({"chunk_id": cid, "score": float(scores[position[cid]]), "source": source, "rank": rank})
        kept.sort(key=lambda n: -n["score"])
        if cross_scorer is not None and kept and len(negatives) < settings.num_negatives:
            cross_checked += min(len(kept), settings.cross_encoder_candidates)
            kept = _cross_check(qid, [cid for cid, _, _ in pos], kept, cross_scorer, settings, removed)
        negatives += kept[: max(settings.num_negatives - len(negatives), 0)]
        if not negatives:
            without.append(qid)
            if settings.fill_random:
                for i in rng.permutation(len(chunk_ids))[:50]:
                    cid = chunk_ids[int(i)]
                    if chunk_to_doc[cid] not in relevant_docs:
                        negatives.append({"chunk_id": cid, "score": float(scores[i]), "source": "random", "rank": -1})
                        break
        mined.append(MinedQuery(qid, pos, negatives))

    result = MiningResult(mined, removed, without, cross_checked)
    hard = sum(1 for q in mined for n in q.negatives if n["source"] != "random")
    if hard == 0:
        raise NoNegativesError(
            f"hard-negative mining kept no negative for any of {len(query_ids)} queries "
            f"(removed: {dict(removed)}); widen the window (range_min={settings.range_min}, "
            f"range_max={settings.range_max}) or raise max_positive_ratio={settings.max_positive_ratio}"
            + (f", or raise cross_encoder_margin={settings.cross_encoder_margin}" if cross_checked else "")
        )
    return result


def _cross_check(qid: str, positive_ids: list[str], kept: list[dict], cross_scorer: CrossScorer,
                 settings: MiningSettings, removed: Counter) -> list[dict]:
    """The candidates (best first) that the cross-encoder scores at or below the query's weakest
    positive minus the margin, each with its ``cross_score``; the others are counted removed."""
    checked = kept[: settings.cross_encoder_candidates]
    scores = [float(s) for s in cross_scorer(qid, positive_ids + [n["chunk_id"] for n in checked])]
    if len(scores) != len(positive_ids) + len(checked):
        raise ValueError(f"the cross-encoder returned {len(scores)} scores for {len(positive_ids) + len(checked)} pairs")
    floor = min(scores[: len(positive_ids)]) - settings.cross_encoder_margin
    survivors = []
    for negative, score in zip(checked, scores[len(positive_ids):]):
        if score > floor:
            removed["cross_encoder"] += 1
        else:
            survivors.append({**negative, "cross_score": score})
    return survivors


MINED_FILE = "mined.jsonl"
# The pseudo-queries' rows (query id = the pair's id), beside the labeled ones: the same rows,
# read and written by the same two functions. Artifacts from before pseudo-queries lack it.
PSEUDO_MINED_FILE = "mined_pseudo.jsonl"


def write_mined(folder, queries: list[MinedQuery], pseudo: bool = False) -> None:
    """``mined.jsonl`` (``mined_pseudo.jsonl`` with ``pseudo``) of a hard_negatives artifact:
    one row per query (its positives with the rule that chose them, its negatives with source
    and rank)."""
    from pathlib import Path

    from ..data.serialization import write_jsonl

    write_jsonl(Path(folder) / (PSEUDO_MINED_FILE if pseudo else MINED_FILE), (
        {"query_id": q.query_id, "positives": [{"chunk_id": c, "score": s, "rule": r} for c, s, r in q.positives],
         "negatives": q.negatives} for q in queries
    ))


def read_mined(folder, pseudo: bool = False) -> list[MinedQuery]:
    """The rows :func:`write_mined` wrote (no pseudo rows in an artifact from before them)."""
    from pathlib import Path

    from ..data.serialization import read_jsonl

    path = Path(folder) / (PSEUDO_MINED_FILE if pseudo else MINED_FILE)
    if pseudo and not path.exists():
        return []
    return [MinedQuery(r["query_id"], [(p["chunk_id"], p["score"], p["rule"]) for p in r["positives"]], r["negatives"])
            for r in read_jsonl(path)]
