"""Weak supervision: pseudo-queries cut from the corpus (issue 17, item 1). ``hard_negatives``
mines them, ``embedding_checkpoint`` trains on them (its ``recipes``) and ``reranker_adapter``
pretrains on them (core/training/reranker_pretrain.py)."""

import dagster as dg

from ..config import PseudoQueriesConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import read_chunks, read_documents
from ..core.evaluation.report import markdown_table
from ..core.manifests import PseudoQueriesManifest, write_manifest
from ..resources import ArtifactStore, MlflowTracker
from .common import ARTIFACT_IO, artifact_output

PSEUDO_QUERIES_VERSION = "2"  # 2: the generated kind
SAMPLES_PER_KIND = 3


@dg.asset(
    group_name="training",
    code_version=PSEUDO_QUERIES_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Weakly labeled (query, positive passage) pairs cut from the corpus with no model: a sentence against "
        "its chunk with the sentence removed (inverse cloze), a title against its document's first chunk, and "
        "two spans of one document (Contriever's cropping); with an OpenAI-compatible endpoint, also questions a "
        "chat model writes for a chunk (the passage sent as untrusted data). Filtered (length, boilerplate, the query verbatim "
        "in or a near-copy of its passage, duplicates) and capped per document and in all, with counts per "
        "reason. Documents relevant to a dev or test query give no pairs unless allowed (leakage). Only chunks "
        "the training principal may read. hard_negatives mines them; embedding_checkpoint trains on them and "
        "reranker_adapter pretrains on them when their dev choices say so."
    ),
)
def pseudo_queries(
    context: dg.AssetExecutionContext,
    config: PseudoQueriesConfig,
    corpus_documents: ArtifactRef,
    corpus_chunks: ArtifactRef,
    labeled_queries: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.training.access import readable_chunks, training_principal
    from ..core.weak.pseudo_queries import eval_documents, generate_pseudo_queries, write_pairs

    inputs = {"corpus_documents": corpus_documents.sha256, "corpus_chunks": corpus_chunks.sha256,
              "labeled_queries": labeled_queries.sha256}
    with mlflow.run(context, PSEUDO_QUERIES_VERSION) as tracked:
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        settings = config.settings()
        # A pair teaches the encoder its passage: only what the training principal may read.
        principal = training_principal(labeled_queries.path)
        chunks = readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)
        documents = read_documents(f"{corpus_documents.path}/documents.jsonl")
        held_out = eval_documents(LabeledQueries.load(labeled_queries.path))
        result = generate_pseudo_queries(documents, chunks, settings, held_out, _question_writer(config))
        kept, dropped = result.kept(), result.dropped_counts()
        with atomic_artifact_dir(artifacts.path(), "pseudo_queries") as pending:
            write_pairs(pending.path, result.pairs)
            write_manifest(pending.path, PseudoQueriesManifest(
                settings=settings, inputs=inputs, read_as=principal.as_list(), n_pairs=kept, dropped=dropped,
                eval_documents={"held_out": result.eval_documents, "kept_on": result.pairs_on_eval_documents},
                extra=config.model_dump()))
        counts = {"pairs": len(result.pairs), **{f"pairs_{k}": v for k, v in kept.items()},
                  "candidates": sum(result.candidates.values()), "eval_documents_held_out": result.eval_documents,
                  "pairs_on_eval_documents": result.pairs_on_eval_documents}
        tracked.log_metrics({**counts, **{f"dropped_{r}": sum(by_kind.values()) for r, by_kind in dropped.items()}})
        kinds = list(result.candidates)
        return artifact_output(pending.ref, tracked, {
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "pairs_by_kind": dg.MetadataValue.md(markdown_table(
                ["kind", "candidates", "kept"], [[k, result.candidates[k], kept[k]] for k in kinds])),
            "dropped_by_reason": dg.MetadataValue.md(markdown_table(
                ["reason", *kinds, "total"],
                [[r, *[by_kind.get(k, 0) for k in kinds], sum(by_kind.values())] for r, by_kind in dropped.items()])
                if dropped else "none"),
            "sample_pairs": dg.MetadataValue.md(_samples(result.pairs, kinds) if result.pairs else
                                                "none: every candidate was dropped (see dropped_by_reason)"),
            "eval_documents": ("allowed: pairs on dev/test relevant documents are kept, so dev and test figures of "
                               "a model trained on them are optimistic" if config.allow_eval_documents else
                               f"{result.eval_documents} dev/test relevant documents held out"),
            "read_as": principal.label(),
        })


def _question_writer(config: PseudoQueriesConfig):
    """The ``generated`` kind's writer: the configured OpenAI-compatible endpoint (None when
    the kind is not asked for); the key comes from the environment, never from the config."""
    if "generated" not in config.kinds:
        return None
    if not (config.generator_base_url and config.generator_model):
        raise ValueError("pseudo_queries: kinds lists 'generated' but generator_base_url and generator_model "
                         "are not both set")
    import os

    from ..core.weak.question_writer import OpenAICompatibleQuestionWriter

    return OpenAICompatibleQuestionWriter(config.generator_base_url, config.generator_model,
                                          os.environ.get(config.generator_api_key_env, ""))


def _samples(pairs, kinds: list[str]) -> str:
    """The first pairs of each kind, as a Markdown table (texts shortened)."""
    rows = [[p.kind, p.doc_id, _short(p.query, 90), _short(p.passage(with_title=True), 140)]
            for kind in kinds for p in [p for p in pairs if p.kind == kind][:SAMPLES_PER_KIND]]
    return markdown_table(["kind", "document", "query", "positive (with title)"], rows)


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"
