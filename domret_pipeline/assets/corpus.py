"""Corpus assets: validated documents, then sentence-aware token chunks."""


from collections import Counter

import dagster as dg

from ..config import ChunkingConfig, CorpusConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir
from ..core.data.chunking import chunk_documents
from ..core.data.groups import GroupRule
from ..core.data.loaders import load_corpus
from ..core.data.serialization import read_documents, write_chunks, write_documents, write_jsonl
from ..core.evaluation.report import markdown_table
from ..core.manifests import CorpusChunksManifest, CorpusDocumentsManifest, write_manifest
from ..resources import ArtifactStore, EmbeddingModel, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, issues_table

DOCUMENTS_VERSION = "2"  # 2: documents carry access groups
CHUNKS_VERSION = "2"  # 2: chunks carry their document's access groups


@dg.asset(
    group_name="corpus",
    code_version=DOCUMENTS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "The domain corpus, loaded and validated: stable document ids, sentence spans, duplicate "
        "ids rejected (or quarantined when opted in), duplicate texts counted."
    ),
)
def corpus_documents(
    context: dg.AssetExecutionContext, config: CorpusConfig, artifacts: ArtifactStore, mlflow: MlflowTracker
) -> dg.Output[ArtifactRef]:
    with mlflow.run(context, DOCUMENTS_VERSION) as tracked:
        tracked.log_params(config.model_dump())
        # a bad rule fails here, before the corpus is read
        rule = GroupRule(config.groups_field, config.path_groups, tuple(config.default_groups))
        loaded = load_corpus(
            config.path, config.format, config.id_field, config.text_field, config.title_field, config.on_bad_rows, rule
        )
        docs = loaded.documents
        per_group = dict(sorted(Counter(g for d in docs for g in d.groups).items()))
        with atomic_artifact_dir(artifacts.path(), "corpus_documents") as pending:
            write_documents(pending.path / "documents.jsonl", docs)
            write_jsonl(pending.path / "quarantine.jsonl", (i.as_dict() for i in loaded.quarantined))
            write_manifest(pending.path, CorpusDocumentsManifest(
                source=loaded.source, n_documents=len(docs), n_quarantined=len(loaded.quarantined),
                duplicate_texts=[list(pair) for pair in loaded.duplicate_texts],
                access={**rule.as_dict(), "documents_per_group": per_group}))
        counts = {
            "documents": len(docs),
            "quarantined_rows": len(loaded.quarantined),
            "duplicate_texts": len(loaded.duplicate_texts),
            "sentences": sum(len(d.sentences) for d in docs),
        }
        tracked.log_metrics(counts)
        sample = [[d.doc_id, d.title[:60], d.text[:120].replace("\n", " ") + "…"] for d in docs[:5]]
        return artifact_output(
            pending.ref,
            tracked,
            {
                **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
                "source": dg.MetadataValue.path(loaded.source),
                "quarantine": issues_table(loaded.quarantined),
                "duplicate_texts_sample": dg.MetadataValue.md(
                    markdown_table(["document", "same text as"], [list(p) for p in loaded.duplicate_texts[:10]])
                    if loaded.duplicate_texts else "none"
                ),
                "sample_rows": dg.MetadataValue.md(markdown_table(["id", "title", "text"], sample)),
                "documents_per_group": dg.MetadataValue.md(markdown_table(["access group", "documents"],
                                                                          [[g, n] for g, n in per_group.items()])),
            },
        )


@dg.asset(
    group_name="corpus",
    code_version=CHUNKS_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Sentence-aware chunks of at most chunk_tokens tokens (the encoder's tokenizer) with overlap; "
        "each keeps its document id, character span and sentence range, so citations point at spans."
    ),
)
def corpus_chunks(
    context: dg.AssetExecutionContext,
    config: ChunkingConfig,
    corpus_documents: ArtifactRef,
    embedding_model: EmbeddingModel,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    with mlflow.run(context, CHUNKS_VERSION) as tracked:
        params = {**config.model_dump(), "tokenizer": embedding_model.model_name_or_path}
        tracked.log_params({**params, "corpus_documents_sha256": corpus_documents.sha256})
        docs = read_documents(f"{corpus_documents.path}/documents.jsonl")
        chunks = chunk_documents(docs, embedding_model.tokenizer(), config.chunk_tokens, config.overlap_tokens)
        with atomic_artifact_dir(artifacts.path(), "corpus_chunks") as pending:
            write_chunks(pending.path / "chunks.jsonl", chunks)
            write_manifest(pending.path, CorpusChunksManifest(
                chunk_tokens=config.chunk_tokens, overlap_tokens=config.overlap_tokens,
                tokenizer=embedding_model.model_name_or_path, corpus_documents=corpus_documents.sha256,
                n_chunks=len(chunks), chunks_per_group=dict(sorted(Counter(g for c in chunks for g in c.groups).items())),
                extra=params))
        per_doc = Counter(c.doc_id for c in chunks)
        tokens = sorted(c.n_tokens for c in chunks)
        stats = {
            "chunks": len(chunks),
            "documents": len(per_doc),
            "max_chunks_per_document": max(per_doc.values()),
            "median_tokens": tokens[len(tokens) // 2],
            "max_tokens": tokens[-1],
        }
        tracked.log_metrics(stats)
        histogram = Counter(min(n, 5) for n in per_doc.values())
        sample = [[c.chunk_id, f"{c.start}–{c.end}", c.n_tokens, c.text[:100].replace("\n", " ") + "…"] for c in chunks[:5]]
        return artifact_output(
            pending.ref,
            tracked,
            {
                **{k: dg.MetadataValue.int(v) for k, v in stats.items()},
                "chunks_per_document": dg.MetadataValue.md(
                    markdown_table(["chunks", "documents"], [[f"{k}{'+' if k == 5 else ''}", v] for k, v in sorted(histogram.items())])
                ),
                "sample_rows": dg.MetadataValue.md(markdown_table(["chunk", "chars", "tokens", "text"], sample)),
            },
        )
