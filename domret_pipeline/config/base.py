"""What every config module shares: where the bundled sample lives, and :func:`derive`."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import dagster as dg

SAMPLE_DIR = Path(__file__).parent.parent / "sample_data" / "handbook"


def derive(config: dg.Config, settings_cls, prefix: str = "", **core_only):
    """A core settings dataclass filled from ``config``: each of its fields named
    ``prefix + name`` in the config takes the config's value; ``core_only`` may set fields the
    config does not define (which keep their core default otherwise). Setting a config knob
    through ``core_only`` is refused: it would be a second source."""
    knobs = {f.name for f in dataclasses.fields(settings_cls) if prefix + f.name in type(config).model_fields}
    clash = knobs & set(core_only)
    if clash:
        raise TypeError(f"{sorted(clash)} are {type(config).__name__} knobs: set them on the config")
    # Deep copies: the dataclass must not share a list with the (frozen) config.
    return settings_cls(**{n: copy.deepcopy(getattr(config, prefix + n)) for n in knobs}, **core_only)
