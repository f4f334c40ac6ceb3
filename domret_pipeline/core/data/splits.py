"""Deterministic train/dev/test assignment from a stable hash of the query id.

The split of a query depends only on its id and the salt, never on which other queries are
present or in which order they come, so adding labels later does not move old queries
between splits: the test split stays a frozen evaluation set.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "dev", "test")


def split_of(query_id: str, dev_fraction: float = 0.2, test_fraction: float = 0.2, salt: str = "domret") -> str:
    if not (0 <= dev_fraction and 0 <= test_fraction and dev_fraction + test_fraction < 1):
        raise ValueError("dev_fraction and test_fraction must be >= 0 and sum to less than 1")
    digest = hashlib.sha256(f"{salt}:{query_id}".encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if position < test_fraction:
        return "test"
    if position < test_fraction + dev_fraction:
        return "dev"
    return "train"


def assign_splits(query_ids, dev_fraction: float = 0.2, test_fraction: float = 0.2, salt: str = "domret") -> dict[str, str]:
    return {qid: split_of(qid, dev_fraction, test_fraction, salt) for qid in query_ids}
