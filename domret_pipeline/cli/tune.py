"""``domret tune embedding|reranker``: one fine-tuning trial on the dev split, reusing the
artifacts of a finished run (by default the SciFact run of ``make scifact``).

    domret tune embedding --epochs 1 --lr 2e-5 --num-negatives 1 --range 10 60
    domret tune embedding --recipes labels pseudo pseudo_then_labels --pseudo-max-queries 2000
    domret tune reranker --loss mnrl --lr 5e-4 --epochs 2 --candidates 20
    domret tune reranker --pretrain none pseudo distill --pretrain-max-pairs 1000 --max-length 128 --grid-candidates

An option left out takes the graph's default (the config classes define them), so a trial
differs from the graph's recipe only in what its command line says.

Both mine, train and evaluate through the same core entry points as the graph's assets, and
print one JSON line of dev figures. They never look at the test split: use them to choose
hyper-parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from .common import artifact_dir, labels_and_chunks, offline, stamp


def given(args: argparse.Namespace, **fields: str) -> dict:
    """The config fields the user set on the command line (argument name -> config field).
    Every option defaults to None, "the graph's default": the config classes are the one
    source of each default, so a trial and the graph run the same recipe unless told not to."""
    if getattr(args, "range", None) is not None:
        args.range_min, args.range_max = args.range
    return {field: getattr(args, name) for name, field in fields.items() if getattr(args, name, None) is not None}


def cmd_tune_embedding(args: argparse.Namespace) -> int:
    """Mine negatives for the train split (and the pseudo-queries) as ``hard_negatives`` does,
    train the recipes as ``embedding_checkpoint`` does (``core/training/recipes.py``), print the
    dev nDCG@10 (on the dev candidate subset, see core/training/bi_encoder_data.py) of the base
    model and of each recipe, and the one chosen."""
    offline()
    from collections import Counter

    from ..config import FineTuneConfig, MiningConfig
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.training.bi_encoder_data import build_training_rows, dev_set_from_index, full_dev_set, train_split
    from ..core.training.mining import MiningResult
    from ..core.training.pseudo_pairs import build_pseudo_rows, mine_pseudo, sample_pairs
    from ..core.training.recipes import train_recipes

    refs = Path(args.index_ref).parent
    index_dir = artifact_dir(refs, Path(args.index_ref).stem)
    labels, chunks = labels_and_chunks(refs)
    index, encoder, manifest = open_with_encoder(index_dir)
    started = time.perf_counter()
    mining = MiningConfig(**given(args, num_negatives="num_negatives", fill_random="fill_random", ratio="max_positive_ratio",
                                  range_min="range_min", range_max="range_max", pseudo_max_queries="pseudo_max_queries"))
    settings = mining.settings()
    config = FineTuneConfig(**given(args, epochs="epochs", lr="learning_rate", batch_size="batch_size", loss="loss",
                                    lora="lora", lora_r="lora_r", max_seq_length="max_seq_length",
                                    patience="early_stopping_patience", cached_mini_batch="cached_mini_batch_size",
                                    train_precision="train_precision", seed="seed", dev_candidates="dev_candidates_per_query",
                                    recipes="recipes", pseudo_epochs="pseudo_epochs", pseudo_max_rows="pseudo_max_rows",
                                    recipe_choice_corpus="recipe_choice_corpus"))
    recipes = config.recipe_settings()
    recipes.validate()
    has_train = bool(labels.qrels_for("train"))
    mined = train_split(labels, chunks, index, encoder).mine(settings) if has_train else MiningResult([], Counter(), [])
    with_title = manifest.with_title
    by_id = {c.chunk_id: c for c in chunks}
    rows = build_training_rows(mined, labels.queries, by_id, with_title)
    pairs, pseudo, pseudo_rows, pairs_from = [], MiningResult([], Counter(), []), [], None
    if not has_train or any(r != "labels" for r in recipes.recipes):  # pseudo rows only when something uses them
        all_pairs, pairs_from = _pseudo_pairs(refs, labels, chunks)
        pairs = sample_pairs(all_pairs, mining.pseudo_max_queries, settings.seed)
        if pairs:
            pseudo = mine_pseudo(pairs, chunks, index, encoder, settings)
            pseudo_rows = build_pseudo_rows(pseudo.queries, {p.pair_id: p for p in pairs}, by_id, with_title)
    dev = dev_set_from_index(labels, chunks, index, encoder, config.dev_candidates_per_query,
                             config.dev_random_chunks, with_title=with_title)
    mining_s = time.perf_counter() - started
    training = config.settings()
    choice_dev = full_dev_set(labels, chunks, with_title=with_title) if config.recipe_choice_corpus == "full" else None
    with tempfile.TemporaryDirectory() as work:
        choice = train_recipes(manifest.encoder_path, rows, pseudo_rows, settings.num_negatives, dev, training, recipes,
                               Path(work), choice_dev=choice_dev)
    outcome = choice.outcome
    if args.save:  # the chosen recipe's model, for `domret eval --tuned-model`
        outcome.model.save(str(args.save))
    losses = outcome.loss_history
    print(json.dumps({
        **stamp(args),
        "settings": {"mining": dataclasses.asdict(settings), "training": training.as_dict(),
                     "recipes": dataclasses.asdict(recipes), "pseudo_max_queries": mining.pseudo_max_queries},
        "train_rows": len(rows), "dev_queries": len(dev.queries), "dev_corpus": len(dev.corpus),
        "mining_removed": dict(mined.removed), "queries_without_negatives": len(mined.queries_without_negatives),
        "pseudo": {"pairs_from": pairs_from, "pairs_mined": len(pairs), "rows": len(pseudo_rows),
                   "negatives": pseudo.n_negatives, "removed": dict(pseudo.removed)},
        "dev_ndcg@10_base": round(choice.base_dev_score, 4), "dev_ndcg@10_tuned": round(outcome.dev_score, 4),
        "recipe": choice.chosen, "recipe_reason": choice.reason,
        "dev_ndcg@10_base_every_chunk": (None if choice.base_full_dev_score is None
                                         else round(choice.base_full_dev_score, 4)),
        "recipes": {r.recipe: {"dev_ndcg@10": round(r.dev_score, 4), "dev_ndcg@10_dev_task": round(r.outcome.dev_score, 4),
                               "train_seconds": round(r.seconds, 1),
                               "stages": [{**vars(st), "dev_history": [round(v, 4) for v in st.dev_history]}
                                          for st in r.stages]} for r in choice.runs},
        "recipes_skipped": choice.skipped,
        "best_epoch": outcome.best_epoch, "dev_history": outcome.dev_history,
        "train_seconds": round(choice.run.seconds, 1), "mining_seconds": round(mining_s, 1),
        "train_precision": outcome.train_precision,
        "seconds_per_step": round(outcome.seconds / max(1, losses[-1]["step"] if losses else 1), 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [losses[0]["loss"], losses[-1]["loss"]] if losses else [],
    }))
    return 0


def _pseudo_pairs(refs: Path, labels, chunks) -> tuple[list, str]:
    """The run's pseudo_queries pairs when it published them, else made as that asset makes
    them (``PseudoQueriesConfig`` defaults, the dev/test relevant documents held out)."""
    from ..config import PseudoQueriesConfig
    from ..core.data.serialization import read_documents
    from ..core.weak.pseudo_queries import eval_documents, generate_pseudo_queries, read_pairs

    if (refs / "pseudo_queries.json").exists():
        return read_pairs(artifact_dir(refs, "pseudo_queries")), "pseudo_queries artifact"
    documents = read_documents(artifact_dir(refs, "corpus_documents") / "documents.jsonl")
    result = generate_pseudo_queries(documents, chunks, PseudoQueriesConfig().settings(), eval_documents(labels))
    return result.pairs, "generated (PseudoQueriesConfig defaults)"


def cmd_tune_reranker(args: argparse.Namespace) -> int:
    """Train a LoRA cross-encoder as ``reranker_adapter`` does (each ``pretrain`` option, the
    best on dev kept: :func:`..core.training.reranker_pretrain.choose_pretraining`), then score the serving grid
    (dense, hybrid, reranking depths and fusion weights) on dev as ``serving_config`` does,
    and print what would serve."""
    offline()
    from ..config import RerankerConfig
    from ..core.retrieval.bm25 import BM25Index
    from ..core.retrieval.cross_encoder import merge_adapter
    from ..core.retrieval.dense_index import open_with_encoder
    from ..core.serving.dev_choice import select_on_dev
    from ..core.training.access import readable_chunks, readable_index, training_principal
    from ..core.training.reranker import save_adapter_and_merged
    from ..core.training.reranker_data import prepare
    from ..core.training.reranker_pretrain import check_options, choose_pretraining, needs_pairs, pretraining_examples

    refs = Path(args.refs)
    labels, chunks = labels_and_chunks(refs)
    index, encoder, manifest = open_with_encoder(artifact_dir(refs, "faiss_index"))
    # as the asset: candidates only among what the training principal may read
    principal = training_principal(artifact_dir(refs, "labeled_queries"))
    chunks = readable_chunks(chunks, principal)
    index = readable_index(index, principal, chunks)
    with_title = manifest.with_title
    config = RerankerConfig(**given(args, base_model="base_model", max_length="max_length", loss="loss",
                                    candidates="candidates", num_negatives="num_negatives",
                                    in_batch_negatives="in_batch_negatives", epochs="epochs", lr="learning_rate",
                                    batch_size="batch_size", patience="early_stopping_patience", lora_r="lora_r",
                                    train_precision="train_precision", pretrain="pretrain",
                                    pretrain_max_pairs="pretrain_max_pairs", pretrain_epochs="pretrain_epochs"),
                            **({"lora_alpha": 2 * args.lora_r} if args.lora_r is not None else {}))
    check_options(config.pretrain)
    settings = config.settings()
    examples, dev, mined = prepare(labels, chunks, index, encoder, config.candidates, config.num_negatives, None, with_title)
    started = time.perf_counter()
    pairs = _pseudo_pairs(refs, labels, chunks)[0] if needs_pairs(config.pretrain, bool(examples)) else []
    pseudo, pseudo_mined, missing = pretraining_examples(
        config.pretrain, bool(examples), pairs, config.pretrain_max_pairs, config.seed, chunks, index, encoder,
        config.candidates, config.num_negatives, None, with_title)
    pseudo_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as work:
        choice = choose_pretraining(config.pretrain, config.base_model, examples, pseudo, dev, settings,
                                    config.pretrain_epochs, Path(work), pseudo_missing=missing)
    outcome = choice.outcome
    if args.save:
        save_adapter_and_merged(outcome.model, Path(args.save) / "adapter", Path(args.save) / "merged")
    else:
        merge_adapter(outcome.model)
    started = time.perf_counter()
    chosen, scored = None, {}
    if args.grid_candidates:
        chosen, scored = select_on_dev(labels.qrels_for("dev"), labels.queries, chunks, index, encoder,
                                       BM25Index.load(artifact_dir(refs, "bm25_index")), outcome.model,
                                       args.grid_candidates, [None, 0.25, 0.5, 1.0, 2.0], with_title=with_title)
    losses = outcome.loss_history
    print(json.dumps({
        **stamp(args),
        "pretrain": {"chosen": choice.option, "reason": choice.reason, "zero_label": choice.zero_label,
                     "trials": choice.table(), "pseudo_examples": len(pseudo),
                     "pseudo_negatives": pseudo_mined.n_negatives if pseudo_mined else 0,
                     "pseudo_mining_seconds": round(pseudo_s, 1)},
        "train_queries": len(examples), "train_negatives": mined.n_negatives, "dev_queries": len(dev),
        "dev_rerank_ndcg@10_first_stage": round(outcome.first_stage_dev_score, 4),
        "dev_rerank_ndcg@10_start": round(outcome.start_dev_score, 4),
        "dev_rerank_ndcg@10": round(outcome.dev_score, 4), "best_epoch": outcome.best_epoch,
        "dev_history": outcome.dev_history, "train_seconds": round(outcome.seconds, 1),
        "trainable_parameters": outcome.trainable_parameters,
        "loss_first_last": [losses[0]["loss"], losses[-1]["loss"]] if losses else [],
        "grid_seconds": round(time.perf_counter() - started, 1),
        "dev_grid_ndcg@10": {label: round(s["metrics"]["ndcg@10"], 4) for label, s in scored.items()},
        "chosen": chosen.label() if chosen else None, "reasons": chosen.reasons if chosen else [],
    }))
    return 0


def cmd_tune_selector(args: argparse.Namespace) -> int:
    """Train the evidence-trained sentence selector as the ``sentence_selector`` asset does
    (:func:`..core.answers.selector.fit_selector`) on a finished run's artifacts, and print its
    dev figures: the ranking of each dev query's candidate sentences (evidence first) in listed
    order, at the start and after training, and the per-sentence threshold with its dev F1."""
    offline()
    from ..config import SelectorConfig
    from ..core.answers.selector import abstention_separation, fit_selector, mined_negative_sentences, selector_examples
    from ..core.data.labels import LabeledQueries
    from ..core.data.serialization import read_chunks, read_documents
    from ..core.training.mining import read_mined

    refs = Path(args.refs)
    config = SelectorConfig(**given(args, base_model="base_model", max_length="max_length", loss="loss",
                                    num_negatives="num_negatives", in_batch_negatives="in_batch_negatives",
                                    epochs="epochs", lr="learning_rate", batch_size="batch_size",
                                    patience="early_stopping_patience", start_from="start_from",
                                    max_negatives="max_negatives", mined="mined_negative_sentences",
                                    unanswerable="unanswerable_negatives"))
    labels = LabeledQueries.load(artifact_dir(refs, "labeled_queries"))
    documents = {d.doc_id: d for d in read_documents(artifact_dir(refs, "corpus_documents") / "documents.jsonl")}
    examples = selector_examples(labels, documents, config.max_negatives)
    if not examples.train or not examples.dev:  # said before reading anything else: the labels decide
        print(f"domret: tune selector: {examples.reason or 'no dev query with evidence'}", file=sys.stderr)
        return 1
    mined = None
    if config.mined_negative_sentences:
        chunks = {c.chunk_id: c for c in read_chunks(artifact_dir(refs, "corpus_chunks") / "chunks.jsonl")}
        mined = mined_negative_sentences(read_mined(artifact_dir(refs, "hard_negatives")), chunks, documents)
    examples = selector_examples(labels, documents, config.max_negatives, mined,
                                 unanswerable=config.learns_from_unanswerable())
    start_model = str(artifact_dir(refs, "reranker_adapter") / "merged") if config.start_from == "reranker" else config.base_model
    settings = config.settings()
    with tempfile.TemporaryDirectory() as work:
        fit = fit_selector(examples, start_model, settings, Path(work))
    outcome = fit.outcome
    separation = abstention_separation(fit.model, labels, documents, "dev")
    print(json.dumps({
        **stamp(args), "start_from": config.start_from, "mined_negative_sentences": config.mined_negative_sentences,
        "max_negatives": config.max_negatives, "settings": settings.as_dict(),
        "unanswerable_train_queries": sum(not e.positives for e in examples.train),
        "train_queries": fit.train_queries, "dev_queries": fit.dev_queries, "dev_sentences": fit.dev_sentences,
        "dev_sentence_ndcg@10_listed_order": round(outcome.first_stage_dev_score, 4),
        "dev_sentence_ndcg@10_start": round(outcome.start_dev_score, 4),
        "dev_sentence_ndcg@10": round(outcome.dev_score, 4), "best_epoch": outcome.best_epoch,
        "threshold": fit.threshold, "dev_sentence_f1": round(fit.dev_f1, 4), "train_seconds": round(outcome.seconds, 1),
        "dev_abstention_on_relevant_documents": separation,
    }))
    return 0


def add_parsers(commands) -> list[argparse.ArgumentParser]:
    tune = commands.add_parser("tune", help="one fine-tuning trial on the dev split, from a finished run's artifacts")
    kinds = tune.add_subparsers(dest="kind", required=True)
    # The knobs' defaults are None: "as the graph's config" (see given()).
    e = kinds.add_parser("embedding", help="mine, fine-tune the encoder, print dev nDCG@10 of base and tuned",
                         epilog="Unset options take the defaults of MiningConfig and FineTuneConfig (README, Configuration).")
    e.add_argument("--index-ref", default=".domret/scifact/refs/base_faiss_index.json",
                   help="reference of a base FAISS index; corpus_chunks.json and labeled_queries.json sit beside it")
    e.add_argument("--epochs", type=int, default=None)
    e.add_argument("--lr", type=float, default=None)
    e.add_argument("--batch-size", type=int, default=None)
    e.add_argument("--num-negatives", type=int, default=None)
    e.add_argument("--range", type=int, nargs=2, default=None, help="range_min range_max of the mining window")
    e.add_argument("--ratio", type=float, default=None)
    e.add_argument("--loss", default=None)
    e.add_argument("--fill-random", action="store_true", default=None)
    e.add_argument("--lora", action="store_true", default=None)
    e.add_argument("--lora-r", type=int, default=None)
    e.add_argument("--max-seq-length", type=int, default=None)
    e.add_argument("--dev-candidates", type=int, default=None)
    e.add_argument("--patience", type=int, default=None)
    e.add_argument("--cached-mini-batch", type=int, default=None)
    e.add_argument("--train-precision", default=None, help="fp32, bf16 or auto (TrainingSettings.train_precision)")
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--recipes", nargs="+", default=None, choices=["labels", "pseudo", "pseudo_then_labels"],
                   help="train each, keep the best on dev (FineTuneConfig.recipes)")
    e.add_argument("--pseudo-max-queries", type=int, default=None,
                   help="pseudo-query pairs mined (MiningConfig.pseudo_max_queries); the run's pseudo_queries "
                        "artifact when it has one, else pairs made with PseudoQueriesConfig defaults")
    e.add_argument("--pseudo-epochs", type=int, default=None)
    e.add_argument("--recipe-choice-corpus", choices=["full", "subset"], default=None,
                   help="where two or more recipes are compared (FineTuneConfig.recipe_choice_corpus)")
    e.add_argument("--save", help="keep the chosen recipe's model in this folder (for domret eval --tuned-model)")
    e.add_argument("--pseudo-max-rows", type=int, default=None)
    e.set_defaults(func=cmd_tune_embedding)
    r = kinds.add_parser("reranker", help="train a LoRA reranker, score the serving grid on dev, print what would serve",
                         epilog="Unset options take the defaults of RerankerConfig (README, Configuration).")
    r.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    r.add_argument("--base-model", default=None)
    r.add_argument("--loss", default=None, choices=["mnrl", "lambda", "listnet", "bce"])
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--lr", type=float, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--candidates", type=int, default=None)
    r.add_argument("--num-negatives", type=int, default=None)
    r.add_argument("--in-batch-negatives", type=int, default=None)
    r.add_argument("--max-length", type=int, default=None)
    r.add_argument("--lora-r", type=int, default=None)
    r.add_argument("--patience", type=int, default=None)
    r.add_argument("--train-precision", default=None, help="fp32, bf16 or auto")
    r.add_argument("--pretrain", nargs="+", default=None, help="options tried, the best on dev kept: none, pseudo, distill (RerankerConfig.pretrain)")
    r.add_argument("--pretrain-max-pairs", type=int, default=None)
    r.add_argument("--pretrain-epochs", type=int, default=None)
    r.add_argument("--grid-candidates", type=int, nargs="*", default=[20, 50],
                   help="reranking depths of the serving grid scored on dev (none given: no grid)")
    r.add_argument("--save", help="keep the trained adapter and merged model in this folder")
    r.set_defaults(func=cmd_tune_reranker)
    s = kinds.add_parser("selector", help="train the evidence-trained sentence selector, print its dev figures",
                         epilog="Unset options take the defaults of SelectorConfig (README, Configuration).")
    s.add_argument("--refs", default=".domret/scifact/refs", help="folder of a finished run's references")
    s.add_argument("--start-from", choices=["base_model", "reranker"], default=None)
    s.add_argument("--mined", action=argparse.BooleanOptionalAction, default=None,
                   help="add sentences of mined negative passages to the negatives (mined_negative_sentences)")
    s.add_argument("--unanswerable", action=argparse.BooleanOptionalAction, default=None,
                   help="bce: train queries without evidence add their documents' sentences as negatives "
                        "(unanswerable_negatives)")
    for flag, kind in (("--base-model", str), ("--loss", str), ("--epochs", int), ("--lr", float), ("--batch-size", int),
                       ("--num-negatives", int), ("--in-batch-negatives", int), ("--max-length", int), ("--patience", int),
                       ("--max-negatives", int)):
        s.add_argument(flag, type=kind, default=None)
    s.set_defaults(func=cmd_tune_selector)
    return [e, r, s]
