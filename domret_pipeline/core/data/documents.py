"""Documents, labels and sentence spans: the data contracts of the pipeline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .groups import PUBLIC_GROUPS

# A sentence ends at . ! or ? followed by white space and an upper-case letter, digit or
# opening bracket, or at a blank line (Markdown paragraphs, list items). Simple on purpose:
# corpora that carry their own sentence split (BEIR `sentences`) keep theirs.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])|\n\s*\n|\n(?=\s*[-*#] )")


@dataclass
class Document:
    """One corpus document with the character spans of its sentences in ``text``, and the
    access groups that may read it (see :mod:`.groups`; public unless the corpus says otherwise)."""

    doc_id: str
    text: str
    title: str = ""
    sentences: list[tuple[int, int]] = field(default_factory=list)
    groups: tuple[str, ...] = PUBLIC_GROUPS

    def sentence_text(self, index: int) -> str:
        start, end = self.sentences[index]
        return self.text[start:end]


@dataclass(frozen=True)
class Evidence:
    """Gold evidence: the sentences of ``doc_id`` that support or contradict a query."""

    query_id: str
    doc_id: str
    label: str
    sentences: tuple[int, ...]


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text``, stripped of surrounding white space."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        spans.extend(_strip_span(text, start, match.start()))
        start = match.end()
    spans.extend(_strip_span(text, start, len(text)))
    return spans


def _strip_span(text: str, start: int, end: int) -> list[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [(start, end)] if end > start else []


def locate_sentences(text: str, sentences: list[str]) -> list[tuple[int, int]] | None:
    """Spans of given sentences in ``text`` in order, or None when they do not match it."""
    spans = []
    position = 0
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            spans.append((position, position))
            continue
        found = text.find(sentence, position)
        if found < 0:
            return None
        spans.append((found, found + len(sentence)))
        position = found + len(sentence)
    return spans
