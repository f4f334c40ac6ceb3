"""Access control from ingestion to answer: documents carry access groups (a field, a path
rule, a default), chunks inherit them, the FAISS and BM25 indexes store them and filter by a
principal's groups, the pipeline, the reranker and the answer step re-check, and what was
written before access control reads as public. Evaluation and training as a principal, and
the whole graph, are in test_access_training.

The retrieval here is real (FAISS flat and HNSW, bm25s) over a hashed bag-of-words encoder:
the restricted document is built to be every stage's best match, so a leak shows."""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from domret_pipeline.core.answers.extractive import AnswerSettings, answer_split, encoder_scorer, extractive_answer
from domret_pipeline.core.data.chunking import Chunk, chunk_documents, passage_text
from domret_pipeline.core.data.documents import Document, split_sentences
from domret_pipeline.core.data.groups import GroupRule, normalize_groups
from domret_pipeline.core.data.loaders import load_corpus
from domret_pipeline.core.data.serialization import read_chunks, read_documents, write_chunks, write_documents
from domret_pipeline.core.errors import InputDataError
from domret_pipeline.core.retrieval.access import GroupTable, Principal
from domret_pipeline.core.retrieval.bm25 import BM25Index
from domret_pipeline.core.retrieval.dense_index import DenseIndex, _oversampled, build_index
from domret_pipeline.core.retrieval.index_build import CompressedSettings, build_sized_index
from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig

from .conftest import write_jsonl

SECRET = "hr-salary"
QUERY = "staff engineer salary bands"
TOP_N = 5


class HashEncoder:
    """Bag of words hashed into 256 dimensions: a query is closest to the passage sharing most
    of its words. Deterministic, no model to load."""

    def encode(self, texts, **kwargs):
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, zlib.crc32(word.encode()) % 256] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def get_embedding_dimension(self):
        return 256


class SalaryReranker:
    """A cross-encoder that loves the secret passage: if it ever reaches the reranker's head,
    it comes first."""

    def predict(self, pairs, **kwargs):
        return np.array([100.0 if "confidential" in p.lower() else float(len(p) % 7) for _, p in pairs], dtype=np.float32)


def whitespace_tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True):
    return {"offset_mapping": [[m.span() for m in re.finditer(r"\S+", t)] for t in texts]}


def corpus(n_public: int = 24, n_secret: int = 1) -> list[Document]:
    docs = [Document(SECRET if i == 0 else f"{SECRET}-{i}", "Salary bands for staff engineers are set by HR. "
                     f"The staff engineer salary band {i} is confidential.", "Salary bands", groups=("hr",))
            for i in range(n_secret)]
    docs.append(Document("fin-budget", "Finance sets the budget for salary reviews.", "Budget", groups=("finance",)))
    topics = ["design reviews", "on-call rotations", "deploy windows", "incident reviews", "code owners", "runbooks"]
    docs += [Document(f"pub-{i}", f"Staff engineer note {i}. Staff engineers own {topics[i % len(topics)]}.",
                      f"Note {i}") for i in range(n_public)]
    for doc in docs:
        doc.sentences = split_sentences(doc.text)
    return docs


def build(docs: list[Document], index_type: str, tmp_path, first_stage: str = "dense", rerank: bool = False):
    """Chunks, both indexes (saved and loaded back, as a bundle opens them) and a pipeline."""
    chunks = chunk_documents(docs, whitespace_tokenizer, chunk_tokens=64, overlap_tokens=0)
    texts = [passage_text(c) for c in chunks]
    ids, groups = [c.chunk_id for c in chunks], GroupTable([c.groups for c in chunks])
    vectors = HashEncoder().encode(texts)
    folder = tmp_path / f"index-{index_type}"
    folder.mkdir(exist_ok=True)
    if index_type == "compressed":  # IVF-SQ8 with nprobe tuned on the corpus, as past compressed_min_vectors
        index, _ = build_sized_index(vectors, "compressed", 4, 16, 8, CompressedSettings("IVF{nlist},SQ8", 1000, 0.9, 50))
    else:
        index = build_index(vectors, index_type, hnsw_m=4, ef_construction=16, ef_search=8)
    DenseIndex(index, ids, groups).save(folder)
    BM25Index.build(texts, ids, 1.2, 0.75, groups).save(folder)
    index, bm25 = DenseIndex.load(folder), BM25Index.load(folder)
    config = ServingConfig(first_stage, rerank=rerank, candidates=10, top_n=TOP_N, depth=20)
    pipeline = SearchPipeline(chunks, index, HashEncoder(), config, bm25, SalaryReranker() if rerank else None)
    return pipeline, chunks, {d.doc_id: d for d in docs}


# -- declaring groups ---------------------------------------------------------------------------


def test_groups_come_from_the_field_then_the_path_rule_then_the_default(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "hr/pay.md", "text": "Pay bands.", "acl": ["hr", "finance"]},
        {"_id": "hr/leave.md", "text": "Leave policy."},
        {"_id": "hr/legal/case.md", "text": "A case.", "acl": ""},
        {"_id": "eng/deploy.md", "text": "Deploy on Tuesdays.", "acl": "eng; sre |eng"},
        {"_id": "readme.md", "text": "Welcome."},
    ])
    rule = GroupRule("acl", {"hr/": ["hr"], "hr/legal/": ["legal"]}, ("staff",))
    groups = {d.doc_id: d.groups for d in load_corpus(tmp_path / "corpus.jsonl", groups=rule).documents}
    assert groups == {"hr/pay.md": ("finance", "hr"), "hr/leave.md": ("hr",), "hr/legal/case.md": ("legal",),
                      "eng/deploy.md": ("eng", "sre"), "readme.md": ("staff",)}
    # without a rule every document is public, as before access control
    assert {d.groups for d in load_corpus(tmp_path / "corpus.jsonl").documents} == {("public",)}


def test_a_folder_corpus_takes_groups_from_paths(tmp_path):
    (tmp_path / "docs" / "hr").mkdir(parents=True)
    (tmp_path / "docs" / "hr" / "pay.md").write_text("# Pay\nPay bands are confidential.")
    (tmp_path / "docs" / "handbook.md").write_text("# Handbook\nWelcome aboard.")
    loaded = load_corpus(tmp_path / "docs", groups=GroupRule(path_groups={"hr/": ["hr"]}))
    assert {d.doc_id: d.groups for d in loaded.documents} == {"hr/pay.md": ("hr",), "handbook.md": ("public",)}


def test_a_malformed_groups_value_is_a_bad_row_not_a_public_document(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"_id": "a", "text": "x", "acl": 7}, {"_id": "b", "text": "y"}])
    with pytest.raises(InputDataError, match="corpus.jsonl:1.*'acl'"):
        load_corpus(tmp_path / "corpus.jsonl", groups=GroupRule("acl"))
    kept = load_corpus(tmp_path / "corpus.jsonl", on_bad_rows="quarantine", groups=GroupRule("acl"))
    assert [d.doc_id for d in kept.documents] == ["b"] and len(kept.quarantined) == 1
    with pytest.raises(ValueError, match="default_groups"):
        GroupRule(default=())
    assert normalize_groups("b, a;a") == ("a", "b")


def test_chunks_inherit_groups_and_round_trip(tmp_path):
    chunks = chunk_documents(corpus(n_public=2), whitespace_tokenizer, chunk_tokens=8, overlap_tokens=0)
    assert {c.doc_id: c.groups for c in chunks}[SECRET] == ("hr",)
    assert len([c for c in chunks if c.doc_id == SECRET]) > 1  # every chunk of the document, not only the first
    write_chunks(tmp_path / "chunks.jsonl", chunks)
    assert read_chunks(tmp_path / "chunks.jsonl") == chunks
    write_documents(tmp_path / "documents.jsonl", corpus(n_public=1))
    assert {d.doc_id: d.groups for d in read_documents(tmp_path / "documents.jsonl")}[SECRET] == ("hr",)


def test_what_was_written_before_access_control_reads_as_public(tmp_path):
    from domret_pipeline.core.manifests import (
        BM25IndexManifest, CorpusChunksManifest, CorpusDocumentsManifest, DenseIndexManifest,
    )

    row = {"chunk_id": "d#0", "doc_id": "d", "index": 0, "start": 0, "end": 4, "first_sentence": 0, "last_sentence": 0,
           "n_tokens": 1, "text": "text", "title": ""}
    write_jsonl(tmp_path / "chunks.jsonl", [row])
    assert read_chunks(tmp_path / "chunks.jsonl")[0].groups == ("public",)
    write_jsonl(tmp_path / "documents.jsonl", [{"doc_id": "d", "title": "", "text": "text", "sentences": [[0, 4]]}])
    assert read_documents(tmp_path / "documents.jsonl")[0].groups == ("public",)
    # an index folder without chunk_groups.json: every position public, visible to anyone
    vectors = HashEncoder().encode(["a b", "c d"])
    DenseIndex(build_index(vectors, "flat"), ["x#0", "y#0"]).save(tmp_path)
    (tmp_path / "chunk_groups.json").unlink()
    loaded = DenseIndex.load(tmp_path)
    assert loaded.groups.rows() == [("public",), ("public",)] and loaded.visible(None) is None
    assert CorpusDocumentsManifest.from_dict({"source": "s", "n_documents": 3, "n_quarantined": 0, "duplicate_texts": []}
                                             ).access["documents_per_group"] == {"public": 3}
    assert CorpusChunksManifest.from_dict({"chunk_tokens": 1, "overlap_tokens": 0, "tokenizer": "t", "corpus_documents": "h",
                                           "n_chunks": 4}).chunks_per_group == {"public": 4}
    assert BM25IndexManifest.from_dict({"k1": 1.2, "b": 0.75, "corpus_chunks": "h", "n_chunks": 2}).chunks_per_group == {
        "public": 2}
    assert "chunks_per_group" in DenseIndexManifest.LEGACY


def test_a_principal_always_reads_public_and_only_its_groups():
    assert Principal.of(None).may_read(("public",)) and not Principal.of(None).may_read(("hr",))
    hr = Principal.of(["hr"])
    assert hr.may_read(("hr",)) and hr.may_read(("public",)) and hr.may_read(("finance", "hr"))
    assert not hr.may_read(("finance",)) and not hr.may_read(())
    table = GroupTable([("public",), ("hr",), ("finance", "hr")])
    assert table.mask(None).tolist() == [True, False, False] and table.mask(hr) is None
    assert Principal.of("hr") == hr and table.counts() == {"finance": 1, "hr": 2, "public": 1}


# -- retrieval ----------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
@pytest.mark.parametrize("first_stage,rerank", [("dense", False), ("hybrid", False), ("dense", True), ("hybrid", True)],
                         ids=["dense", "hybrid", "dense+rerank", "hybrid+rerank"])
def test_a_restricted_best_match_reaches_only_its_group(tmp_path, index_type, first_stage, rerank):
    pipeline, _, _ = build(corpus(), index_type, tmp_path, first_stage, rerank)
    for outsider in (None, ["finance"], ["eng", "sre"]):
        hits = pipeline.search([QUERY], principal=outsider)[0].hits
        assert len(hits) == TOP_N  # enough visible documents: still top_n hits
        assert SECRET not in {h.doc_id for h in hits}
        assert all(Principal.of(outsider).may_read(h.groups) for h in hits)
    assert "fin-budget" not in {h.doc_id for h in pipeline.search([QUERY])[0].hits}
    for insider in (["hr"], ["finance", "hr"]):
        hits = pipeline.search([QUERY], principal=insider)[0].hits
        assert hits[0].doc_id == SECRET and hits[0].groups == ("hr",) and len(hits) == TOP_N
    # the rankings the evaluations score obey the same principal
    assert SECRET not in {c.split("#")[0] for c, _ in pipeline.rankings([QUERY])[0]}
    assert pipeline.rankings([QUERY], principal=["hr"])[0][0][0].startswith(SECRET)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "compressed"])
def test_the_dense_filter_returns_k_visible_chunks_even_when_most_are_hidden(tmp_path, index_type):
    """250 hidden passages crowd the query's neighbourhood; 30 public ones are far from it."""
    pipeline, chunks, _ = build(corpus(n_public=30, n_secret=250), index_type, tmp_path)
    index = pipeline.index
    visible = index.visible(None)
    assert visible is not None and visible.sum() == 30
    vector = HashEncoder().encode([QUERY])
    hits = index.search(vector, 10, visible=visible)[0]
    assert len(hits) == 10 and all(c.startswith("pub-") for c, _ in hits)
    if index_type == "flat":  # filtered inside FAISS: exactly the best visible ones
        everything = index.search(vector, index.index.ntotal)[0]
        best_visible = [s for c, s in everything if c.startswith("pub-")][:10]
        np.testing.assert_allclose([s for _, s in hits], best_visible, rtol=1e-6)  # ties may swap places
    assert len(index.search(vector, 100, visible=visible)[0]) == 30  # no more than are visible
    # a principal that may read everything searches unfiltered, bit for bit
    assert pipeline.restriction(["hr", "finance"]) is None
    assert pipeline.run_stages([QUERY], principal=["hr", "finance"]).dense == index.search(vector, pipeline.config.depth)


def test_hnsw_falls_back_to_an_exact_scan_when_the_graph_runs_dry():
    class DryGraph:  # an HNSW search that never reaches a visible node
        ntotal = 6

        def __init__(self):
            self.vectors = np.eye(6, dtype=np.float32)
            self.depths = []

        def search(self, queries, depth):
            self.depths.append(depth)
            return np.zeros((len(queries), depth), np.float32), np.tile(np.arange(depth), (len(queries), 1)) % 2

        def reconstruct_batch(self, positions):
            return self.vectors[positions]

    graph, visible = DryGraph(), np.array([False, False, True, False, True, True])
    (positions, scores), = _oversampled(graph, np.eye(6, dtype=np.float32)[[4]], 2, visible)
    assert positions.tolist() == [4, 2] and scores[0] == 1.0
    assert graph.depths == [6]  # k / share visible * 1.5, capped at the index, then the exact scan


def test_bm25_masks_inside_bm25s_and_keeps_k(tmp_path):
    pipeline, _, _ = build(corpus(), "flat", tmp_path, "hybrid")
    bm25 = pipeline.bm25
    unfiltered = bm25.search([QUERY], 5)[0]
    assert unfiltered[0][0].startswith(SECRET)
    masked = bm25.search([QUERY], 5, visible=bm25.visible(None))[0]
    assert len(masked) == 5 and not any(c.startswith(SECRET) or c.startswith("fin-") for c, _ in masked)
    assert bm25.search([QUERY], 5, visible=bm25.visible(["hr", "finance"])) == [unfiltered]


def test_with_everything_public_the_ranking_is_the_unfiltered_one(tmp_path):
    docs = [d for d in corpus() if d.groups == ("public",)]
    pipeline, _, _ = build(docs, "flat", tmp_path, "hybrid", rerank=True)
    assert pipeline.restriction(None) is None and pipeline.restriction(["hr"]) is None
    stages = pipeline.run_stages([QUERY])
    assert stages.dense == pipeline.index.search(pipeline.encode_queries([QUERY]), stages.depth)
    assert stages.lexical == pipeline.bm25.search([QUERY], stages.depth)
    assert pipeline.search([QUERY])[0].hits == pipeline.search([QUERY], principal=["hr"])[0].hits


def test_the_pipeline_rechecks_what_a_leaky_index_returns(tmp_path):
    """Defence in depth: an index that ignores the mask still leaks nothing."""
    pipeline, _, _ = build(corpus(), "flat", tmp_path, "hybrid", rerank=True)
    inner_dense, inner_bm25 = pipeline.index, pipeline.bm25

    class Leaky:
        def __init__(self, inner):
            self.inner, self.chunk_ids = inner, inner.chunk_ids

        def search(self, *args, visible=None):
            return self.inner.search(*args)

    pipeline.index, pipeline.bm25 = Leaky(inner_dense), Leaky(inner_bm25)
    stages = pipeline.run_stages([QUERY])
    assert not any(c.startswith(SECRET) for ranking in (stages.dense, stages.lexical) for c, _ in ranking[0])
    assert not any(c.startswith(SECRET) for c in stages.rerank[pipeline.config.variant()][0])
    assert SECRET not in {h.doc_id for h in pipeline.search([QUERY])[0].hits}


def test_an_index_built_from_other_groups_is_refused(tmp_path):
    pipeline, chunks, _ = build(corpus(n_public=3), "flat", tmp_path)
    relabelled = [Chunk(**{**c.as_dict(), "groups": ("public",)}) for c in chunks]
    with pytest.raises(ValueError, match="rebuild the index"):
        SearchPipeline(relabelled, pipeline.index, HashEncoder(), pipeline.config).search([QUERY])


# -- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index_type", ["flat", "hnsw"])
def test_answers_never_quote_or_cite_a_restricted_document(tmp_path, index_type):
    pipeline, _, documents = build(corpus(), index_type, tmp_path, "hybrid", rerank=True)
    settings = AnswerSettings(passages=3, max_sentences=2)
    scorer = encoder_scorer(HashEncoder())
    public = answer_split(pipeline, ["q"], {"q": QUERY}, documents, scorer, settings)["q"]
    cited = {doc for sentence in public.sentences for doc, _ in sentence.citations}
    assert cited and SECRET not in cited and not any(c.startswith(SECRET) for c in public.retrieved)
    assert "confidential" not in " ".join(s.text for s in public.sentences)
    inside = answer_split(pipeline, ["q"], {"q": QUERY}, documents, scorer, settings, principal=["hr"])["q"]
    assert SECRET in {doc for sentence in inside.sentences for doc, _ in sentence.citations}
    # the answer step re-checks: handed a restricted hit, it neither quotes nor cites it
    leaked = pipeline.search([QUERY], principal=["hr"])[0].hits
    answer = extractive_answer("q", QUERY, leaked, documents, scorer, settings)
    assert SECRET not in {doc for s in answer.sentences for doc, _ in s.citations}
    assert not any(c.startswith(SECRET) for c in answer.retrieved)


def test_domret_search_takes_a_principal(tmp_path, monkeypatch, capsys):
    from domret_pipeline import api
    from domret_pipeline.cli import build_parser
    from domret_pipeline.core.serving.bundle import OpenBundle
    from domret_pipeline.core.serving.service import Service

    pipeline, _, _ = build(corpus(), "flat", tmp_path)
    # domret search serves through the (audited) Service; no audit store here
    opened = OpenBundle(tmp_path, {}, pipeline, None, None, None, None, [], None)
    monkeypatch.setattr(api, "load_service", lambda *a, **k: Service(opened, audit=None))
    args = build_parser().parse_args(["search", QUERY, "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["principal"] == ["public"] and SECRET not in {h["doc_id"] for h in out["results"][0]["hits"]}
    args = build_parser().parse_args(["search", QUERY, "--as", "hr", "eng"])
    assert args.principal == ["hr", "eng"] and args.func(args) == 0
    text = capsys.readouterr().out
    assert "as: eng, hr, public" in text and f"document {SECRET}" in text and "groups hr" in text
