"""The pure ML core, one subpackage per stage of the asset graph:

- ``data``: documents, loaders, chunking, labeled queries and their split;
- ``retrieval``: encoder, precision, FAISS and BM25 indexes, embedding cache;
- ``training``: positives, hard-negative mining, bi-encoder and reranker training;
- ``serving``: the search pipeline (the only code that ranks), the dev choice of its
  configuration, latency, opening a serving bundle, and the service that serves (and audits)
  one search or answer;
- ``answers``: extractive answers with citations, the optional LLM generator;
- ``evaluation``: metrics, significance, diagnostics, the frozen-split evaluations, the report;
- ``release``: champion vs challenger end to end, and the release gate;
- ``feedback``: the feedback store, feedback files, active learning;
- ``audit``: the audit trail of served requests, its store and its background writer.

At the top level, what every stage shares: ``artifacts`` (content-addressed artifacts),
``errors`` (input errors naming file and line), ``processes`` (run ownership) and
``progress`` (progress of long steps).

Nothing in this package imports Dagster, so every piece can be used and tested alone.
Heavy libraries (torch, sentence-transformers, faiss) are imported inside functions so that
importing the package stays cheap for the Dagster code server and sensors.
"""
