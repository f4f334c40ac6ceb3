"""What every config module shares: where the bundled sample lives, and :func:`derive`."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import dagster as dg
from pydantic import Field

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


class GeneratorEndpoint(dg.Config):
    """An OpenAI-compatible chat endpoint: the one definition of its settings, shared by every
    config that calls one (the answer generator of ``evaluation_report``, the question writer of
    ``pseudo_queries``, the ``llm`` query rewriter of ``serving_config``)."""

    generator_base_url: str = Field(default="", description="OpenAI-compatible base URL, e.g. "
                                    "http://localhost:8000/v1 (what calls the endpoint needs it and generator_model).")
    generator_model: str = Field(default="", description="The endpoint's model name.")
    generator_api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the API "
                                       "key (its name may be recorded, the key itself never).")
