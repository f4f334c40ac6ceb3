"""`domret gpu-tune`: the weights that travel to and from a GPU machine as fp16
survive the round trip (the checkpoint rebuilt here encodes like the one trained there)."""

import argparse
import json
import shutil

import numpy as np
import pytest

from domret_pipeline import gpu_trials as gpu_tune
from domret_pipeline.cli.gpu_tune import cmd_restore


def test_fp16_deltas_split_into_small_shards_rebuild_the_trained_checkpoint(tiny_encoder, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    from domret_pipeline.core.retrieval.encoder import encode, load_encoder

    work = tmp_path / "work"
    shutil.copytree(tiny_encoder, work / "base")
    weights = load_file(str(work / "base" / gpu_tune.WEIGHTS))
    (work / "base" / gpu_tune.WEIGHTS).unlink()
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              str(work / "base" / "model_fp16.safetensors"))

    # What the GPU side trains from, then a "trained" model: the rounded base moved a little,
    # saved without the integer position_ids buffer (as sentence-transformers saves it).
    base = gpu_tune.rounded_base(work / "base", tmp_path / "rounded")
    rounded = load_file(str(base / gpu_tune.WEIGHTS))
    torch.manual_seed(0)
    trained = {k: v + 0.01 * torch.randn_like(v) for k, v in rounded.items() if v.is_floating_point()}
    tuned_dir = tmp_path / "tuned"
    shutil.copytree(base, tuned_dir)
    save_file(trained, str(tuned_dir / gpu_tune.WEIGHTS))

    monkeypatch.setattr(gpu_tune, "SHARD_BYTES", 200_000)  # forces the embedding matrix into parts
    out = tmp_path / "out"
    out.mkdir()
    shards = gpu_tune.write_deltas(tuned_dir, base, out)
    assert len(shards) > 1
    assert all((out / s).stat().st_size < 200_000 + 20_000 for s in shards)
    assert any(gpu_tune.PART in k for s in shards for k in load_file(str(out / s)))
    (out / "results.json").write_text(json.dumps({"best": {"name": "t", "dev_ndcg@10": 0.5}}))

    model = tmp_path / "restored"
    cmd_restore(argparse.Namespace(work=str(work), deltas=str(out), model=str(model), check_dev=False))
    restored = load_file(str(model / gpu_tune.WEIGHTS))
    for key, value in trained.items():
        np.testing.assert_allclose(restored[key].numpy(), value.numpy(), atol=2e-5)
    texts = ["forklift speed in aisles", "OBX-3 maps to a CUI"]
    np.testing.assert_allclose(encode(load_encoder(str(model), 32), texts), encode(load_encoder(str(tuned_dir), 32), texts),
                               atol=1e-4)

    # A lost shard is an error, not a model that is silently half base, half trained.
    (out / shards[-1]).unlink()
    with pytest.raises(SystemExit, match="incomplete transfer"):
        cmd_restore(argparse.Namespace(work=str(work), deltas=str(out), model=str(tmp_path / "again"), check_dev=False))
    assert not (tmp_path / "again").exists()
    assert not list(tmp_path.glob("restore_*"))  # the scratch folder went with the error
