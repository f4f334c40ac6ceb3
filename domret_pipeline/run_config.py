"""Run config files: read, then checked against the job before any step runs.

Dagster validates run config at launch, but its errors name neither the file nor the line,
and arrive after a 20-line dump of the whole schema; and `domret run --select` used to filter
the config to the selection first, so a misspelled op name was silently dropped. Here the
whole file is checked against the whole job (selection or not) with Dagster's own
validation, and each error becomes one line: ``file:line: key.path: what is wrong``.
"""

from __future__ import annotations

import difflib
from pathlib import Path


class RunConfigError(Exception):
    """A run config that cannot run; ``lines`` holds one line per problem."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


def selected_run_config(run_config: dict, selection) -> dict:
    """The run config restricted to the selected assets (asset keys): Dagster rejects config of
    assets outside the selection."""
    if selection is not None:
        names = {key.to_user_string() for key in selection}
        run_config["ops"] = {k: v for k, v in run_config.get("ops", {}).items() if k in names}
    return run_config


def load_run_config(path: str | Path) -> dict:
    """The YAML mapping in ``path``; a missing file, a YAML error (with its line) or a document
    that is not a mapping raises :class:`RunConfigError`."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RunConfigError([f"{path}: config file not found" + (" (it is a folder)" if path.is_dir() else "")])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise RunConfigError([f"{path}:{line}: not valid UTF-8 ({error.reason}); save the file as UTF-8"]) from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        start = getattr(error, "context_mark", None)
        if context and start is not None and mark is not None and start.line != mark.line:
            context += f" that starts at line {start.line + 1}"  # where the unclosed bracket or quote is
        raise RunConfigError([f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "")]) from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise RunConfigError([f"{path}:1: expected a mapping with ops: and resources:, got a {type(config).__name__}"])
    return config


def check_run_config(job, run_config: dict, path: str | Path | None = None) -> None:
    """Validate ``run_config`` against ``job`` (Dagster's ``validate_run_config``); raise
    :class:`RunConfigError` with one line per error, naming the file, line and key path."""
    import dagster as dg

    try:
        dg.validate_run_config(job, run_config)
    except dg.DagsterInvalidConfigError as error:
        lines = _line_finder(path)
        root = job.run_config_schema.config_type
        raise RunConfigError([_describe(e, root, lines, path) for e in error.errors]) from None


def _path_of(stack) -> list:
    out = []
    for entry in stack.entries:
        out.append(entry.list_index if hasattr(entry, "list_index") else getattr(entry, "field_name", None))
    return out


def _dotted(keys: list) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text or "(top level)"


def _type_at(root, keys: list):
    """The Dagster config type at a key path of the job's schema (None when it cannot tell)."""
    config_type = root
    for key in keys:
        while hasattr(config_type, "inner_type") and not hasattr(config_type, "fields"):  # Noneable, Array
            config_type = config_type.inner_type
        fields = getattr(config_type, "fields", None)
        if not isinstance(key, str) or not fields or key not in fields:
            return None
        config_type = fields[key].config_type
    return config_type


_SCALARS = {"Int": "an integer", "Float": "a number", "Bool": "true or false", "String": "a string"}


def _expected(snap) -> str:
    kind = snap.kind.value
    if kind == "ENUM":
        return "one of " + ", ".join(v.value for v in snap.enum_values)
    if kind == "SCALAR":
        return _SCALARS.get(snap.given_name, snap.given_name)
    if kind == "ARRAY":
        return "a list"
    if kind in ("STRICT_SHAPE", "SHAPE", "PERMISSIVE_SHAPE", "SELECTOR", "MAP"):
        return "a mapping of keys"
    return snap.given_name or kind.lower()


def _describe(error, root, lines, path) -> str:
    from dagster._config.errors import (
        FieldNotDefinedErrorData, FieldsNotDefinedErrorData, MissingFieldErrorData, MissingFieldsErrorData,
        RuntimeMismatchErrorData,
    )

    keys = _path_of(error.stack)
    data = error.error_data
    if isinstance(data, (FieldNotDefinedErrorData, FieldsNotDefinedErrorData)):
        names = [data.field_name] if isinstance(data, FieldNotDefinedErrorData) else list(data.field_names)
        known = sorted(getattr(_type_at(root, keys), "fields", {}) or {})
        what = "op" if keys == ["ops"] else "resource" if keys == ["resources"] else "key"
        out = []
        from .config import RENAMED_KEYS

        for name in names:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"{'keys here' if what == 'key' else 'known'}: {', '.join(known)}"
            if RENAMED_KEYS.get(name) in known:  # a setting renamed: say so, not "did you mean"
                hint = f"renamed to {RENAMED_KEYS[name]}; see the README's release gate section"
            out.append(f"{_where(path, lines, keys + [name])}: {_dotted(keys + [name])}: unknown {what} ({hint})")
        return "\n".join(out)
    if isinstance(data, RuntimeMismatchErrorData):
        expected = _expected(data.config_type_snap)
        schema_type = _type_at(root, keys)
        while schema_type is not None and not hasattr(schema_type, "scalar_type") and hasattr(schema_type, "inner_type"):
            schema_type = schema_type.inner_type  # Noneable
        if hasattr(schema_type, "scalar_type"):  # "Int or {env: VAR}": Dagster reports the env selector
            expected = _SCALARS.get(schema_type.scalar_type.given_name, schema_type.scalar_type.given_name)
        return f"{_where(path, lines, keys)}: {_dotted(keys)}: expected {expected}, got {data.value_rep}"
    if isinstance(data, (MissingFieldErrorData, MissingFieldsErrorData)):
        names = [data.field_name] if isinstance(data, MissingFieldErrorData) else list(data.field_names)
        return f"{_where(path, lines, keys)}: {_dotted(keys)}: missing required key(s) {', '.join(names)}"
    return f"{_where(path, lines, keys)}: {_dotted(keys)}: {' '.join(error.message.split())[:300]}"


def _where(path, lines, keys) -> str:
    if path is None:
        return "run config"
    line = lines(keys)
    return f"{path}:{line}" if line else str(path)


def _line_finder(path):
    """A function from a key path to the 1-based line of that key in the YAML file."""
    import yaml

    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8-sig")) if path else None
    except (OSError, yaml.YAMLError):
        node = None

    def find(keys: list) -> int | None:
        current, line = node, (node.start_mark.line + 1 if node is not None else None)
        for key in keys:
            if isinstance(current, yaml.MappingNode):
                match = next(((k, v) for k, v in current.value if k.value == key), None)
                if match is None:
                    return line
                current, line = match[1], match[0].start_mark.line + 1
            elif isinstance(current, yaml.SequenceNode) and isinstance(key, int) and key < len(current.value):
                current = current.value[key]
                line = current.start_mark.line + 1
            else:
                return line
        return line

    return find
