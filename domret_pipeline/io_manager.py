"""An IO manager that passes artifact references (path + content hash), never data.

An asset returns an :class:`ArtifactRef`; the reference is stored as JSON under
``<base_dir>/<asset key>.json`` (the latest) and under ``<base_dir>/runs/<run id>/`` (what that
run produced, so ``domret search --run`` can serve a named run). A downstream asset receives the reference and the IO manager
re-hashes the artifact before handing it over, so a step reads exactly the bytes its upstream
produced, or fails loudly.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from .core.artifacts import ArtifactRef


def run_ref_path(base_dir: str | Path, run_id: str, key: dg.AssetKey) -> Path:
    return Path(base_dir, "runs", run_id).joinpath(*key.path).with_suffix(".json")


class ArtifactRefIOManager(dg.ConfigurableIOManager):
    base_dir: str = ".domret/refs"
    verify_on_load: bool = True

    def _path(self, key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*key.path).with_suffix(".json")

    def handle_output(self, context: dg.OutputContext, obj: ArtifactRef) -> None:
        if not isinstance(obj, ArtifactRef):
            raise TypeError(f"{context.asset_key.to_user_string()} must return an ArtifactRef, got {type(obj).__name__}")
        for path in (run_ref_path(self.base_dir, context.run_id, context.asset_key), self._path(context.asset_key)):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(obj.to_json(), encoding="utf-8")
            os.replace(tmp, path)  # readers never see a half-written reference

    def load_input(self, context: dg.InputContext) -> ArtifactRef:
        key = context.upstream_output.asset_key if context.upstream_output else context.asset_key
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"{key.to_user_string()} has not been materialized yet ({path} is missing)")
        ref = ArtifactRef.from_json(path.read_text(encoding="utf-8"))
        if self.verify_on_load:
            ref.verify()
        return ref
