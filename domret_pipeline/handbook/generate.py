"""The bundled sample data set: an engineering handbook of a fictional logistics company.

Deterministic (fixed seed): re-running it reproduces the committed files byte for byte.

What it is built to show (README, "The bundled sample"):
- **On-topic but wrong passages.** Passages about different services, sites and interfaces
  share their wording on purpose, so a retriever has to match the entity *and* the
  constraint.
- **Domain vocabulary the base model cannot know.** Runbooks, deploy notes and dependency
  pages name a service by its internal codename ("Kestrel"), and safety notices name a
  warehouse by its site code ("DC-07"), while people ask by service name and city. Only the
  service catalogue and the site directory connect the two, so the base model ranks the
  twenty look-alike runbooks almost at random, and fine-tuning on the training queries
  teaches it the organisation's names.
- **Questions to abstain on.** Some questions ask for a fact their on-topic passage does not
  state (a Grafana dashboard, a contract value, a fire warden's name): they have a relevant
  document but no evidence sentence, as SciFact's claims without evidence, and the right
  end-to-end behaviour is to abstain.

    domret sample domret_pipeline/sample_data/handbook
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

SEED = 20261127


@dataclass
class Handbook:
    """The passages, queries, qrels and evidence under construction, and the one random
    generator every family draws from (in a fixed order, hence the byte-for-byte files)."""

    rng: random.Random
    docs: list[dict] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)
    qrels: list[tuple[str, str, int]] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)

    def doc(self, doc_id: str, title: str, sentences: list[str], topic: str) -> dict:
        passage = {"_id": doc_id, "title": title, "text": " ".join(sentences), "sentences": sentences, "topic": topic}
        self.docs.append(passage)
        return passage

    def ask(self, qid: str, text: str | list[str], doc: dict, sentence: int | None, slice_: str) -> None:
        """A query whose relevant passage is ``doc``; ``sentence`` is its evidence sentence,
        or None for a question the passage does not answer (abstain). A list of phrasings
        picks one at random: people ask in full questions and in keywords."""
        if isinstance(text, list):
            text = self.rng.choice(text)
        self.queries.append({"_id": qid, "text": text, "slice": slice_})
        self.qrels.append((qid, doc["_id"], 1))
        if sentence is not None:
            self.evidence.append({"query_id": qid, "doc_id": doc["_id"], "label": "SUPPORT", "sentences": [sentence]})

    def pick(self, options: list):
        return self.rng.choice(options)


def build() -> tuple[list[dict], list[dict], list[tuple[str, str, int]], list[dict]]:
    """(passages, queries, qrels, evidence) of the handbook, the same on every call."""
    from . import clinical, people, services, sites

    handbook = Handbook(random.Random(SEED))
    services.add(handbook)
    sites.add(handbook)
    clinical.add(handbook)
    people.add(handbook)
    return handbook.docs, handbook.queries, handbook.qrels, handbook.evidence
