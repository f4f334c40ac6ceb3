"""The cross-encoder at query time: loading a reranker and scoring (query, passage) pairs.

It lives here, next to :mod:`.encoder` (loading the bi-encoder) and :mod:`.precision` (the
fp32/bf16/int8 paths of both models), because everything that runs a cross-encoder reads it
from here: the search pipeline and the serving bundle, the precision parity check, the answer
step's sentence scorer and the false-negative check of hard-negative mining. Training
(:mod:`..training.reranker`) imports it too, to build the model it adapts and to merge the
adapter it saves, so no query-time code imports the training package.

A reranker outputs one raw relevance logit per pair; no sigmoid is applied (fusion z-scores
the logits within each query's candidates).
"""

from __future__ import annotations

from pathlib import Path

from .encoder import resolve_model_path


def load_cross_encoder(name_or_path: str, max_length: int, seed: int = 42):
    """A one-logit CrossEncoder; a bi-encoder folder gets a fresh head (seeded, so a run is
    repeatable)."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(seed)
    path = resolve_model_path(name_or_path)
    return CrossEncoder(path, num_labels=1, max_length=max_length, device="cpu", local_files_only=Path(path).is_dir())


def load_adapter(base_model: str, adapter_dir: str | Path, max_length: int):
    """The base cross-encoder with a saved adapter (and its head) attached, for inference."""
    from peft import PeftModel

    model = load_cross_encoder(base_model, max_length)
    model[0].model = PeftModel.from_pretrained(model[0].model, str(adapter_dir))
    model.eval()
    return model


def merge_adapter(model) -> None:
    """Fold the LoRA weights into the base weights in place (plain transformer for serving)."""
    model[0].model = model[0].model.merge_and_unload()


def load_reranker(folder: str | Path, max_length: int | None = None, precision: str = "fp32"):
    """A merged reranker saved by :func:`..training.reranker.save_adapter_and_merged` (a plain
    CrossEncoder folder), running at ``precision`` (see :mod:`.precision`)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from .precision import apply_precision

    model = CrossEncoder(str(folder), device="cpu", local_files_only=True, max_length=max_length)
    model.eval()
    return apply_precision(model, precision, "cross_encoder")


def score_pairs(model, query: str, passages: list[str], batch_size: int = 32):
    """Raw relevance logits (no sigmoid), one per passage: fusion z-scores them per query."""
    return score_pair_list(model, [(query, p) for p in passages], batch_size)


def score_pair_list(model, pairs: list[tuple[str, str]], batch_size: int = 32):
    """Raw logits of (query, passage) pairs, of any number of queries, in one call: the
    cross-encoder sorts a call's pairs by length, so one large call pads less than many small ones."""
    import numpy as np
    import torch

    if not pairs:
        return np.zeros(0, dtype=np.float32)
    scores = model.predict(pairs, batch_size=batch_size, activation_fn=torch.nn.Identity(),
                           show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(scores, dtype=np.float32).reshape(-1)
