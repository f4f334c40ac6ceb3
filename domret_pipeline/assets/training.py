"""Training assets: mined hard negatives and the fine-tuned embedding checkpoint."""

import shutil
from collections import Counter, defaultdict
from pathlib import Path

import dagster as dg

from ..config import FineTuneConfig, MiningConfig
from ..core.artifacts import ArtifactRef, atomic_artifact_dir, read_json, write_json
from ..core.data.labels import LabeledQueries
from ..core.data.serialization import read_chunks
from ..core.evaluation.report import markdown_table
from ..core.manifests import DenseIndexManifest, HardNegativesManifest, read_manifest, write_manifest
from ..core.training.recipes import recipe_table
from ..resources import ArtifactStore, FeedbackStoreResource, MlflowTracker
from .common import ARTIFACT_IO, artifact_output, issues_table, plot_metadata

MINING_VERSION = "4"  # 4: the pseudo-queries mined too (mined_pseudo.jsonl)
CHECKPOINT_VERSION = "4"  # 4: recipes chosen over every chunk; 3: recipes (labels, pseudo, pseudo_then_labels) chosen on dev


@dg.asset(
    group_name="training",
    code_version=MINING_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "Hard negatives for each training query: candidates ranked by the base retriever (and "
        "optionally BM25) in a rank window, with every chunk of a labeled relevant document removed "
        "and a positive-aware margin (TopK-PercPos) against false negatives, optionally checked by a "
        "cross-encoder (the champion's reranker or a given one). Feedback labels marked "
        "'not relevant' are confirmed negatives. Positives: the evidence chunk(s), else the best "
        "chunk of each relevant document. The pseudo-queries (a seeded sample of pseudo_max_queries) "
        "are mined by the same rules, each with its own document as the relevant one (written apart, "
        "mined_pseudo.jsonl). With no labeled train query, only the pseudo-queries are mined."
    ),
)
def hard_negatives(
    context: dg.AssetExecutionContext,
    config: MiningConfig,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    base_faiss_index: ArtifactRef,
    bm25_index: ArtifactRef,
    pseudo_queries: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
    feedback: FeedbackStoreResource,
) -> dg.Output[ArtifactRef]:
    import numpy as np

    from ..core.data.loaders import load_feedback_negatives
    from ..core.evaluation.diagnostics import histogram_plot
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.retrieval.encoder import set_offline
    from ..core.training.access import readable_chunks, readable_index, training_principal
    from ..core.training.bi_encoder_data import train_split
    from ..core.training.mining import MiningResult, NoNegativesError, write_mined
    from ..core.training.pseudo_pairs import mine_pseudo, sample_pairs
    from ..core.weak.pseudo_queries import read_pairs

    set_offline(True)
    with mlflow.run(context, MINING_VERSION) as tracked:
        tracked.log_params({**config.model_dump(), "labeled_queries_sha256": labeled_queries.sha256,
                            "base_faiss_index_sha256": base_faiss_index.sha256,
                            "pseudo_queries_sha256": pseudo_queries.sha256})
        labels = LabeledQueries.load(labeled_queries.path)
        settings = config.settings()
        all_pairs = read_pairs(pseudo_queries.path)
        pairs = sample_pairs(all_pairs, config.pseudo_max_queries, settings.seed)
        has_train = bool(labels.qrels_for("train"))
        if not has_train and not pairs:
            raise ValueError(f"nothing to mine: the train split has no labeled query and no pseudo-query pair is "
                             f"mined ({len(all_pairs)} pairs in pseudo_queries, pseudo_max_queries={config.pseudo_max_queries})")
        # Only what the training principal may read can be a candidate (core/training/access.py).
        principal = training_principal(labeled_queries.path)
        chunks = readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)
        # The retriever that mines is a recorded choice: the base index of this run, or the
        # registry's serving champion (its index, verified by hash), never "the newest file".
        mined_with = {"retriever": "base", "faiss_index": base_faiss_index.sha256}
        index_path = Path(base_faiss_index.path)
        # Read once: the retriever and the cross-encoder check must see the same champion.
        champion_and_bundle = None
        if "champion" in (config.retriever, config.cross_encoder):
            champion_and_bundle = _champion_bundle(
                mlflow, corpus_chunks, "retriever" if config.retriever == "champion" else "cross_encoder")
        if config.retriever == "champion":
            champion, bundle = champion_and_bundle
            champion_index = ArtifactRef(**bundle["artifacts"]["faiss_index"])
            index_path = champion_index.verify()
            mined_with = {"retriever": "champion", "version": champion.version, "faiss_index": champion_index.sha256}
        index, encoder, manifest = open_with_encoder(index_path)
        index = readable_index(index, principal, chunks)
        # Zero-label mode (no train query): only the pseudo-queries are mined.
        split = train_split(labels, chunks, index, encoder) if has_train else None
        qrels, query_ids = (split.qrels, split.query_ids) if split else ({}, [])
        bm25_hits, bm25 = None, BM25Index.load(Path(bm25_index.path)) if config.use_bm25 else None
        if bm25 is not None and query_ids:
            bm25_hits = bm25.search([labels.queries[q] for q in query_ids], config.range_max, bm25.visible(principal))
        confirmed, feedback_issues = {}, []
        by_doc = defaultdict(list)
        for c in chunks:
            by_doc[c.doc_id].append(c.chunk_id)
        if config.feedback_negatives_path:
            confirmed, feedback_issues = load_feedback_negatives(config.feedback_negatives_path, set(query_ids), by_doc)
        if config.use_feedback:
            from ..core.feedback.store import confirmed_negatives

            store = feedback.store()
            store.migrate()
            for qid, ids in confirmed_negatives(store.rows(config.feedback_max_id), by_doc).items():
                if qid in qrels:  # feedback on dev/test queries never trains
                    confirmed.setdefault(qid, []).extend(ids)
        cross_scorer, cross_checked_with = None, None
        if config.cross_encoder:  # it reads the pseudo-queries by their pair ids
            cross_scorer, cross_checked_with = _cross_scorer(
                config, champion_and_bundle, chunks, {**labels.queries, **{p.pair_id: p.query for p in pairs}},
                manifest.with_title)
        result = split.mine(settings, bm25_hits, confirmed, cross_scorer) if split else MiningResult([], Counter(), [])
        pseudo, pseudo_failed = MiningResult([], Counter(), []), None
        if pairs:
            try:
                pseudo = mine_pseudo(pairs, chunks, index, encoder, settings, bm25,
                                     bm25.visible(principal) if bm25 else None, cross_scorer)
            except NoNegativesError as error:
                if not result.queries:  # zero-label mode: the pairs are all there is to train on
                    raise
                # The labeled rows still train; the pseudo recipes then say they have no rows.
                pseudo_failed = str(error)
                context.log.warning(f"hard_negatives: no pseudo-query row: {error}")
        pseudo_record = {
            "pseudo_queries": pseudo_queries.sha256, "pairs": len(all_pairs), "max_queries": config.pseudo_max_queries,
            "mined": len(pseudo.queries), "negatives": pseudo.n_negatives, "removed": dict(pseudo.removed),
            "without_negatives": len(pseudo.queries_without_negatives),
            "positive_rules": dict(Counter(rule for q in pseudo.queries for _, _, rule in q.positives)),
            **({"failed": pseudo_failed} if pseudo_failed else {})}

        rules = Counter(rule for q in result.queries for _, _, rule in q.positives)
        per_query = Counter(len(q.negatives) for q in result.queries)
        sources = Counter(n["source"] for q in result.queries for n in q.negatives)
        pos_scores = np.array([s for q in result.queries for _, s, _ in q.positives])
        neg_scores = np.array([n["score"] for q in result.queries for n in q.negatives])
        with atomic_artifact_dir(artifacts.path(), "hard_negatives") as pending:
            write_mined(pending.path, result.queries)
            write_mined(pending.path, pseudo.queries, pseudo=True)
            write_manifest(pending.path, HardNegativesManifest(
                settings=settings, labeled_queries=labeled_queries.sha256, corpus_chunks=corpus_chunks.sha256,
                base_faiss_index=base_faiss_index.sha256, encoder=manifest.encoder, mined_with=mined_with,
                cross_checked_with=cross_checked_with, cross_checked=result.cross_checked,
                removed=dict(result.removed), queries_without_negatives=result.queries_without_negatives,
                positive_rules=dict(rules), read_as=principal.as_list(), pseudo=pseudo_record, extra=config.model_dump(),
            ))
            histogram = histogram_plot(pending.path / "scores.png", "Base-model scores of mined pairs", {
                "query-positive": pos_scores, "query-negative": neg_scores,
                "pseudo query-negative": np.array([n["score"] for q in pseudo.queries for n in q.negatives])},
                "cosine similarity")
        tracked.log_artifact(f"{pending.ref.path}/scores.png", "hard_negatives")
        counts = {"queries": len(result.queries), "negatives": result.n_negatives,
                  "queries_without_negatives": len(result.queries_without_negatives),
                  "cross_checked_candidates": result.cross_checked,
                  **{f"removed_{k}": v for k, v in result.removed.items()},
                  **{f"positives_by_{k}": v for k, v in rules.items()},
                  "pseudo_queries_mined": len(pseudo.queries), "pseudo_negatives": pseudo.n_negatives,
                  "pseudo_queries_without_negatives": len(pseudo.queries_without_negatives),
                  **{f"pseudo_removed_{k}": v for k, v in pseudo.removed.items()}}
        tracked.log_metrics(counts)
        by_id = {c.chunk_id: c for c in chunks}
        sample = []
        pair_of = {p.pair_id: p for p in pairs}
        for q in [*result.queries[:6], *pseudo.queries[:3]]:
            if q.negatives:
                text, positive = ((pair_of[q.query_id].query, pair_of[q.query_id].positive) if q.query_id in pair_of
                                  else (labels.queries[q.query_id], by_id[q.positives[0][0]].text))
                sample.append([("(pseudo) " if q.query_id in pair_of else "") + text[:70], positive[:70] + "…",
                               by_id[q.negatives[0]["chunk_id"]].text[:70] + "…",
                               f"{q.positives[0][1]:.3f} / {q.negatives[0]['score']:.3f}"])
        return artifact_output(pending.ref, tracked, {
            **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            "removed_by_filter": dg.MetadataValue.md(markdown_table(
                ["filter", "labeled: candidates removed", "pseudo: candidates removed"],
                [[k, result.removed.get(k, 0), pseudo.removed.get(k, 0)]
                 for k in sorted(set(result.removed) | set(pseudo.removed))]) or "none"),
            "pseudo_queries": (f"{len(pseudo.queries)} of {len(all_pairs)} pairs mined (pseudo_max_queries="
                               f"{config.pseudo_max_queries}), {pseudo.n_negatives} negatives"
                               + ("; zero-label mode: no labeled train query" if not has_train else "")),
            "negatives_per_query": dg.MetadataValue.md(markdown_table(
                ["negatives", "queries"], [[k, v] for k, v in sorted(per_query.items())])),
            "negative_sources": dg.MetadataValue.md(markdown_table(["source", "negatives"], [[k, v] for k, v in sorted(sources.items())])),
            "score_summary": dg.MetadataValue.md(markdown_table(
                ["pairs", "n", "mean", "min", "max"],
                [[name, len(v), float(v.mean()) if len(v) else float("nan"), float(v.min()) if len(v) else float("nan"),
                  float(v.max()) if len(v) else float("nan")] for name, v in (("positive", pos_scores), ("negative", neg_scores))])),
            **plot_metadata(pending.ref.path, {"score_histogram": histogram}),
            "mined_with": (f"champion v{mined_with['version']}" if mined_with["retriever"] == "champion" else "base index")
            + f" ({mined_with['faiss_index'][:12]})",
            "cross_checked_with": _describe_cross_check(cross_checked_with),
            "sample_triples": dg.MetadataValue.md(markdown_table(["query", "positive", "negative", "scores (pos / neg)"], sample)),
            "feedback_issues": issues_table(feedback_issues),
            "read_as": principal.label(),
        })


def _champion_bundle(mlflow: MlflowTracker, corpus_chunks: ArtifactRef, purpose: str):
    """The registry's serving champion and its bundle, which must serve this run's chunks."""
    registry = mlflow.registry()
    champion = registry.champion() if registry else None
    if champion is None:
        raise ValueError(f"{purpose}='champion' but the registry has no champion yet: mine without it first")
    bundle = read_json(Path(ArtifactRef(**champion.serving_config).verify()) / "serving.json")
    if bundle["artifacts"]["corpus_chunks"]["sha256"] != corpus_chunks.sha256:
        raise ValueError(f"champion v{champion.version} indexes other chunks than this run's corpus_chunks: "
                         f"{purpose}='champion' cannot be used")
    return champion, bundle


def _cross_scorer(config: MiningConfig, champion_and_bundle, chunks, queries: dict, with_title: bool):
    """The cross-encoder of the false-negative check, and the record of which one it is. The
    champion's reranker reads passages as its bundle rendered them; a given cross-encoder as
    the mining index did (``with_title``)."""
    from ..core.data.chunking import passage_text
    from ..core.retrieval.cross_encoder import load_cross_encoder, load_reranker, score_pairs
    from ..core.retrieval.encoder import model_fingerprint, resolve_model_path

    if config.cross_encoder == "champion":
        champion, bundle = champion_and_bundle
        if "reranker_adapter" not in bundle["artifacts"]:
            raise ValueError(f"cross_encoder='champion' but champion v{champion.version} has no reranker")
        reranker = ArtifactRef(**bundle["artifacts"]["reranker_adapter"])
        model = load_reranker(reranker.verify() / "merged", bundle["reranker_max_length"])
        # As the champion's index rendered passages: the bundle serves that index.
        with_title = read_manifest(bundle["artifacts"]["faiss_index"]["path"], DenseIndexManifest).with_title
        record = {"source": "champion", "version": champion.version, "reranker_adapter": reranker.sha256}
    else:
        path = resolve_model_path(config.cross_encoder)
        model = load_cross_encoder(path, config.cross_encoder_max_length)
        record = {"source": config.cross_encoder,
                  "sha256": model_fingerprint(path) if Path(path).is_dir() else None}
    text = {c.chunk_id: passage_text(c, with_title) for c in chunks}
    return (lambda qid, ids: score_pairs(model, queries[qid], [text[i] for i in ids])), record


def _describe_cross_check(record: dict | None) -> str:
    if record is None:
        return "off"
    if record["source"] == "champion":
        return f"champion v{record['version']} reranker ({record['reranker_adapter'][:12]})"
    return f"{record['source']}" + (f" ({record['sha256'][:12]})" if record.get("sha256") else "")


@dg.asset(
    group_name="training",
    code_version=CHECKPOINT_VERSION,
    io_manager_key=ARTIFACT_IO,
    description=(
        "The bi-encoder fine-tuned with sentence-transformers' trainer: MultipleNegativesRankingLoss "
        "over (query, positive, mined negatives) plus in-batch negatives, no-duplicate batches, "
        "dev-split evaluation after each epoch with the best state kept (early stopping). "
        "Optionally LoRA (adapter saved apart, merged for serving). Trained on each of the recipes asked "
        "for (labels, the mined pseudo-queries, or pseudo first then labels), the best on dev kept (a tie: the "
        "simplest), the reason stated; with no labeled train query, on the pseudo-queries. Written with a "
        "model card that holds the recipe table."
    ),
)
def embedding_checkpoint(
    context: dg.AssetExecutionContext,
    config: FineTuneConfig,
    hard_negatives: ArtifactRef,
    pseudo_queries: ArtifactRef,
    labeled_queries: ArtifactRef,
    corpus_chunks: ArtifactRef,
    base_faiss_index: ArtifactRef,
    artifacts: ArtifactStore,
    mlflow: MlflowTracker,
) -> dg.Output[ArtifactRef]:
    from ..core.evaluation.diagnostics import training_curves
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.retrieval.encoder import set_offline
    from ..core.training.access import readable_chunks, readable_index, training_principal
    from ..core.training.bi_encoder_data import build_training_rows, dev_set_from_index, full_dev_set
    from ..core.training.mining import MiningResult, read_mined
    from ..core.training.pseudo_pairs import build_pseudo_rows
    from ..core.training.recipes import train_recipes
    from ..core.weak.pseudo_queries import read_pairs

    set_offline(True)
    with mlflow.run(context, CHECKPOINT_VERSION) as tracked:
        inputs = {"hard_negatives": hard_negatives.sha256, "pseudo_queries": pseudo_queries.sha256,
                  "labeled_queries": labeled_queries.sha256,
                  "corpus_chunks": corpus_chunks.sha256, "base_faiss_index": base_faiss_index.sha256}
        tracked.log_params({**config.model_dump(), **{f"{k}_sha256": v for k, v in inputs.items()}})
        labels = LabeledQueries.load(labeled_queries.path)
        principal = training_principal(labeled_queries.path)  # the dev task's distractors too
        chunks = readable_chunks(read_chunks(f"{corpus_chunks.path}/chunks.jsonl"), principal)
        mining = read_manifest(hard_negatives.path, HardNegativesManifest)
        mined = MiningResult(read_mined(hard_negatives.path), Counter(mining.removed), mining.queries_without_negatives)
        index, base_encoder, base_manifest = open_with_encoder(Path(base_faiss_index.path))
        # Passages as the base index rendered them: the tuned index renders them the same way.
        with_title = base_manifest.with_title
        by_id = {c.chunk_id: c for c in chunks}
        rows = build_training_rows(mined, labels.queries, by_id, with_title)
        mined_pseudo = read_mined(hard_negatives.path, pseudo=True)
        pseudo_rows = []
        if mined_pseudo:  # the rows' texts are the pairs' own: the pairs mined must be these
            if (mining.pseudo or {}).get("pseudo_queries") != pseudo_queries.sha256:
                raise ValueError("hard_negatives mined other pseudo-queries than this run's pseudo_queries: "
                                 "materialize hard_negatives again")
            pseudo_rows = build_pseudo_rows(mined_pseudo, {p.pair_id: p for p in read_pairs(pseudo_queries.path)},
                                            by_id, with_title)
        dev = dev_set_from_index(labels, chunks, readable_index(index, principal, chunks), base_encoder,
                                 config.dev_candidates_per_query, config.dev_random_chunks, with_title=with_title)
        settings = config.settings()
        with atomic_artifact_dir(artifacts.path(), "embedding_checkpoint") as pending:
            work = pending.path / ".work"
            # The rows' width: the num_negatives hard_negatives mined with, as its manifest records.
            # Between recipes, the dev queries over every readable chunk (config.recipe_choice_corpus).
            choice_dev = (full_dev_set(labels, chunks, with_title=with_title)
                          if config.recipe_choice_corpus == "full" else None)
            choice = train_recipes(base_manifest.encoder_path, rows, pseudo_rows, mining.settings.num_negatives, dev,
                                   settings, config.recipe_settings(), work, progress_sink=context.log.info,
                                   choice_dev=choice_dev)
            outcome = choice.outcome
            outcome.model.save(str(pending.path / "model"))
            if outcome.adapter_dir:
                shutil.copytree(outcome.adapter_dir, pending.path / "lora_adapter")
            shutil.rmtree(work, ignore_errors=True)
            card = {
                "base_model": base_manifest.encoder, "base_model_sha256": base_manifest.encoder_sha256,
                "inputs": inputs, "training": settings.as_dict(), "train_precision_used": outcome.train_precision,
                "train_rows": sum(s.rows for s in choice.run.stages), "dev_queries": len(dev.queries),
                "dev_corpus_chunks": len(dev.corpus), "recipe": choice.chosen, "recipe_reason": choice.reason,
                "recipes": choice.as_dict(), "training_seconds_all_recipes": sum(r.seconds for r in choice.runs),
                "dev_ndcg@10_base": choice.base_dev_score, "dev_ndcg@10": outcome.dev_score,
                "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history, "loss_history": outcome.loss_history,
                "trainable_parameters": outcome.trainable_parameters, "total_parameters": outcome.total_parameters,
                "training_seconds": choice.run.seconds, "lora_adapter": bool(outcome.adapter_dir),
                "training_principal": principal.as_list(),
            }
            write_json(pending.path / "card.json", card)
            (pending.path / "MODEL_CARD.md").write_text(model_card_markdown(card), encoding="utf-8")
            curves = training_curves(pending.path, "Training loss", outcome.loss_history, "dev nDCG@10 (candidate subset)", {
                "dev": ([e["epoch"] for e in outcome.dev_history], [e["dev_cosine_ndcg@10"] for e in outcome.dev_history])})
        final = Path(pending.ref.path)
        for entry in outcome.loss_history:
            tracked.log_metrics({"train_loss": entry["loss"]}, step=entry["step"])
        for i, entry in enumerate(outcome.dev_history):
            tracked.log_metrics({"dev_ndcg_at_10_by_epoch": entry["dev_cosine_ndcg@10"]}, step=i)
        tracked.log_metrics({**{f"dev_ndcg@10_{r.recipe}": r.dev_score for r in choice.runs},
                             "dev_ndcg@10_base": choice.base_dev_score, "dev_ndcg@10": outcome.dev_score,
                             "trainable_parameters": outcome.trainable_parameters, "training_seconds": choice.run.seconds})
        for name in ("card.json", "MODEL_CARD.md", "loss.png", "dev.png"):
            if (final / name).exists():
                tracked.log_artifact(final / name, "embedding_checkpoint")
        if config.log_model_to_mlflow:
            tracked.log_artifacts(final / "model", "embedding_checkpoint/model")
            if (final / "lora_adapter").exists():
                tracked.log_artifacts(final / "lora_adapter", "embedding_checkpoint/lora_adapter")
        return artifact_output(pending.ref, tracked, {
            "dev_ndcg@10_base": dg.MetadataValue.float(round(choice.base_dev_score, 4)),
            "dev_ndcg@10": dg.MetadataValue.float(round(outcome.dev_score, 4)),
            "dev_ndcg@10_gain": dg.MetadataValue.float(round(outcome.dev_score - choice.base_dev_score, 4)),
            "best_epoch": dg.MetadataValue.float(outcome.best_epoch),
            "recipe": choice.chosen, "recipe_reason": choice.reason,
            "recipes": dg.MetadataValue.md(markdown_table(*recipe_table(card["recipes"]))),
            "train_rows": dg.MetadataValue.int(card["train_rows"]),
            "label_rows": dg.MetadataValue.int(len(rows)), "pseudo_rows": dg.MetadataValue.int(len(pseudo_rows)),
            "trainable_parameters": dg.MetadataValue.int(outcome.trainable_parameters),
            "training_seconds": dg.MetadataValue.float(round(choice.run.seconds, 1)),
            "model_card": dg.MetadataValue.md(model_card_markdown(card)),
            **plot_metadata(final, curves),
        })


def model_card_markdown(card: dict) -> str:
    t = card["training"]
    variant = f"LoRA r={t['lora_r']} on {', '.join(t['lora_target_modules'])} (merged)" if t["lora"] else "full fine-tuning"
    rows = [["base model", f"`{card['base_model']}`"], ["variant", variant], ["loss", t["loss"]],
            ["epochs (best)", f"{t['epochs']} ({card['best_epoch']})"],
            # Settings as configured (2e-05, 0.1), not at the four decimals of scores.
            ["learning rate", f"{t['learning_rate']:g}"], ["batch size", t["batch_size"]],
            ["warmup ratio", f"{t['warmup_ratio']:g}"], ["max sequence length", t["max_seq_length"]],
            ["train rows", card["train_rows"]], ["trainable parameters", f"{card['trainable_parameters']:,} of {card['total_parameters']:,}"],
            ["dev nDCG@10 base → tuned", f"{card['dev_ndcg@10_base']:.4f} → {card['dev_ndcg@10']:.4f}"],
            ["training time", f"{card['training_seconds']:.0f} s"]]
    rows += [[f"input `{k}`", f"`{v[:16]}`"] for k, v in card["inputs"].items()]
    recipes = ""
    if "recipes" in card:  # cards from before recipes trained on labels only
        rows.insert(0, ["recipe", f"{card['recipe']}: {card['recipe_reason']}"])
        recipes = "\n\n#### Recipes tried on dev\n\n" + markdown_table(*recipe_table(card["recipes"]))
    return "### Embedding checkpoint\n\n" + markdown_table(["", ""], rows) + recipes + (
        "\n\nDev figures are on the dev candidate subset (relevant chunks, base top-k per query, random chunks).")
