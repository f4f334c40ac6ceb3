"""Test-only fault injection: make one asset fail, or SIGKILL the process running the graph
while it is inside one asset.

The fault fires inside the asset's ``atomic_artifact_dir`` block, once its files are written
to the staging folder and before they are hashed and moved: the step's MLflow run is open,
the staging folder is full, and ``champion_release`` has already registered its version. It is
patched into the asset modules (no hook in the product code).

Run as a subprocess (``python -m domret_pipeline_tests.fault_injection spec.json``) for a kill:
the spec names the home folder, the Dagster instance folder, the model, the MLflow store, the
run config, the assets to materialize and the fault.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import contextmanager

import importlib
import pkgutil

import domret_pipeline.assets
from domret_pipeline.core import artifacts

# Every module of the assets package, found rather than listed: a new asset module (the
# sentence selector's was missed once) gets its faults injected too.
ASSET_MODULES = tuple(importlib.import_module(f"domret_pipeline.assets.{m.name}")
                      for m in pkgutil.iter_modules(domret_pipeline.assets.__path__))


class InjectedFault(RuntimeError):
    pass


def faulty_artifact_dir(asset: str, mode: str):
    real = artifacts.atomic_artifact_dir

    @contextmanager
    def atomic_artifact_dir(root, name):
        with real(root, name) as pending:
            yield pending
            if name == asset:
                if mode == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise InjectedFault(f"injected fault in {asset}")

    return atomic_artifact_dir


def inject(asset: str, mode: str, setattr_=setattr) -> None:
    """Patch every asset module (``setattr_``: pytest's ``monkeypatch.setattr`` to undo it)."""
    patched = faulty_artifact_dir(asset, mode)
    for module in ASSET_MODULES:
        if hasattr(module, "atomic_artifact_dir"):
            setattr_(module, "atomic_artifact_dir", patched)


def materialize(spec: dict, instance):
    """Materialize ``spec["assets"]`` (with their blocking checks) on the test resources."""
    from pathlib import Path

    import dagster as dg

    from domret_pipeline.checks import ALL_CHECKS
    from domret_pipeline.definitions import ASSETS

    from .conftest import make_resources

    # config of assets outside the selection would be rejected (as `domret run --select` filters it)
    config = {**spec["config"], "ops": {k: v for k, v in spec["config"]["ops"].items() if k in spec["assets"]}}
    return dg.materialize([*ASSETS, *ALL_CHECKS], resources=make_resources(Path(spec["home"]), Path(spec["model"]),
                                                                          spec["mlflow_uri"]),
                          run_config=config, instance=instance, raise_on_error=False, selection=spec["assets"])


def main(path: str) -> int:
    import dagster as dg

    spec = json.loads(open(path, encoding="utf-8").read())
    inject(spec["fault_asset"], spec["mode"])
    with dg.DagsterInstance.local_temp(tempdir=spec["instance_dir"]) as instance:
        result = materialize(spec, instance)
    return 0 if result.success else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main(sys.argv[1]))
