"""Access groups of documents: who may read a document, declared at ingestion.

A document carries a tuple of access groups. They come, in order of precedence, from:

1. a field or column of the corpus named in config (``groups_field``): a list of strings, or
   one string of names separated by commas, semicolons or ``|`` (what a CSV cell can hold);
2. a rule on paths (``path_groups``): the longest path prefix that the document id starts
   with (for a folder corpus the id is the file's path relative to the folder, so
   ``{"hr/": ["hr"]}`` restricts everything under ``hr/``);
3. ``default_groups`` (by default the public group, :data:`PUBLIC`).

The groups are decided here, once, and travel with the document: chunks inherit them, the
indexes store them, and every search checks them (``core.retrieval.access``). Rows written
before access control existed carry none and read back as public: that is what every reader
of them assumed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..errors import RowIssue

PUBLIC = "public"
PUBLIC_GROUPS: tuple[str, ...] = (PUBLIC,)
_SEPARATORS = re.compile(r"[,;|]")


def normalize_groups(value: object) -> tuple[str, ...]:
    """Sorted, de-duplicated group names from a list of strings or one separated string.

    Raises ``ValueError`` on anything else (a number, a mapping, a list holding non-strings),
    so a malformed groups cell is a bad row, never a silently public document."""
    if isinstance(value, str):
        names = _SEPARATORS.split(value)
    elif isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(v, str) for v in value):
        names = list(value)
    elif hasattr(value, "tolist") and not isinstance(value, (bytes, bytearray)):  # pandas/Parquet list cells
        return normalize_groups(value.tolist())
    else:
        raise ValueError(f"access groups must be a list of names or a separated string, not {value!r}")
    return tuple(sorted({name.strip() for name in names if name.strip()}))


@dataclass(frozen=True)
class GroupRule:
    """How a corpus declares its documents' groups (``CorpusConfig``: ``groups_field``,
    ``path_groups``, ``default_groups``)."""

    groups_field: str | None = None
    path_groups: Mapping[str, Iterable[str]] = field(default_factory=dict)
    default: tuple[str, ...] = PUBLIC_GROUPS

    def __post_init__(self):
        default = normalize_groups(list(self.default))
        if not default:
            raise ValueError("default_groups must name at least one group (e.g. ['public'])")
        paths = {}
        for prefix, groups in dict(self.path_groups).items():
            names = normalize_groups(list(groups) if not isinstance(groups, str) else groups)
            if not prefix or not names:
                raise ValueError(f"path_groups: {prefix!r} -> {groups!r}: a rule needs a prefix and at least one group")
            paths[prefix] = names
        object.__setattr__(self, "default", default)
        object.__setattr__(self, "path_groups", paths)

    def groups_of(self, doc_id: str, row: Mapping) -> tuple[str, ...]:
        """The document's groups: its field when set and not empty, else the longest matching
        path prefix, else the default. ``ValueError`` when the field holds a malformed value."""
        if self.groups_field:
            value = row.get(self.groups_field)
            if value is not None and not (isinstance(value, float) and value != value):  # NaN: an empty table cell
                groups = normalize_groups(value)
                if groups:
                    return groups
        matching = [prefix for prefix in self.path_groups if doc_id.startswith(prefix)]
        if matching:
            return self.path_groups[max(matching, key=len)]
        return self.default

    def checked(self, doc_id: str, row: Mapping, issues: list[RowIssue], file: str, line: int) -> tuple[str, ...] | None:
        """:meth:`groups_of`, or None with a bad row recorded in ``issues`` (the loaders' way)."""
        try:
            return self.groups_of(doc_id, row)
        except ValueError as error:
            issues.append(RowIssue(file, line, f"field {self.groups_field!r}: {error}", doc_id))
            return None

    def as_dict(self) -> dict:
        return {"groups_field": self.groups_field, "path_groups": {k: list(v) for k, v in self.path_groups.items()},
                "default_groups": list(self.default)}
