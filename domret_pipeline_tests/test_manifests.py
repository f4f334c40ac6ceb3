"""Typed manifests (core/manifests.py): each kind round-trips, manifests written by the code
before typed manifests read back, and a broken one is one error line naming its file."""

import json

import numpy as np
import pytest

from domret_pipeline.config import (BM25Config, ChunkingConfig, IndexConfig, LabelsConfig, MiningConfig, PseudoQueriesConfig,
                                    TunedIndexConfig)
from domret_pipeline.core.manifests import (
    KINDS, BM25IndexManifest, CorpusChunksManifest, CorpusDocumentsManifest, DenseIndexManifest, FeedbackUse,
    HardNegativesManifest, LabeledQueriesManifest, LabelingQueueManifest, ManifestError, PseudoQueriesManifest, read_manifest,
    write_manifest,
)

H = "ab" * 32  # a content hash


def _samples() -> dict:
    """One manifest of each kind, as the assets build them."""
    mining = MiningConfig(num_negatives=5, cross_encoder="champion")
    return {
        CorpusDocumentsManifest: CorpusDocumentsManifest(source="/data/corpus.jsonl", n_documents=3, n_quarantined=1,
                                                         duplicate_texts=[["d3", "d1"]],
                                                         access={"groups_field": "acl", "path_groups": {"hr/": ["hr"]},
                                                                 "default_groups": ["public"],
                                                                 "documents_per_group": {"hr": 1, "public": 2}}),
        CorpusChunksManifest: CorpusChunksManifest(chunk_tokens=200, overlap_tokens=32, tokenizer="packaged:all-MiniLM-L6-v2",
                                                   corpus_documents=H, n_chunks=7, chunks_per_group={"hr": 2, "public": 5},
                                                   extra={**ChunkingConfig().model_dump(), "tokenizer": "packaged:all-MiniLM-L6-v2"}),
        LabeledQueriesManifest: LabeledQueriesManifest(
            corpus_documents=H, extra=LabelsConfig(use_feedback=True).model_dump(),
            feedback=FeedbackUse(store="/tmp/feedback.db", used_ids=[1, 2, 5], new_queries=1, new_judgements=2,
                                 confirmed_negatives=1, skipped={"unknown_document": 1}),
            training_access={"principal": ["hr", "public"], "judgements_dropped": 2, "evidence_dropped": 0,
                             "queries_dropped": 1, "dropped_query_ids": ["q7"]}),
        DenseIndexManifest: DenseIndexManifest(
            role="tuned", encoder=f"embedding_checkpoint@{H[:12]}", encoder_path="/a/model", encoder_sha256=H,
            max_seq_length=256, precision="bf16", with_title=False, index_type="flat", corpus_chunks=H, labeled_queries=H,
            n_vectors=7, dim=32, precision_choice={"requested": "auto", "precision": "bf16", "trials": []},
            embedding_cache={"hits": 0, "misses": 7, "rejected": 0}, diagnostics={"uniformity": 0.3, "uniformity_base": 0.2},
            embedding_checkpoint=H, base_faiss_index=H, chunks_per_group={"hr": 2, "public": 5},
            index_build={"index_type": "flat", "factory": "Flat", "n_vectors": 7, "build_seconds": 0.0, "bytes": 1000},
            extra=TunedIndexConfig().model_dump(exclude={"with_title", "precision"})),
        BM25IndexManifest: BM25IndexManifest(k1=1.2, b=0.75, corpus_chunks=H, n_chunks=7, chunks_per_group={"public": 7},
                                             extra=BM25Config().model_dump()),
        HardNegativesManifest: HardNegativesManifest(
            settings=mining.settings(), labeled_queries=H, corpus_chunks=H, base_faiss_index=H, encoder="tiny",
            mined_with={"retriever": "champion", "version": "3", "faiss_index": H},
            cross_checked_with={"source": "champion", "version": "3", "reranker_adapter": H}, cross_checked=12,
            removed={"labeled_positive": 4, "margin": 2}, queries_without_negatives=["q9"], positive_rules={"evidence": 3},
            read_as=["hr", "public"], extra=mining.model_dump(),
            pseudo={"pseudo_queries": H, "pairs": 40, "max_queries": 20, "mined": 20, "negatives": 55,
                    "removed": {"labeled_positive": 30}, "without_negatives": 1, "positive_rules": {"pair_chunk": 20}}),
        LabelingQueueManifest: LabelingQueueManifest(served_by="champion", serving_config="0123abcd", pool=40),
        PseudoQueriesManifest: PseudoQueriesManifest(
            settings=PseudoQueriesConfig(kinds=["inverse_cloze", "crop"]).settings(),
            inputs={"corpus_documents": H, "corpus_chunks": H, "labeled_queries": H}, read_as=["public"],
            n_pairs={"inverse_cloze": 5, "crop": 2}, dropped={"too_short": {"crop": 1}, "eval_document": {"inverse_cloze": 3}},
            eval_documents={"held_out": 2, "kept_on": 0}, extra=PseudoQueriesConfig(kinds=["inverse_cloze", "crop"]).model_dump()),
    }


def test_every_kind_has_a_sample():
    assert set(_samples()) == set(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_each_kind_round_trips_through_a_readable_file(tmp_path, kind):
    manifest = _samples()[kind]
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / "manifest.json"
    assert read_manifest(tmp_path, kind) == manifest
    text = path.read_text()
    assert text.startswith("{\n  \"") and list(json.loads(text)) == sorted(json.loads(text))  # indented, sorted


def test_values_crossing_assets_have_one_typed_source(tmp_path):
    samples = _samples()
    write_manifest(tmp_path, samples[HardNegativesManifest])
    mining = read_manifest(tmp_path, HardNegativesManifest)
    assert mining.settings == MiningConfig(num_negatives=5, cross_encoder="champion").settings()
    assert mining.settings.num_negatives == 5
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["num_negatives"] == 5 and "settings" not in on_disk  # flat, as before typed manifests
    assert samples[DenseIndexManifest].with_title is False
    assert samples[LabeledQueriesManifest].feedback_ids == [1, 2, 5]


# -- manifests as the code before typed manifests wrote them ------------------------------------


def _old_style() -> dict:
    """Dicts laid out as the assets wrote them with ``write_json(... "manifest.json", {...})``."""
    base_params = {**IndexConfig().model_dump(), "with_title": True, "precision": "fp32", "encoder": "packaged:all-MiniLM-L6-v2",
                   "max_seq_length": 256, "index_type": "flat"}
    return {
        CorpusDocumentsManifest: {"source": "/data/corpus.jsonl", "n_documents": 3, "n_quarantined": 0,
                                  "duplicate_texts": [["d3", "d1"]]},
        CorpusChunksManifest: {**ChunkingConfig().model_dump(), "tokenizer": "packaged:all-MiniLM-L6-v2",
                               "corpus_documents": H, "n_chunks": 7},
        LabeledQueriesManifest: {**LabelsConfig().model_dump(), "corpus_documents": H, "feedback": None},
        DenseIndexManifest: {**base_params, "role": "base", "encoder_path": "/m", "encoder_sha256": H, "precision": "fp32",
                             "precision_choice": {"requested": "fp32", "precision": "fp32", "trials": []},
                             "embedding_cache": {"hits": 7, "misses": 0, "rejected": 0}, "corpus_chunks": H,
                             "labeled_queries": H, "n_vectors": 7, "dim": 32, "diagnostics": {"uniformity": 0.25}},
        BM25IndexManifest: {**BM25Config().model_dump(), "corpus_chunks": H, "n_chunks": 7},
        HardNegativesManifest: {**MiningConfig().model_dump(), "labeled_queries": H, "corpus_chunks": H,
                                "base_faiss_index": H, "encoder": "tiny", "mined_with": {"retriever": "base", "faiss_index": H},
                                "cross_checked_with": None, "cross_checked": 0, "removed": {"margin": 1},
                                "queries_without_negatives": [], "positive_rules": {"evidence": 2}},
        LabelingQueueManifest: {"served_by": "this run", "serving_config": "0123abcd", "pool": 12},
        PseudoQueriesManifest: {**PseudoQueriesConfig().model_dump(), "inputs": {"corpus_chunks": H}, "read_as": ["public"],
                                "n_pairs": {"title": 1}, "dropped": {}, "eval_documents": {"held_out": 0, "kept_on": 0}},
    }


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.KIND)
def test_a_manifest_written_by_the_old_code_reads_back_and_rewrites_every_key(tmp_path, kind):
    old = _old_style()[kind]
    (tmp_path / "manifest.json").write_text(json.dumps(old, indent=2, sort_keys=True))
    manifest = read_manifest(tmp_path, kind)
    again = tmp_path / "again"
    again.mkdir()
    written = json.loads(write_manifest(again, manifest).read_text())
    assert {k: written[k] for k in old} == old  # nothing dropped or changed (new keys may join)


def test_old_mining_settings_are_read_as_typed_settings():
    old = _old_style()[HardNegativesManifest]
    assert HardNegativesManifest.from_dict(old).settings == MiningConfig().settings()


def test_fields_older_manifests_lack_take_what_the_old_code_assumed():
    index = {k: v for k, v in _old_style()[DenseIndexManifest].items()
             if k not in ("precision", "precision_choice", "embedding_cache", "labeled_queries")}
    read = DenseIndexManifest.from_dict(index)
    assert read.precision == "fp32"  # encoded in fp32 before the parity check existed
    assert read.precision_choice is None and read.labeled_queries is None
    assert read.embedding_checkpoint is None and read.base_faiss_index is None  # a base index
    # hard negatives mined before the retriever choice, the cross-encoder check and the filler
    mined = {k: v for k, v in _old_style()[HardNegativesManifest].items()
             if k not in ("mined_with", "cross_checked_with", "cross_checked", "cross_encoder", "cross_encoder_candidates",
                          "cross_encoder_margin", "cross_encoder_max_length", "fill_random", "retriever")}
    read = HardNegativesManifest.from_dict(mined)
    assert read.mined_with == {"retriever": "base", "faiss_index": H}
    assert read.cross_checked_with is None and read.cross_checked == 0
    assert read.pseudo is None  # mined before pseudo-queries
    assert read.settings.fill_random is False and read.settings.num_negatives == MiningConfig().num_negatives
    labels = {k: v for k, v in _old_style()[LabeledQueriesManifest].items() if k != "feedback"}
    assert LabeledQueriesManifest.from_dict(labels).feedback_ids == []


# -- extra keys ---------------------------------------------------------------------------------


def test_unknown_keys_are_kept_and_written_back(tmp_path):
    raw = {**_old_style()[BM25IndexManifest], "tokenizer_stemmer": "snowball", "written_by": {"version": "9"}}
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    manifest = read_manifest(tmp_path, BM25IndexManifest)
    assert manifest.extra["written_by"] == {"version": "9"} and manifest.extra["tokenizer_stemmer"] == "snowball"
    assert "k1" not in manifest.extra  # typed fields are not in extra
    out = tmp_path / "out"
    out.mkdir()
    # the fields an older manifest lacks join with their LEGACY values (before access control: all public)
    assert json.loads(write_manifest(out, manifest).read_text()) == {**raw, "chunks_per_group": {"public": 7}}


def test_an_extra_key_that_contradicts_a_typed_field_is_refused():
    with pytest.raises(ValueError, match="k1"):
        BM25IndexManifest(k1=1.2, b=0.75, corpus_chunks=H, n_chunks=7, chunks_per_group={}, extra={"k1": 0.9})
    # the same value twice is one value: the copy in extra goes
    assert BM25IndexManifest(k1=1.2, b=0.75, corpus_chunks=H, n_chunks=7, chunks_per_group={}, extra={"k1": 1.2}).extra == {}


# -- errors -------------------------------------------------------------------------------------


def _write(tmp_path, raw) -> str:
    path = tmp_path / "manifest.json"
    path.write_text(raw if isinstance(raw, str) else json.dumps(raw))
    return str(path)


def test_a_missing_required_field_is_one_line_naming_the_file(tmp_path):
    path = _write(tmp_path, {k: v for k, v in _old_style()[DenseIndexManifest].items() if k != "encoder_sha256"})
    with pytest.raises(ManifestError) as error:
        read_manifest(tmp_path, DenseIndexManifest)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: dense index manifest: lacks 'encoder_sha256'")
    assert "rebuild the artifact" in message


def test_a_manifest_from_before_with_title_says_so(tmp_path):
    _write(tmp_path, {k: v for k, v in _old_style()[DenseIndexManifest].items() if k != "with_title"})
    with pytest.raises(ManifestError, match="lacks 'with_title' \\(it predates the setting; rebuild the artifact\\)"):
        read_manifest(tmp_path, DenseIndexManifest)  # no reader guesses a default of its own


def test_a_missing_field_of_a_nested_record_is_named_with_its_path(tmp_path):
    feedback = {"store": "x", "used_ids": [1], "new_queries": 0, "new_judgements": 1, "confirmed_negatives": 0}
    _write(tmp_path, {**_old_style()[LabeledQueriesManifest], "feedback": feedback})
    with pytest.raises(ManifestError, match="lacks 'feedback.skipped'"):
        read_manifest(tmp_path, LabeledQueriesManifest)


def test_bad_json_names_the_file_and_line(tmp_path):
    path = _write(tmp_path, '{\n  "source": "x",\n  "n_documents": \n}')
    with pytest.raises(ManifestError) as error:
        read_manifest(tmp_path, CorpusDocumentsManifest)
    assert str(error.value).startswith(f"{path}:4: not valid JSON") and "\n" not in str(error.value)
    _write(tmp_path, "[1, 2]")
    with pytest.raises(ManifestError, match="holds a JSON list, not an object"):
        read_manifest(tmp_path, CorpusDocumentsManifest)


def test_a_value_of_the_wrong_type_names_the_field(tmp_path):
    _write(tmp_path, {**_old_style()[HardNegativesManifest], "num_negatives": "3"})
    with pytest.raises(ManifestError, match="'num_negatives' is '3', not an integer"):
        read_manifest(tmp_path, HardNegativesManifest)
    _write(tmp_path, {**_old_style()[DenseIndexManifest], "with_title": 1})
    with pytest.raises(ManifestError, match="'with_title' is 1, not true or false"):
        read_manifest(tmp_path, DenseIndexManifest)
    _write(tmp_path, {**_old_style()[HardNegativesManifest], "removed": {"margin": 1.5}})
    with pytest.raises(ManifestError, match="'removed.margin' is 1.5, not an integer"):
        read_manifest(tmp_path, HardNegativesManifest)


def test_a_folder_without_a_manifest(tmp_path):
    with pytest.raises(ManifestError, match=f"^{tmp_path}/manifest.json: no bm25_index manifest"):
        read_manifest(tmp_path, BM25IndexManifest)


def test_the_writer_refuses_a_value_json_would_turn_into_a_string(tmp_path):
    manifest = BM25IndexManifest(k1=np.float32(1.2), b=0.75, corpus_chunks=H, n_chunks=7, chunks_per_group={})
    with pytest.raises(ManifestError, match="'k1' is '1.2', not a number"):
        write_manifest(tmp_path, manifest)
    assert not (tmp_path / "manifest.json").exists()
