import random
from collections import Counter

import pytest

from domret_pipeline.core.data.splits import assign_splits, split_of


def test_split_depends_only_on_id_and_salt():
    ids = [f"query-{i}" for i in range(500)]
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    full = assign_splits(ids)
    assert assign_splits(shuffled) == full
    # adding new labels never moves existing queries between splits
    grown = assign_splits(ids + [f"new-{i}" for i in range(200)])
    assert {q: grown[q] for q in ids} == full


def test_split_is_pinned_across_releases():
    # Changing these values changes every user's frozen test set: treat it as a breaking change.
    assert [split_of(q) for q in ["q1", "q2", "q3", "42", "slo-checkout-api-1"]] == ['train', 'dev', 'train', 'test', 'train']


def test_fractions_are_respected_roughly():
    counts = Counter(assign_splits([str(i) for i in range(10_000)], 0.2, 0.1).values())
    assert abs(counts["test"] / 10_000 - 0.1) < 0.015
    assert abs(counts["dev"] / 10_000 - 0.2) < 0.015


def test_salt_redraws_and_bad_fractions_fail():
    ids = [str(i) for i in range(200)]
    assert assign_splits(ids, salt="a") != assign_splits(ids, salt="b")
    with pytest.raises(ValueError):
        split_of("q", 0.6, 0.5)
