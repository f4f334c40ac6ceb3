import json

import pandas as pd
import pytest

from domret_pipeline.core.data.loaders import load_corpus, load_labels
from domret_pipeline.core.errors import InputDataError

GOOD = {"_id": "d1", "title": "T", "text": "Some text."}


def _jsonl(path, lines):
    path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
    return path


def _error(path, **kwargs) -> InputDataError:
    with pytest.raises(InputDataError) as info:
        load_corpus(path, **kwargs)
    return info.value


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ('{"_id": "d2", "text": "unterminated', "malformed JSON"),
        ('{"title": "no id", "text": "x"}', "missing or invalid id"),
        ('{"_id": "d2", "title": "no text"}', "missing text"),
        ('{"_id": "d2", "text": "   "}', "empty text"),
        ('{"_id": "d1", "text": "same id again"}', "duplicate id (first seen at line 1)"),
        ('["not", "an", "object"]', "expected a JSON object"),
        ('{"_id": "d2", "text": "A b.", "sentences": ["Not in text."]}', "do not occur in order"),
    ],
)
def test_bad_corpus_row_names_file_and_line(tmp_path, bad_line, reason):
    path = _jsonl(tmp_path / "corpus.jsonl", [json.dumps(GOOD), "", bad_line])
    error = _error(path)
    assert f"{path}:3" in str(error) and reason in str(error)
    assert error.issues[0].line == 3


def test_non_utf8_line_is_reported(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"_id": "d2", "text": "caf\xe9"}\n')
    error = _error(path)
    assert f"{path}:2" in str(error) and "not valid UTF-8" in str(error)


def test_empty_corpus_fails_even_in_quarantine_mode(tmp_path):
    path = _jsonl(tmp_path / "corpus.jsonl", [])
    assert "holds no valid document" in str(_error(path, on_bad_rows="quarantine"))
    path = _jsonl(tmp_path / "corpus.jsonl", ['{"_id": "x", "text": ""}'])
    assert "holds no valid document" in str(_error(path, on_bad_rows="quarantine"))


def test_quarantine_keeps_good_rows_and_lists_bad_ones(tmp_path):
    path = _jsonl(tmp_path / "corpus.jsonl", [
        json.dumps(GOOD), "{broken", json.dumps({"_id": "d1", "text": "dup"}), json.dumps({"_id": "d3", "text": "Fine."}),
    ])
    loaded = load_corpus(path, on_bad_rows="quarantine")
    assert [d.doc_id for d in loaded.documents] == ["d1", "d3"]
    assert [(i.line, i.row_id) for i in loaded.quarantined] == [(2, None), (3, "d1")]


def test_duplicate_texts_are_kept_and_reported(tmp_path):
    path = _jsonl(tmp_path / "corpus.jsonl", [json.dumps(GOOD), json.dumps({"_id": "d2", "text": "some   TEXT."})])
    loaded = load_corpus(path)
    assert len(loaded.documents) == 2 and loaded.duplicate_texts == [("d2", "d1")]


def test_beir_sentences_become_spans(tmp_path):
    row = {"_id": 7, "text": "First one. Second one.", "sentences": ["First one.", "Second one."]}
    doc = load_corpus(_jsonl(tmp_path / "c.jsonl", [json.dumps(row)])).documents[0]
    assert doc.doc_id == "7" and [doc.sentence_text(i) for i in range(2)] == ["First one.", "Second one."]


def test_csv_with_column_mapping_and_line_numbers(tmp_path):
    path = tmp_path / "docs.csv"
    pd.DataFrame({"key": ["a", "b", "c"], "body": ["Alpha text.", "", "Gamma text."], "name": ["A", "B", "C"]}).to_csv(path, index=False)
    error = _error(path, id_field="key", text_field="body", title_field="name")
    assert f"{path}:3" in str(error) and "empty text" in str(error)
    loaded = load_corpus(path, id_field="key", text_field="body", title_field="name", on_bad_rows="quarantine")
    assert [(d.doc_id, d.title) for d in loaded.documents] == [("a", "A"), ("c", "C")]


def test_parquet_corpus(tmp_path):
    path = tmp_path / "docs.parquet"
    pd.DataFrame({"_id": ["x", "y"], "text": ["X text.", "Y text."]}).to_parquet(path)
    assert [d.doc_id for d in load_corpus(path).documents] == ["x", "y"]


def test_folder_of_markdown_files(tmp_path):
    (tmp_path / "docs" / "safety").mkdir(parents=True)
    (tmp_path / "docs" / "safety" / "forklifts.md").write_text("# Forklift rules\n\nDrive slowly. Honk at corners.\n")
    (tmp_path / "docs" / "notes.txt").write_text("Plain notes.")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")
    docs = {d.doc_id: d for d in load_corpus(tmp_path / "docs").documents}
    assert set(docs) == {"safety/forklifts.md", "notes.txt"}
    assert docs["safety/forklifts.md"].title == "Forklift rules"
    assert docs["safety/forklifts.md"].text.startswith("Drive slowly.")


def test_folder_with_non_utf8_file_names_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "ok.txt").write_text("Fine.")
    (tmp_path / "docs" / "bad.txt").write_bytes(b"line one\nlatin-1 \xe9\n")
    error = _error(tmp_path / "docs")
    assert f"{tmp_path / 'docs' / 'bad.txt'}:2" in str(error)


def _labels(tmp_path, queries, qrels, evidence=None):
    q = _jsonl(tmp_path / "queries.jsonl", [json.dumps(r) for r in queries])
    r = tmp_path / "qrels.tsv"
    r.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in qrels))
    e = _jsonl(tmp_path / "evidence.jsonl", [json.dumps(x) for x in evidence]) if evidence is not None else None
    return q, r, e


def test_qrels_naming_unknown_document_or_query(tmp_path):
    q, r, _ = _labels(tmp_path, [{"_id": "q1", "text": "a?"}], [("q1", "d1", 1), ("q1", "nope", 1), ("ghost", "d1", 1)])
    with pytest.raises(InputDataError) as info:
        load_labels(q, r, {"d1"})
    text = str(info.value)
    assert f"{r}:3" in text and "unknown document id 'nope'" in text
    assert f"{r}:4" in text and "unknown query id 'ghost'" in text
    kept = load_labels(q, r, {"d1"}, on_bad_rows="quarantine")
    assert kept.qrels == {"q1": {"d1": 1}} and len(kept.quarantined) == 2


def test_evidence_sentence_out_of_range(tmp_path):
    from domret_pipeline.core.data.documents import Document

    q, r, e = _labels(tmp_path, [{"_id": "q1", "text": "a?"}], [("q1", "d1", 1)],
                      [{"query_id": "q1", "doc_id": "d1", "label": "SUPPORT", "sentences": [5]}])
    docs = {"d1": Document("d1", "One. Two.", "", [(0, 4), (5, 9)])}
    with pytest.raises(InputDataError, match=r"evidence.jsonl:1.*out of range"):
        load_labels(q, r, {"d1"}, e, docs)


def test_labels_without_any_valid_judgement_fail(tmp_path):
    q, r, _ = _labels(tmp_path, [{"_id": "q1", "text": "a?"}], [("q1", "zzz", 1)])
    with pytest.raises(InputDataError, match="no valid relevance judgement"):
        load_labels(q, r, {"d1"}, on_bad_rows="quarantine")
