import pytest

from domret_pipeline.core.data.chunking import chunk_documents, passage_text
from domret_pipeline.core.data.documents import Document, locate_sentences, split_sentences


class WordTokenizer:
    """One token per white-space separated word: makes budgets easy to compute by hand."""

    def __call__(self, texts, add_special_tokens=False, return_offsets_mapping=True):
        import re

        return {"offset_mapping": [[(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts]}


TEXT = "One two three. Four five six seven. Eight nine. Ten eleven twelve thirteen fourteen."


def test_split_sentences_gives_exact_spans():
    spans = split_sentences(TEXT)
    assert [TEXT[s:e] for s, e in spans] == [
        "One two three.", "Four five six seven.", "Eight nine.", "Ten eleven twelve thirteen fourteen."
    ]
    assert spans[0] == (0, 14) and spans[1] == (15, 35)


def test_locate_sentences_rejects_sentences_not_in_text():
    assert locate_sentences("A b. C d.", ["A b.", "C d."]) == [(0, 4), (5, 9)]
    assert locate_sentences("A b. C d.", ["A b.", "X"]) is None


def test_chunks_pack_whole_sentences_with_overlap():
    doc = Document("d", TEXT, "Title", split_sentences(TEXT))
    # Sentences have 3, 4, 2 and 5 words. Budget 7: [3+4]; the last sentence (4 words) does not
    # fit in a 2-word overlap, so nothing is carried and the next chunk is [2+5].
    chunks = chunk_documents([doc], WordTokenizer(), chunk_tokens=7, overlap_tokens=2)
    assert [(c.first_sentence, c.last_sentence) for c in chunks] == [(0, 1), (2, 3)]
    assert [c.chunk_id for c in chunks] == ["d#0", "d#1"]
    assert chunks[0].start == 0 and chunks[0].end == 35
    assert chunks[1].text == "Eight nine. Ten eleven twelve thirteen fourteen."
    assert all(doc.text[c.start:c.end] == c.text for c in chunks)


def test_overlap_repeats_trailing_sentences():
    doc = Document("d", TEXT, "", split_sentences(TEXT))
    chunks = chunk_documents([doc], WordTokenizer(), chunk_tokens=9, overlap_tokens=4)
    # [3+4+2=9], then step back over "Eight nine." (2 <= 4) and "Four..." (2+4=6 > 4): start at sentence 2
    assert [(c.first_sentence, c.last_sentence) for c in chunks] == [(0, 2), (2, 3)]
    assert chunks[1].n_tokens == 7


def test_overlong_sentence_is_cut_at_token_boundaries():
    text = "a b c d e f g h i j."
    doc = Document("long", text, "", [(0, len(text))])
    chunks = chunk_documents([doc], WordTokenizer(), chunk_tokens=4, overlap_tokens=0)
    assert [c.text for c in chunks] == ["a b c d", "e f g h", "i j."]
    assert all(c.first_sentence == 0 and c.n_tokens <= 4 for c in chunks)


def test_budget_and_arguments_are_validated():
    doc = Document("d", TEXT, "", split_sentences(TEXT))
    with pytest.raises(ValueError):
        chunk_documents([doc], WordTokenizer(), chunk_tokens=4, overlap_tokens=4)
    for chunk in chunk_documents([doc], WordTokenizer(), chunk_tokens=5, overlap_tokens=1):
        assert chunk.n_tokens <= 5


def test_passage_text_puts_title_first():
    doc = Document("d", "Body text.", "My title", [(0, 10)])
    chunk = chunk_documents([doc], WordTokenizer(), 10, 0)[0]
    assert passage_text(chunk) == "My title\nBody text."
    assert passage_text(chunk, with_title=False) == "Body text."


def test_real_tokenizer_chunks_keep_offsets():
    from domret_pipeline.core.retrieval.encoder import PACKAGED_MINILM, load_tokenizer

    text = " ".join(f"Sentence number {i} talks about forklift battery charging rules." for i in range(30))
    doc = Document("x", text, "", split_sentences(text))
    chunks = chunk_documents([doc], load_tokenizer(PACKAGED_MINILM), chunk_tokens=48, overlap_tokens=12)
    assert len(chunks) > 3
    assert all(text[c.start:c.end] == c.text and c.n_tokens <= 48 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    # consecutive chunks overlap or touch: no text is lost between them
    assert all(b.start <= a.end + 1 for a, b in zip(chunks, chunks[1:]))
