"""What was trained, and why: the dev choices behind the evaluated bundle, for the report.

The serving configuration's own choice is in the report's serving section; the choices made
before it live in the trained artifacts' cards: which recipe the embedding checkpoint was
trained with (labels, pseudo-queries, or both in turn) and whether the reranker was pretrained
on pseudo-pairs. They are read back from the bundle's references, so the report names what was
actually served, with the reason each card records.
"""

from __future__ import annotations

from pathlib import Path

from ..artifacts import read_json
from ..manifests import DenseIndexManifest, read_manifest


def training_choices(bundle: dict) -> list[dict]:
    """Rows ``{stage, chosen, why}`` for the bundle's embedding checkpoint and reranker; a card
    from before the choice existed reads as the one thing that code trained."""
    rows = []
    index = bundle["artifacts"].get("faiss_index")
    if index:
        manifest = read_manifest(index["path"], DenseIndexManifest)
        card_path = Path(manifest.encoder_path).parent / "card.json"
        if manifest.embedding_checkpoint and card_path.is_file():
            card = read_json(card_path)
            rows.append({"stage": "embedding checkpoint", "chosen": card.get("recipe", "labels"),
                         "why": card.get("recipe_reason", "trained on labels only (before recipes)")})
    reranker = bundle["artifacts"].get("reranker_adapter")
    if reranker and (Path(reranker["path"]) / "card.json").is_file():
        pretrain = read_json(Path(reranker["path"]) / "card.json").get("pretrain")
        rows.append({"stage": "reranker pretraining",
                     "chosen": pretrain["chosen"] if pretrain else "none",
                     "why": pretrain["reason"] if pretrain else "trained on labels only (before pretraining)"})
    return rows
