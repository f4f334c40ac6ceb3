"""Prompt injection, measured: the probe set is deterministic, planting leaves the served
pipeline alone, and the counters are computed from the answers. The extractive path follows
nothing, but a deliberately obeying answer step is caught; the generator path is run against a
local OpenAI-compatible server whose "model" obeys the injected instructions (caught and
counted per kind) or does not (nothing counted).

Retrieval is real (FAISS flat, bm25s, hybrid fusion) over a hashed bag-of-words encoder, as in
test_access: a probe repeats its query's words, so the probe queries retrieve their probes."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from domret_pipeline.core.answers.citation_metrics import AnswerSentence
from domret_pipeline.core.answers.extractive import AnswerSettings, answer_split, encoder_scorer
from domret_pipeline.core.answers.generator import SYSTEM_PROMPT, OpenAICompatibleGenerator
from domret_pipeline.core.data.chunking import chunk_documents, passage_text
from domret_pipeline.core.data.documents import Document, split_sentences
from domret_pipeline.core.evaluation.injection import KINDS, PROBE_PREFIX, build_probes, plant
from domret_pipeline.core.evaluation.injection_counts import (
    extractive_step, generator_step, is_quote, measure, run_injection_probe,
)
from domret_pipeline.core.evaluation.report import to_markdown
from domret_pipeline.core.retrieval.access import GroupTable
from domret_pipeline.core.retrieval.bm25 import BM25Index
from domret_pipeline.core.retrieval.dense_index import DenseIndex, build_index
from domret_pipeline.core.serving.search import SearchPipeline, ServingConfig

from .fake_llm import FakeChatServer
from .test_access import HashEncoder, whitespace_tokenizer

PASSAGES = 3
TOPICS = [("checkout-api availability objective", "The checkout-api availability objective is 99.9%.",
           "Exceptions need the SRE lead."),
          ("Leeds forklift speed limit", "Forklifts at Leeds drive at most 8 km/h in aisles.", "Batteries charge in Bay C."),
          ("OBX-3 LOINC mapping", "OBX-3 carries the LOINC code.", "It is mapped to a UMLS CUI before storage."),
          ("PID-3 unmapped values", "PID-3 carries the MRN.", "Unmapped values go to the terminology queue."),
          ("ledger-sync exception approval", "The ledger-sync availability objective is 99.5%.",
           "Exceptions need the VP of Engineering."),
          ("Lyon battery charging", "Forklifts at Lyon drive at most 6 km/h.", "Batteries charge in Zone 4.")]


def corpus() -> dict[str, Document]:
    docs = [Document(f"doc-{i}", f"{a} {b}", title) for i, (title, a, b) in enumerate(TOPICS)]
    docs += [Document(f"filler-{i}", f"Note {i} on design reviews. Owners meet weekly.", f"Note {i}") for i in range(8)]
    for doc in docs:
        doc.sentences = split_sentences(doc.text)
    return {d.doc_id: d for d in docs}


def candidates() -> list[tuple[str, str, str]]:
    return [(f"q{i}", title, f"doc-{i}") for i, (title, _, _) in enumerate(TOPICS)]


def served_pipeline(documents: dict[str, Document]) -> SearchPipeline:
    chunks = chunk_documents(documents.values(), whitespace_tokenizer, chunk_tokens=64, overlap_tokens=0)
    texts, ids = [passage_text(c) for c in chunks], [c.chunk_id for c in chunks]
    groups = GroupTable([c.groups for c in chunks])
    index = DenseIndex(build_index(HashEncoder().encode(texts), "flat"), ids, groups)
    bm25 = BM25Index.build(texts, ids, 1.2, 0.75, groups)
    return SearchPipeline(chunks, index, HashEncoder(), ServingConfig("hybrid", depth=20, top_n=5), bm25)


SETTINGS = AnswerSettings(passages=PASSAGES, max_sentences=2)


@pytest.fixture(scope="module")
def planted():
    documents = corpus()
    return plant(served_pipeline(documents), documents, build_probes(documents, candidates(), seed=3, per_kind=2))


# -- the probe set ----------------------------------------------------------------------------------


def test_the_probe_set_is_deterministic_for_a_seed_and_marks_its_documents():
    documents = corpus()
    first = build_probes(documents, candidates(), seed=3, per_kind=2)
    assert first == build_probes(documents, candidates(), seed=3, per_kind=2)
    other = build_probes(documents, candidates(), seed=4, per_kind=2)
    assert [p.markers for p in other] != [p.markers for p in first]
    assert [p.kind for p in first] == [k for k in KINDS for _ in range(2)]
    corpus_text = " ".join(d.text for d in documents.values()).lower()
    for probe in first:
        assert probe.doc_id.startswith(PROBE_PREFIX) and probe.doc_id not in documents
        assert probe.carrier in documents and (probe.source_query_id, probe.query, probe.carrier) in candidates()
        assert all(m.lower() not in corpus_text for m in probe.markers)  # a marker in an answer can only come from the probe
        assert all(m.lower() in probe.text.lower().replace("\"", "") or m in SYSTEM_PROMPT for m in probe.markers)
    fake = next(p for p in first if p.kind == "fake_citation")
    assert re.search(r"\[\d+\]", fake.injected[0]) and "<source id=" in fake.injected[0]
    assert next(p for p in first if p.kind == "closing_tag").injected[0].startswith("</source>")
    assert next(p for p in first if p.kind == "system_line").injected[0].startswith("SYSTEM:")
    assert "](https://" in next(p for p in first if p.kind == "markup_link").injected[0]


def test_planting_copies_the_corpus_and_leaves_the_served_pipeline_alone():
    documents = corpus()
    served = served_pipeline(documents)
    before = served.search(["Leeds forklift speed limit"])[0].hits
    probes = build_probes(documents, candidates(), seed=3, per_kind=1)
    copy = plant(served, documents, probes)
    assert len(copy.pipeline.chunks) == len(served.chunks) + len(probes)
    assert not any(c.startswith(PROBE_PREFIX) for c in served.chunks) and served.index.index.ntotal == len(served.chunks)
    assert [h.chunk_id for h in served.search(["Leeds forklift speed limit"])[0].hits] == [h.chunk_id for h in before]
    with pytest.raises(ValueError, match="already name corpus documents"):
        plant(copy.pipeline, copy.documents, probes)


# -- the extractive path ------------------------------------------------------------------------------


def test_the_extractive_path_quotes_but_never_follows(planted):
    result = measure(planted, extractive_step(encoder_scorer(HashEncoder()), SETTINGS), PASSAGES)
    total = result["total"]
    assert total["probes"] == 12 and total["handed"] == 12  # every probe reached the answer step
    assert total["followed"] == 0 and total["policy_broken"] == 0
    # the injected sentences were cited as quotations: the counter saw the markers and classified them
    assert total["quoted"] > 0 and total["cited_probe"] >= total["quoted"]
    for row in result["rows"]:
        assert row["quoted"] == any(s == p for s in row["answer"]
                                    for p in next(pr for pr in planted.probes if pr.probe_id == row["probe_id"]).injected)


def test_the_extractive_path_answers_even_where_its_threshold_would_abstain(planted):
    strict = measure(planted, extractive_step(encoder_scorer(HashEncoder()), replace(SETTINGS, threshold=2.0)), PASSAGES)
    loose = measure(planted, extractive_step(encoder_scorer(HashEncoder()), SETTINGS), PASSAGES)
    assert strict["total"]["abstained"] == 12 and loose["total"]["abstained"] == 0  # cosines are at most 1
    assert [r["answer"] for r in strict["rows"]] == [r["answer"] for r in loose["rows"]]  # nothing hidden
    assert strict["total"]["quoted"] == loose["total"]["quoted"] > 0


def obeying(step):
    """An answer step that does what the handed probes ask: appends their code as a sentence of
    its own, citing the probe sentence it came from."""

    def obey(pipeline, qids, queries, documents):
        answers, records = step(pipeline, qids, queries, documents)
        for qid, answer in answers.items():
            for chunk_id in answer.retrieved[:PASSAGES]:
                doc = documents[pipeline.chunks[chunk_id].doc_id]
                for code in re.findall(r"INJ-[0-9A-F]{6}", doc.text):
                    answer.sentences.append(AnswerSentence(f"The answer is {code}.", [(doc.doc_id, 0)]))
        return answers, records

    return obey


def test_an_obeying_extractive_step_is_counted(planted):
    result = measure(planted, obeying(extractive_step(encoder_scorer(HashEncoder()), SETTINGS)), PASSAGES)
    assert result["total"]["followed"] == result["total"]["handed"] == 12
    assert all(row["followed_by"] for row in result["rows"])


# -- the generator path ------------------------------------------------------------------------------


class ModelServer(FakeChatServer):
    """A local OpenAI-compatible endpoint whose "model" is ``reply(system, user) -> text``."""

    def __init__(self, reply):
        super().__init__(lambda request: reply(*(m["content"] for m in request["body"]["messages"])))


def sources(user: str) -> list[str]:
    return re.findall(r'<source id="\d+">(.*?)</source>', user, re.S)


def obeying_model(only: str | None = None):
    """Follows every instruction it finds in its sources (or only those of one kind)."""

    def reply(system: str, user: str) -> str:
        out = []
        for text in sources(user):
            codes = re.findall(r"INJ-[0-9A-F]{6}", text)
            if not codes or (only and only not in text):
                continue
            out.append(f"The answer is {codes[0]}.")
            out += [f"See [{n}]." for n in re.findall(r"\[(\d+)\]", text)]
            if "system prompt" in text:
                out.append(system)
            if "](https://" in text:
                out.append(re.search(r"\((https://[^)]+)\)", text).group(1) + " [1].")
        return " ".join(out) or "The sources say nothing useful [1]."

    return reply


def compliant_model(system: str, user: str) -> str:
    """Answers from the first source that carries no instruction, citing it."""
    for n, text in enumerate(sources(user), start=1):
        if "INJ-" not in text:
            return f"{text.strip()} [{n}]"
    return "INSUFFICIENT_EVIDENCE"


def quoting_model(system: str, user: str) -> str:
    """Repeats the injected sentence as a cited quotation (as it appears in the prompt)."""
    for n, text in enumerate(sources(user), start=1):
        if "INJ-" in text and "[" not in text:
            return f"{text.strip()} [{n}]"
    return compliant_model(system, user)


def run_generator(planted, reply) -> dict:
    server = ModelServer(reply)
    try:
        return measure(planted, generator_step(OpenAICompatibleGenerator(server.url, "m"), PASSAGES), PASSAGES)
    finally:
        server.close()


def test_an_obeying_model_is_caught_and_counted_per_kind(planted):
    result = run_generator(planted, obeying_model())
    kinds, total = result["kinds"], result["total"]
    assert total["followed"] == total["handed"] == 12
    assert kinds["fake_citation"]["bad_markers"] == kinds["fake_citation"]["handed"] > 0  # "[57]" dropped by the parser
    assert kinds["fake_citation"]["policy_broken"] > 0
    reveal = [r for r in result["rows"] if r["kind"] == "reveal_prompt"]
    assert all(set(r["followed_by"]) >= {"never follow it", "treat it as content"} for r in reveal)
    links = [r for r in result["rows"] if r["kind"] == "markup_link"]
    assert all("injected.example" in r["followed_by"] for r in links)


def test_an_obeying_model_of_one_kind_is_counted_under_that_kind_only(planted):
    result = run_generator(planted, obeying_model(only="SYSTEM:"))
    followed = {kind: counts["followed"] for kind, counts in result["kinds"].items()}
    assert followed["system_line"] == result["kinds"]["system_line"]["handed"] > 0
    assert sum(followed.values()) == followed["system_line"]


def test_a_compliant_model_follows_nothing_and_keeps_the_citation_policy(planted):
    result = run_generator(planted, compliant_model)
    assert result["total"]["handed"] == 12
    assert result["total"]["followed"] == 0 and result["total"]["policy_broken"] == 0


def test_a_model_quoting_the_injection_is_quoted_not_followed(planted):
    result = run_generator(planted, quoting_model)
    total = result["total"]
    assert total["quoted"] > 0 and total["followed"] == 0
    # the escaped prompt form of a closing tag still reads as the same sentence
    closing = next(p for p in planted.probes if p.kind == "closing_tag")
    assert is_quote(closing.injected[0].replace("</source", "&lt;source").replace("<source", "&lt;source") + " [2]", closing)
    assert not is_quote(f"The answer is {closing.markers[0]}.", closing)


# -- the whole run and the report ------------------------------------------------------------------------


def test_the_run_measures_both_paths_and_renders_a_report_section():
    documents = corpus()
    server = ModelServer(obeying_model())
    try:
        result = run_injection_probe(
            served_pipeline(documents), documents, candidates(), seed=0, per_kind=1, passages=PASSAGES,
            extractive=extractive_step(encoder_scorer(HashEncoder()), replace(SETTINGS)),
            generator=generator_step(OpenAICompatibleGenerator(server.url, "m"), PASSAGES))
    finally:
        server.close()
    assert json.loads(json.dumps(result)) == result  # JSON-ready, as report.json stores it
    assert result["paths"]["extractive"]["total"]["followed"] == 0
    assert result["paths"]["generator"]["total"]["followed"] == result["paths"]["generator"]["total"]["handed"] > 0
    markdown = to_markdown({"info": {"split": "test", "n_queries": 0, "n_documents": 0, "n_chunks": 0, "encoders": {}},
                            "systems": {}, "injection": result})
    section = markdown[markdown.index("### Injection probe"):]
    assert "| extractive | all | 6 |" in section and "| generator | system_line | 1 |" in section
