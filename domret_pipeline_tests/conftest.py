"""Shared fixtures: a tiny random encoder (MiniLM tokenizer, 2 small layers), one MLflow
SQLite store per session, a PostgreSQL server per session (for the tests that ask), and
resources that keep every artifact under a temporary folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from domret_pipeline.assets.common import ARTIFACT_IO  # noqa: E402
from domret_pipeline.io_manager import ArtifactRefIOManager  # noqa: E402
from domret_pipeline.resources import ArtifactStore, EmbeddingModel, FeedbackStoreResource, MlflowTracker  # noqa: E402


def build_tiny_encoder(folder: Path, hidden: int = 32, seed: int = 0, initializer_range: float = 0.02,
                       dropout: float = 0.1) -> Path:
    """A sentence-transformers model with random weights and the real MiniLM tokenizer.

    ``initializer_range`` above BERT's 0.02 makes random [CLS] states differ between inputs,
    which a cross-encoder head needs to learn anything within a test's few steps."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from domret_pipeline.core.retrieval.encoder import PACKAGED_MINILM, resolve_model_path

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(PACKAGED_MINILM))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=512,
                        initializer_range=initializer_range, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    backbone = folder / "backbone"
    BertModel(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    transformer = Transformer(str(backbone), max_seq_length=128)
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "mean"), Normalize()], device="cpu")
    out = folder / "tiny-encoder"
    model.save(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tiny_reranker_base(tmp_path_factory) -> Path:
    """The tiny encoder drawn with a wider init and no dropout: the starting point of test
    cross-encoders (a few dozen noisy steps are not enough otherwise)."""
    return build_tiny_encoder(tmp_path_factory.mktemp("reranker-base"), seed=1, initializer_range=0.2,
                              dropout=0.0)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    # Creating a SQLite store runs migrations (seconds): one store for the whole session.
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the session (``postgres_server.py``), started on first use;
    each test makes its own databases with ``postgres.create_database(name)``."""
    from domret_pipeline_tests.postgres_server import running_server

    with running_server() as server:
        yield server


def make_resources(home: Path, model: Path, mlflow_uri: str) -> dict:
    return {
        "artifacts": ArtifactStore(root=str(home / "artifacts")),
        "mlflow": MlflowTracker(tracking_uri=mlflow_uri, experiment_name=f"test-{home.name}",
                                registered_model=f"test-{home.name}",
                                artifact_location=str(home / "mlflow-artifacts")),
        "embedding_model": EmbeddingModel(model_name_or_path=str(model), max_seq_length=128, batch_size=32),
        "feedback": FeedbackStoreResource(url=f"sqlite:///{home}/feedback.db", retrain_min_labels=3),
        ARTIFACT_IO: ArtifactRefIOManager(base_dir=str(home / "refs")),
    }


def publish(home: Path, run_id: str, mlflow_uri: str):
    """Publish a run the way `domret run` and the daemon's sensor do (test resources use a
    registry named after the home folder)."""
    from domret_pipeline.publication import publish_run
    from domret_pipeline.registry import Registry

    return publish_run(home / "refs", run_id, Registry(mlflow_uri, f"test-{home.name}"))


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def small_dataset(tmp_path) -> dict:
    return make_small_dataset(tmp_path / "data")


def make_small_dataset(root: Path) -> dict:
    """A 6-document corpus with 6 labeled queries (BEIR layout) and evidence, under ``root``."""
    docs = [
        {"_id": "slo-a", "title": "checkout-api SLO", "text": "The checkout-api availability objective is 99.9%. Exceptions need the SRE lead.", "sentences": ["The checkout-api availability objective is 99.9%.", "Exceptions need the SRE lead."]},
        {"_id": "slo-b", "title": "ledger-sync SLO", "text": "The ledger-sync availability objective is 99.5%. Exceptions need the VP of Engineering.", "sentences": ["The ledger-sync availability objective is 99.5%.", "Exceptions need the VP of Engineering."]},
        {"_id": "fl-a", "title": "Forklifts at Leeds", "text": "Forklifts at Leeds drive at most 8 km/h in aisles. Batteries charge in Bay C."},
        {"_id": "fl-b", "title": "Forklifts at Lyon", "text": "Forklifts at Lyon drive at most 6 km/h in aisles. Batteries charge in Zone 4."},
        {"_id": "hl7-a", "title": "HL7 OBX mapping", "text": "OBX-3 carries the LOINC code. It is mapped to a UMLS CUI before storage."},
        {"_id": "hl7-b", "title": "HL7 PID mapping", "text": "PID-3 carries the MRN. Unmapped values go to the terminology queue."},
    ]
    queries = [
        {"_id": "q1", "text": "checkout-api availability target"},
        {"_id": "q2", "text": "who approves ledger-sync exceptions"},
        {"_id": "q3", "text": "Leeds forklift speed"},
        {"_id": "q4", "text": "where are Lyon batteries charged"},
        {"_id": "q5", "text": "OBX-3 CUI mapping"},
        {"_id": "q6", "text": "PID-3 unmapped values"},
    ]
    qrels = [("q1", "slo-a"), ("q2", "slo-b"), ("q3", "fl-a"), ("q4", "fl-b"), ("q5", "hl7-a"), ("q6", "hl7-b")]
    write_jsonl(root / "corpus.jsonl", docs)
    write_jsonl(root / "queries.jsonl", queries)
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    write_jsonl(root / "evidence.jsonl", [{"query_id": "q1", "doc_id": "slo-a", "label": "SUPPORT", "sentences": [0]}])
    return {"root": root, "corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl",
            "qrels": root / "qrels", "evidence": root / "evidence.jsonl"}
