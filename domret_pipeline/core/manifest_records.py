"""How a typed manifest is stored and read: the ``Record`` base class, :func:`write_manifest`
and :func:`read_manifest`. The kinds themselves (one frozen dataclass per kind of artifact)
are in ``core/manifests.py``, which re-exports these names; import them from there. A
manifest is written by :func:`write_manifest` and read by :func:`read_manifest`, and by
nothing else.

Why: a value that crosses assets (``with_title``, the mining settings' ``num_negatives``, the
encoder an index was built with) has one source, the manifest that recorded it, read back by
attribute. A reader indexing a dict could misspell a key or fall back to a default of its
own; here a missing field is an error naming the file. The exception is a field that
manifests written by earlier code lack: it takes the value that code assumed (each kind's
``LEGACY``, the one place such values live), so artifacts already on users' disks still read.

On disk a manifest is the flat, sorted, indented JSON object the assets wrote before typed
manifests (``artifacts.write_json``), so those older manifests need no second read path. Keys
that no field names (the rest of an asset's config; keys a newer version wrote) are kept in
``extra`` and written back out, never dropped.

Not manifests, and not typed here: embedding_checkpoint's and reranker_adapter's
``card.json``, serving_config's ``serving.json``, evaluation_report's ``report.json`` and
champion_release's ``release.json`` are those artifacts' documents, with their own readers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .artifacts import write_json
from .errors import RowIssue

MANIFEST_FILE = "manifest.json"
# Field metadata: a dataclass stored flat, its fields at the top level of the manifest. The
# mining settings are stored so because the hard_negatives manifests on disk already hold them
# so (the asset recorded its config with ``**config.model_dump()``): nesting them under a key
# would need a second read path for every older manifest, for no reader's benefit.
FLAT = {"flat": True}
_REBUILD = "rebuild the artifact"

M = TypeVar("M", bound="Record")


class ManifestError(ValueError):
    """A manifest that cannot be read as its kind. One line: the file (and line, for bad JSON)
    and what is wrong, as ``errors.RowIssue`` words input errors."""

    def __init__(self, path: str | Path, reason: str, line: int = 0):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(str(RowIssue(self.path, line, reason)))


class _Problem(Exception):
    """What is wrong inside a manifest; :class:`ManifestError` adds the file."""


@dataclass(frozen=True, kw_only=True)
class Record:
    """A JSON object with typed fields; the keys no field names are in ``extra``.

    Keyword-only, and no field but ``extra`` has a default: a writer names every value, so
    none is recorded by accident. ``LEGACY`` holds what a reader takes for a field that older
    manifests lack (a value, or a function of the raw object)."""

    KIND: ClassVar[str] = "record"
    LEGACY: ClassVar[dict[str, Any]] = {}
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # A key of extra that a typed field also names would be a second source for one value
        # (writers pass their config dump as extra): it must agree with the field, then it goes.
        typed = self._typed()
        clash = sorted(k for k in self.extra if k in typed and _same_json(self.extra[k]) != _same_json(typed[k]))
        if clash:
            raise ValueError(f"{self.KIND} manifest: extra contradicts the typed field"
                             + "".join(f" {k} ({_short(self.extra[k])}, the field says {_short(typed[k])})" for k in clash))
        object.__setattr__(self, "extra", {k: v for k, v in self.extra.items() if k not in typed})

    def to_dict(self) -> dict:
        """The JSON object on disk: the extra keys and the typed fields (flat ones spread)."""
        return {**_plain(self.extra), **self._typed()}

    def _typed(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = _plain(getattr(self, f.name))
            if f.metadata.get("flat"):
                out.update(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[M], raw: dict, source: str | Path = "<manifest>") -> M:
        """Read ``raw`` as this kind; :class:`ManifestError` naming ``source`` when it cannot be."""
        if not isinstance(raw, dict):
            raise ManifestError(source, f"holds a JSON {type(raw).__name__}, not an object; {_REBUILD}")
        try:
            return _decode(cls, raw, cls.LEGACY, "")[0]
        except _Problem as problem:
            raise ManifestError(source, f"{cls.KIND} manifest: {problem}") from None


def write_manifest(folder: str | Path, manifest: Record) -> Path:
    """Write ``manifest`` as ``folder/manifest.json``. It is read back first, so a value that
    would not survive JSON (a NumPy number written as a string, say) fails here, at the
    writer, not in a later step."""
    path = Path(folder) / MANIFEST_FILE
    payload = manifest.to_dict()
    type(manifest).from_dict(json.loads(json.dumps(payload, default=str)), f"{path} (being written)")
    write_json(path, payload)
    return path


def read_manifest(folder: str | Path, kind: type[M]) -> M:
    """The manifest in ``folder``, read as ``kind``."""
    path = Path(folder) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(path, f"no {kind.KIND} manifest: not an artifact folder, or its write never finished") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ManifestError(path, f"not valid JSON ({error.msg}, column {error.colno}); {_REBUILD}", error.lineno) from None
    return kind.from_dict(raw, path)


def _plain(value):
    """A JSON-shaped copy: records and dataclasses become objects, tuples lists."""
    if isinstance(value, Record):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same_json(value) -> str:
    """Comparable JSON text (NaN equals NaN here, as it does on disk)."""
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _decode(cls, raw: dict, legacy: dict, prefix: str) -> tuple[Any, set[str]]:
    """An instance of dataclass ``cls`` from ``raw``, and the keys of ``raw`` it used."""
    hints = typing.get_type_hints(cls)
    values, used = {}, set()
    for f in dataclasses.fields(cls):
        if f.name == "extra" and issubclass(cls, Record):
            continue
        if f.metadata.get("flat"):  # its fields sit in this same object
            values[f.name], flat_used = _decode(hints[f.name], raw, legacy, prefix)
            used |= flat_used
            continue
        if f.name in raw:
            values[f.name] = _convert(raw[f.name], hints[f.name], prefix + f.name)
        elif f.name in legacy:
            value = legacy[f.name]
            values[f.name] = value(raw) if callable(value) else copy.deepcopy(value)
        elif f.default is not dataclasses.MISSING:  # a core dataclass's own default (MiningSettings.seed)
            values[f.name] = f.default
        else:
            raise _Problem(f"lacks '{prefix}{f.name}' ({f.metadata.get('missing', 'written by other code, or damaged')}; "
                           f"{_REBUILD})")
        used.add(f.name)
    if issubclass(cls, Record):
        values["extra"] = {k: v for k, v in raw.items() if k not in used}
    return cls(**values), used


def _convert(value, hint, name: str):
    """``value`` checked against the type ``hint`` (records and dataclasses decoded)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]  # X | None is the only union used here
        return _convert(value, inner, name)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise _Problem(f"'{name}' is {_short(value)}, not a JSON object")
        return _decode(hint, value, getattr(hint, "LEGACY", {}), f"{name}.")[0]
    kind = origin or hint
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, kind))
    if not ok:
        raise _Problem(f"'{name}' is {_short(value)}, not {_describe(hint)}")
    if kind is dict and args:
        return {k: _convert(v, args[1], f"{name}.{k}") for k, v in value.items()}
    if kind is list and args:
        return [_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    return value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(hint) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a JSON object",
             list: "a JSON list"}
    return names.get(typing.get_origin(hint) or hint, str(hint))
