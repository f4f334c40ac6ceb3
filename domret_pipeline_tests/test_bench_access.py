"""`domret bench access` re-groups a bundle's corpus at a selectivity: the share of documents a
request without a principal may read matches it, every hit is one it may read, and k hits
still come back."""

from types import SimpleNamespace

from domret_pipeline.cli.bench_access import _with_groups

from .test_access import TOP_N, build, corpus


def test_the_benchmark_regroups_documents_at_the_selectivity_and_still_returns_k(tmp_path):
    pipeline, chunks, _ = build(corpus(n_public=200, n_secret=0), "flat", tmp_path, first_stage="hybrid")
    opened = SimpleNamespace(chunks=chunks, encoder=pipeline.encoder, bm25=pipeline.bm25, pipeline=pipeline)
    everyone, share = _with_groups(opened, pipeline.index, 1.0, seed=0)
    assert share == 1.0 and everyone.restriction() is None  # the unfiltered path
    restricted, share = _with_groups(opened, pipeline.index, 0.1, seed=0)
    assert 0.03 < share < 0.2 and restricted.restriction() is not None
    for result in restricted.search(["salary band policy", "forklift speed"]):
        assert len(result.hits) == TOP_N and all(hit.groups == ("public",) for hit in result.hits)
    assert _with_groups(opened, pipeline.index, 0.1, seed=0)[1] == share  # seeded
