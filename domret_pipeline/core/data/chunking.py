"""Sentence-aware, token-budgeted chunking that keeps character offsets.

Rule: whole sentences are packed into a chunk while their token count (model tokenizer,
without special tokens) stays within ``chunk_tokens``; the next chunk starts with the trailing
sentences of the previous one that fit in ``overlap_tokens``. A sentence longer than the
budget is cut into token windows at token boundaries. Every chunk records the document id,
its ``[start, end)`` character span in the document text and the range of sentences it holds,
so that a citation can point back at an exact span, and its document's access groups, so that
every index and search can tell who may read it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Protocol

from .documents import Document
from .groups import PUBLIC_GROUPS


class Tokenizer(Protocol):  # the part of a Hugging Face fast tokenizer we use
    def __call__(self, text, add_special_tokens: bool = ..., return_offsets_mapping: bool = ...): ...


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    index: int  # position of the chunk within its document
    start: int  # character offsets into the document text
    end: int
    first_sentence: int
    last_sentence: int  # inclusive
    n_tokens: int
    text: str
    title: str = ""
    groups: tuple[str, ...] = PUBLIC_GROUPS  # its document's access groups

    def as_dict(self) -> dict:
        return {**asdict(self), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, row: dict) -> "Chunk":
        """A chunk row as :meth:`as_dict` wrote it. Rows written before access control carry no
        groups: they read as public, as every reader of them assumed."""
        return cls(**{**row, "groups": tuple(row.get("groups", PUBLIC_GROUPS))})


@dataclass(frozen=True)
class _Unit:  # a sentence, or a window of an over-long sentence
    start: int
    end: int
    n_tokens: int
    sentence: int


def chunk_documents(
    documents: Iterable[Document], tokenizer: Tokenizer, chunk_tokens: int, overlap_tokens: int
) -> list[Chunk]:
    if chunk_tokens <= 0:
        raise ValueError("chunk_tokens must be positive")
    if not 0 <= overlap_tokens < chunk_tokens:
        raise ValueError("overlap_tokens must be >= 0 and smaller than chunk_tokens")
    chunks: list[Chunk] = []
    for doc in documents:
        units = _units(doc, tokenizer, chunk_tokens)
        for index, (first, last) in enumerate(_pack(units, chunk_tokens, overlap_tokens)):
            start, end = units[first].start, units[last].end
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{index}",
                    doc_id=doc.doc_id,
                    index=index,
                    start=start,
                    end=end,
                    first_sentence=units[first].sentence,
                    last_sentence=units[last].sentence,
                    n_tokens=sum(u.n_tokens for u in units[first : last + 1]),
                    text=doc.text[start:end],
                    title=doc.title,
                    groups=doc.groups,
                )
            )
    return chunks


def _units(doc: Document, tokenizer: Tokenizer, budget: int) -> list[_Unit]:
    spans = doc.sentences or [(0, len(doc.text))]
    texts = [doc.text[s:e] for s, e in spans]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    units: list[_Unit] = []
    for sentence, ((start, end), offsets) in enumerate(zip(spans, encoded["offset_mapping"])):
        if start == end:
            continue
        if len(offsets) <= budget:
            units.append(_Unit(start, end, max(len(offsets), 1), sentence))
            continue
        for window in range(0, len(offsets), budget):
            piece = offsets[window : window + budget]
            units.append(_Unit(start + piece[0][0], start + piece[-1][1], len(piece), sentence))
    if not units:  # whitespace-only sentences; loaders reject empty text, so this is defensive
        units.append(_Unit(0, len(doc.text), 1, 0))
    return units


def _pack(units: list[_Unit], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing into inclusive (first, last) unit ranges."""
    ranges: list[tuple[int, int]] = []
    first = 0
    while first < len(units):
        last, used = first, units[first].n_tokens
        while last + 1 < len(units) and used + units[last + 1].n_tokens <= budget:
            last += 1
            used += units[last].n_tokens
        ranges.append((first, last))
        if last + 1 >= len(units):
            break
        # Step back over trailing units that fit in the overlap, but always move forward.
        nxt, carried = last + 1, 0
        while nxt - 1 > first and carried + units[nxt - 1].n_tokens <= overlap:
            nxt -= 1
            carried += units[nxt].n_tokens
        first = nxt
    return ranges


def passage_text(chunk: Chunk, with_title: bool = True) -> str:
    """The text a retriever sees for a chunk: title and chunk, as BEIR encodes documents."""
    return f"{chunk.title}\n{chunk.text}" if with_title and chunk.title else chunk.text

