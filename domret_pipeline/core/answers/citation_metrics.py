"""Citation-aware answer metrics, computed per query and then averaged.

An answer is a list of sentences, each citing spans ``(document id, sentence index)``, or an
abstention ("the corpus holds no evidence"). Gold evidence is a set of ``(document id,
sentence index)`` spans (SciFact's ``evidence.jsonl``); a query without gold evidence is one
the system should abstain on. Definitions follow ALCE (Gao et al., 2023), at two
granularities:

- **citation precision**: the share of the distinct spans an answer cites that are gold
  evidence (sentence level), and the share of the distinct documents it cites that are
  relevant (passage level). A span cited twice counts once. Only answers that cite
  something have a precision; an answer with no citation scores 0 on every metric that needs
  one (it is not left out, so a system cannot gain by citing nothing).
- **citation recall (coverage)**: the share of the gold evidence spans (sentence level) and of
  the gold evidence documents (document level) that the answer cites. An abstention on an
  answerable query covers nothing: recall 0.
- **citation F1**: the harmonic mean of the mean precision and the mean recall, at each level
  (ALCE's citation F1); computed from the means, so it has no per-query value.
- **faithfulness**: the share of answer sentences supported by their own citations. For an
  extractive answer a sentence is supported when it is the text of a span it cites (exact);
  generated answers take a pluggable judge (``supported`` set on each sentence).
- **abstention**: on all queries, accuracy of the abstain/answer decision, and precision and
  recall of abstaining, where the positive class is "the corpus holds no evidence".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

Span = tuple[str, int]  # (document id, sentence index)


@dataclass
class AnswerSentence:
    text: str
    citations: list[Span] = field(default_factory=list)
    supported: bool | None = None  # None: decide by exact match (extractive answers)
    score: float | None = None  # the scorer's score of this sentence (extractive answers)


@dataclass
class Answer:
    query_id: str
    abstained: bool
    sentences: list[AnswerSentence] = field(default_factory=list)
    retrieved: list[str] = field(default_factory=list)  # chunk ids handed to the generator
    evidence_score: float | None = None  # the best sentence score (what the abstention threshold reads)

    def cited(self) -> set[Span]:
        return {span for sentence in self.sentences for span in sentence.citations}

    def as_dict(self) -> dict:
        return asdict(self)


def sentence_supported(sentence: AnswerSentence, span_text) -> bool:
    """Supported by its own citations: the judge's verdict when there is one, else exact
    match of the sentence with one of the cited spans' text (``span_text(span) -> str``)."""
    if sentence.supported is not None:
        return sentence.supported
    normalised = " ".join(sentence.text.split())
    return any(" ".join(span_text(span).split()) == normalised for span in sentence.citations)


def score_answer(answer: Answer, gold: set[Span], relevant_docs: set[str], span_text) -> dict[str, float | None]:
    """Per-query metrics; None where a metric does not apply to this query."""
    answerable = bool(gold)
    row: dict[str, float | None] = {
        "answerable": float(answerable), "abstained": float(answer.abstained),
        "abstention_correct": float(answer.abstained != answerable),
    }
    cited = answer.cited() if not answer.abstained else set()
    cited_docs = {doc for doc, _ in cited}
    if answer.abstained:
        row.update(citation_precision=None, citation_precision_doc=None, faithfulness=None)
    elif not cited:
        row.update(citation_precision=0.0, citation_precision_doc=0.0,
                   faithfulness=0.0 if answer.sentences else None)
    else:
        row["citation_precision"] = len(cited & gold) / len(cited) if answerable else 0.0
        row["citation_precision_doc"] = len(cited_docs & relevant_docs) / len(cited_docs)
        row["faithfulness"] = float(np.mean([sentence_supported(s, span_text) for s in answer.sentences]))
    if answerable:
        gold_docs = {doc for doc, _ in gold}
        row["citation_recall"] = len(cited & gold) / len(gold)
        row["citation_recall_doc"] = len(cited_docs & gold_docs) / len(gold_docs)
    else:
        row["citation_recall"] = row["citation_recall_doc"] = None
    return row


def aggregate(rows: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """Means over the queries where each metric applies, and abstention precision/recall."""
    names = sorted({k for r in rows.values() for k in r if k not in ("answerable", "abstained", "abstention_correct")})
    summary = {}
    for name in names:
        values = [r[name] for r in rows.values() if r.get(name) is not None]
        summary[name] = float(np.mean(values)) if values else float("nan")
    for level in ("", "_doc"):
        p, r = summary.get(f"citation_precision{level}", float("nan")), summary.get(f"citation_recall{level}", float("nan"))
        summary[f"citation_f1{level}"] = float(2 * p * r / (p + r)) if p + r > 0 else (0.0 if p + r == 0 else float("nan"))
    should = np.array([r["answerable"] == 0.0 for r in rows.values()])
    did = np.array([r["abstained"] == 1.0 for r in rows.values()])
    summary["abstention_accuracy"] = float(np.mean(should == did)) if len(rows) else float("nan")
    summary["abstention_precision"] = float((should & did).sum() / did.sum()) if did.sum() else float("nan")
    summary["abstention_recall"] = float((should & did).sum() / should.sum()) if should.sum() else float("nan")
    summary["answered_rate"] = float(1.0 - did.mean()) if len(rows) else float("nan")
    return summary
