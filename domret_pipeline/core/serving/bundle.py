"""Opening a serving bundle (a ``serving_config`` artifact) into a runnable pipeline.

The bundle's ``serving.json`` names every artifact it serves by path and content hash; each
one is re-hashed before use, so a bundle serves exactly what was evaluated, or fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..artifacts import ArtifactRef, read_json
from .search import SearchPipeline, ServingConfig


@dataclass
class OpenBundle:
    folder: Path
    bundle: dict
    pipeline: SearchPipeline
    index: object
    encoder: object
    bm25: object | None
    reranker: object | None
    chunks: list
    documents: dict | None  # doc_id -> Document, when the bundle names its corpus_documents
    _selector: object | None = None  # the sentence selector, loaded by scorer() when the bundle uses it
    expander: object | None = None  # the llm rewrite's endpoint, when the bundle records one

    def rerankers(self, variants: set[str]) -> dict:
        """The reranker at each variant (precision/token limit) named, loaded from the bundle's
        verified merged model; the one already open is reused for its own variant."""
        from ..retrieval.cross_encoder import load_reranker

        out = {}
        served = self.pipeline.config.variant()
        for variant in variants:
            if variant == served and self.reranker is not None:
                out[variant] = self.reranker
                continue
            precision, length = variant.split("/")
            out[variant] = load_reranker(Path(self.bundle["artifacts"]["reranker_adapter"]["path"]) / "merged",
                                         self.bundle["reranker_max_length"] if length == "trained" else int(length),
                                         precision)
        return out

    def scorer(self, name: str | None = None, abstain: str | None = None):
        """The answer step's sentence scorer recorded in the bundle, with the abstention score
        it was calibrated with (an :class:`AbstainingScorer` when that is another scorer's); or
        the one ``name``d, abstaining on ``abstain``'s score (None: its own; the report also
        answers with the bi-encoder, to compare). The sentence selector is loaded from the
        bundle's verified ``sentence_selector`` artifact on first use."""
        from ..answers.extractive import AbstainingScorer

        answer = self.bundle.get("answer", {})
        if name is None:
            name, abstain = answer.get("scorer", "encoder"), answer.get("abstention_scorer")
        cite = self._sentence_scorer(name)
        if abstain and abstain != name:
            return AbstainingScorer(cite, self._sentence_scorer(abstain), abstain)
        return cite

    def _sentence_scorer(self, name: str):
        from ..answers.extractive import encoder_scorer, reranker_scorer

        if name == "selector":
            if self._selector is None:
                from ..retrieval.cross_encoder import load_reranker

                ref = self.bundle["artifacts"]["sentence_selector"]
                folder = ArtifactRef(ref["path"], ref["sha256"]).verify()
                self._selector = load_reranker(folder / "merged", read_json(folder / "card.json")["max_length"], "fp32")
            return reranker_scorer(self._selector)
        if name == "reranker":
            if self.reranker is None:
                raise ValueError(f"{self.folder}: the answer scorer is the reranker, but no reranker was loaded")
            return reranker_scorer(self.reranker)
        return encoder_scorer(self.encoder)


def open_bundle(folder: str | Path, rerank: bool | None = None, top_n: int | None = None,
                load_all: bool = False) -> OpenBundle:
    """``rerank`` overrides the served choice; ``load_all`` loads BM25 and the reranker even
    where the served configuration does not use them (evaluation wants every stage)."""
    from ..data.serialization import read_chunks, read_documents
    from ..retrieval.bm25 import BM25Index
    from ..retrieval.dense_index import open_with_encoder

    folder = Path(folder)
    bundle = read_json(folder / "serving.json")
    refs = {name: ArtifactRef(r["path"], r["sha256"]) for name, r in bundle["artifacts"].items()}
    config = ServingConfig.from_dict(bundle["config"])
    if rerank is not None and rerank != config.rerank:
        config.rerank = rerank
        config.reasons = config.reasons + [f"rerank {'forced on' if rerank else 'switched off'} by the caller"]
    if top_n:
        config.top_n = top_n
    index, encoder, index_manifest = open_with_encoder(refs["faiss_index"].verify())
    bm25 = BM25Index.load(refs["bm25_index"].verify()) if load_all or config.first_stage == "hybrid" else None
    reranker = None
    answer = bundle.get("answer", {})
    answers_with_reranker = "reranker" in (answer.get("scorer"), answer.get("abstention_scorer"))
    if config.rerank or answers_with_reranker or (load_all and any(r["settings"]["rerank"] for r in bundle["dev"]["table"])):
        from ..retrieval.cross_encoder import load_reranker

        # The served variant's precision and token limit (fp32 at the trained length when the
        # served configuration does not rerank).
        reranker = load_reranker(refs["reranker_adapter"].verify() / "merged",
                                 config.rerank_max_length or bundle["reranker_max_length"], config.rerank_precision)
    expander = rewrite_endpoint(bundle.get("rewrite_endpoint")) if config.rewrite == "llm" or load_all else None
    chunks = read_chunks(refs["corpus_chunks"].verify() / "chunks.jsonl")
    documents = None
    if "corpus_documents" in refs:
        documents = {d.doc_id: d for d in read_documents(refs["corpus_documents"].verify() / "documents.jsonl")}
    # Passages as the served index rendered them: its manifest is the one record of with_title
    # (serving.json repeats it for people).
    pipeline = SearchPipeline(chunks, index, encoder, config, bm25, reranker if config.rerank else None,
                              index_manifest.with_title, expander=expander)
    return OpenBundle(folder, bundle, pipeline, index, encoder, bm25, reranker, chunks, documents, expander=expander)


def rewrite_endpoint(record: dict | None):
    """The ``llm`` rewrite's endpoint from the bundle's ``rewrite_endpoint`` record (base URL,
    model, the name of the environment variable holding the key: never the key), or None."""
    if not record:
        return None
    import os

    from .llm_rewrite import OpenAICompatibleExpander

    return OpenAICompatibleExpander(record["base_url"], record["model"], os.environ.get(record.get("api_key_env", ""), ""),
                                    float(record.get("timeout_s", 10.0)))
