"""The corpus encoded in shards on the Dask executor (a LocalCluster of 2 worker processes):
the index assembled from the shards equals the one encoded in process, and after one document
changes only its shard is stale, re-encoded, and re-published."""

import json
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from domret_pipeline.config import corpus_shard_count
from domret_pipeline.core.artifacts import ArtifactRef
from domret_pipeline.core.data.chunking import Chunk
from domret_pipeline.core.data.serialization import read_chunks
from domret_pipeline.core.retrieval.dense_index import DenseIndex, all_vectors
from domret_pipeline.core.retrieval.shards import assemble, chunks_of_shard, shard_names, shard_of
from domret_pipeline.definitions import ASSETS
from domret_pipeline.run_transactions import Stores
from domret_pipeline.shard_runs import encode_shards, local_cluster, resources_run_config, stale_shards

from .conftest import make_resources, make_small_dataset, publish
from .graph_helpers import run_config

DATA_ASSETS = ("corpus_documents", "corpus_chunks", "labeled_queries")


def _chunk(doc: str, i: int) -> Chunk:
    return Chunk(chunk_id=f"{doc}#{i}", doc_id=doc, index=i, start=0, end=1, first_sentence=0, last_sentence=0,
                 n_tokens=1, text=f"{doc} {i}")


def test_shard_of_a_document_is_stable_and_holds_all_its_chunks():
    chunks = [_chunk(f"d{d}", i) for d in range(40) for i in range(3)]
    count = 4
    parts = {s: chunks_of_shard(chunks, s, count) for s in shard_names(count)}
    assert sorted(c.chunk_id for p in parts.values() for c in p) == sorted(c.chunk_id for c in chunks)
    assert all(len({shard_of(c.doc_id, count) for c in chunks if c.doc_id == d}) == 1 for d in {c.doc_id for c in chunks})
    assert len([p for p in parts.values() if p]) == count  # 40 documents reach every one of 4 shards
    # adding documents moves no existing one
    more = chunks + [_chunk("new", 0)]
    assert all(shard_of(c.doc_id, count) == s for s, p in parts.items() for c in p)
    assert {c.chunk_id for c in chunks_of_shard(more, shard_of("new", count), count)} - \
        {c.chunk_id for c in parts[shard_of("new", count)]} == {"new#0"}


def test_assemble_refuses_a_shard_of_another_encoder(tmp_path):
    from domret_pipeline.core.retrieval.shards import ShardManifest, write_shard

    chunks = [_chunk(f"d{d}", 0) for d in range(6)]
    folders = {}
    for shard in shard_names(2):
        mine = chunks_of_shard(chunks, shard, 2)
        folder = tmp_path / shard
        folder.mkdir()
        write_shard(folder, ShardManifest(shard, 2, "m", "sha-a" if shard == "shard-000" else "sha-b", "fp32", True,
                                          128, "x", len(mine), 3), [c.chunk_id for c in mine],
                    np.ones((len(mine), 3), dtype=np.float32))
        folders[shard] = folder
    expect = {"shard_count": 2, "encoder_sha256": "sha-a", "precision": "fp32", "with_title": True, "max_seq_length": 128}
    with pytest.raises(ValueError, match="shard-001 was encoded for other settings.*encoder_sha256 'sha-b'"):
        assemble(chunks, folders, expect)
    with pytest.raises(ValueError, match="1 of 2 shards have no embeddings"):
        assemble(chunks, {"shard-000": folders["shard-000"]}, expect)


def _materialize(home, tiny_encoder, mlflow_uri, names, ops, instance):
    result = dg.materialize([a for a in ASSETS if a.key.to_user_string() in names],
                            resources=make_resources(home, tiny_encoder, mlflow_uri), run_config={"ops": ops},
                            instance=instance)
    assert result.success and publish(home, result.run_id, mlflow_uri).published
    return result


def _published(home: Path, asset: str) -> dict[str, str]:
    return {p.stem: json.loads(p.read_text())["sha256"] for p in sorted((home / "refs" / asset).glob("shard-*.json"))}


def test_shards_on_two_dask_workers_build_the_in_process_index_and_a_changed_shard_reencodes_alone(
        tmp_path, tiny_encoder, mlflow_uri):
    home = tmp_path / "home"
    data = make_small_dataset(tmp_path / "data")
    ops = {k: v for k, v in run_config(data, tiny_encoder)["ops"].items() if k in DATA_ASSETS}
    count = corpus_shard_count()
    stores = Stores(refs_dir=str(home / "refs"), artifacts_root=str(home / "artifacts"), tracking_uri=None,
                    registry_name="unused")
    shard_config = {**resources_run_config(str(home / "artifacts"), str(home / "refs"), str(tiny_encoder),
                                           max_seq_length=128, batch_size=32)}
    index_ops = {"base_faiss_index": {"config": {"precision": "fp32", "use_embedding_cache": False}}}
    instance_dir = tmp_path / "dagster"
    instance_dir.mkdir()
    # a persistent instance: the Dask workers write the runs' events into it from other processes
    with dg.DagsterInstance.local_temp(tempdir=str(instance_dir)) as instance, local_cluster(2) as cluster:
        _materialize(home, tiny_encoder, mlflow_uri, DATA_ASSETS, ops, instance)
        chunks_ref = ArtifactRef.from_json((home / "refs" / "corpus_chunks.json").read_text())
        chunks = read_chunks(Path(chunks_ref.path) / "chunks.jsonl")

        def stale():
            return stale_shards(home / "refs", "base_chunk_embeddings", chunks, str(tiny_encoder), "fp32", True, 128,
                                count)

        assert stale() == shard_names(count)
        runs = encode_shards(instance, stores, "base_chunk_embeddings", stale(), shard_config,
                             cluster.scheduler_address, parallel=2)
        assert all(r.success and "not published" not in r.published for r in runs), [r.published for r in runs]
        assert sum(r.encoded for r in runs) == sum(r.chunks for r in runs) == len(chunks)
        assert stale() == [], (runs, sorted((home / "refs" / "base_chunk_embeddings").glob("*")))
        # the steps ran in the Dask worker processes, not in this one
        step_pids = {e.dagster_event.pid for r in runs for e in instance.all_logs(r.run_id)
                     if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"}
        assert step_pids and os.getpid() not in step_pids

        # the index assembled from the shards = the index encoded in process (no cache)
        indexes = {}
        for mode in ("shards", "encoder"):
            result = dg.materialize(
                [a for a in ASSETS if a.key.to_user_string() in (*DATA_ASSETS, "base_faiss_index")],
                selection=["base_faiss_index"], resources=make_resources(home, tiny_encoder, mlflow_uri),
                run_config={"ops": {"base_faiss_index": {"config": {
                    **index_ops["base_faiss_index"]["config"], "vectors_from": mode}}}}, instance=instance)
            assert result.success
            indexes[mode] = DenseIndex.load(Path(result.output_for_node("base_faiss_index").path))
        assert indexes["shards"].chunk_ids == indexes["encoder"].chunk_ids == [c.chunk_id for c in chunks]
        np.testing.assert_allclose(all_vectors(indexes["shards"]), all_vectors(indexes["encoder"]), atol=1e-5)

        # one document changes: its shard alone is stale, and re-encodes that document's chunks alone
        before = _published(home, "base_chunk_embeddings")
        rows = [json.loads(line) for line in Path(data["corpus"]).read_text().splitlines()]
        rows[2]["text"] = "Forklifts at Leeds now drive at most 5 km/h in aisles. Batteries charge in Bay D."
        Path(data["corpus"]).write_text("".join(json.dumps(r) + "\n" for r in rows))
        _materialize(home, tiny_encoder, mlflow_uri, DATA_ASSETS, ops, instance)
        chunks = read_chunks(Path(ArtifactRef.from_json((home / "refs" / "corpus_chunks.json").read_text()).path)
                             / "chunks.jsonl")
        changed = shard_of(rows[2]["_id"], count)
        assert stale() == [changed]
        again = encode_shards(instance, stores, "base_chunk_embeddings", stale(), shard_config,
                              cluster.scheduler_address, parallel=2)
        assert [r.shard for r in again] == [changed] and again[0].success
        assert 0 < again[0].encoded <= sum(c.doc_id == rows[2]["_id"] for c in chunks) <= again[0].chunks
        after = _published(home, "base_chunk_embeddings")
        assert {s for s in after if after[s] != before[s]} == {changed}
        # a forced re-run of an unchanged shard encodes nothing and keeps its content hash
        unchanged = next(s for s in shard_names(count) if s != changed and chunks_of_shard(chunks, s, count))
        forced = encode_shards(instance, stores, "base_chunk_embeddings", [unchanged], shard_config,
                               cluster.scheduler_address, parallel=1)
        assert forced[0].chunks > 0 and forced[0].encoded == 0 and _published(home, "base_chunk_embeddings")[unchanged] == before[unchanged]
