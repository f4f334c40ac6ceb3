"""An IO manager that passes artifact references (path + content hash), never data.

An asset returns an :class:`ArtifactRef`; the reference is written only under its run
(``<base_dir>/runs/<run id>/<asset key>.json``). The latest references
(``<base_dir>/<asset key>.json``, what ``--select`` runs, ``domret search`` and the API read)
move only when the whole run succeeded and is published (``publication.py``), so a failed or
killed run changes nothing anyone else reads.

A downstream asset receives its own run's reference when the run produced one (else the
re-executed parent run's, else the latest published one, recorded so that publication can
check it did not change meanwhile), and the IO manager re-hashes the artifact before handing
it over, so a step reads exactly the bytes its upstream produced, or fails loudly.

A partitioned asset (the chunk-embedding shards) has one reference per partition,
``<asset key>/<partition>.json``, published like any other. The index that assembles them
reads them with :meth:`ArtifactRefIOManager.load_partitions` (it declares them as ``deps``, not
inputs: the in-process pipeline, which never encodes shards, must not need them).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from . import locations
from .core.artifacts import ArtifactRef
from .publication import read_for_run, write_run_ref


class ArtifactRefIOManager(dg.ConfigurableIOManager):
    base_dir: str = locations.refs_dir(locations.DEFAULT_HOME)
    verify_on_load: bool = True

    def handle_output(self, context: dg.OutputContext, obj: ArtifactRef) -> None:
        if not isinstance(obj, ArtifactRef):
            raise TypeError(f"{context.asset_key.to_user_string()} must return an ArtifactRef, got {type(obj).__name__}")
        key_path = list(context.asset_key.path)
        if context.has_asset_partitions:
            key_path.append(context.asset_partition_key)
        write_run_ref(self.base_dir, context.run_id, key_path, obj.to_json())

    def load_partitions(self, run_id: str, key_path: list[str], partitions: list[str]) -> dict[str, ArtifactRef]:
        """The verified references of those ``partitions`` of an asset that exist, as a step of
        ``run_id`` reads them (its own run's, else the published ones, recorded for publication)."""
        found = {}
        for partition in partitions:
            text = read_for_run(self.base_dir, run_id, [*key_path, partition])
            if text is not None:
                found[partition] = ArtifactRef.from_json(text)
                if self.verify_on_load:
                    found[partition].verify()
        return found

    def load_input(self, context: dg.InputContext) -> ArtifactRef:
        upstream = context.upstream_output
        key = upstream.asset_key if upstream else context.asset_key
        run_id = context.step_context.run_id
        try:  # the run that produced the input: a parent run when this is a re-execution
            parent = upstream.run_id if upstream is not None else None
        except dg.DagsterInvariantViolationError:
            parent = None
        text = read_for_run(self.base_dir, run_id, key.path, parent)
        if text is None:
            raise FileNotFoundError(f"{key.to_user_string()} has not been materialized yet "
                                    f"({Path(self.base_dir).joinpath(*key.path).with_suffix('.json')} is missing)")
        ref = ArtifactRef.from_json(text)
        if self.verify_on_load:
            ref.verify()
        return ref
