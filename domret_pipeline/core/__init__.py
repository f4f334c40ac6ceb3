"""The pure ML core: loading, chunking, encoding, indexing, retrieval and metrics.

Nothing in this package imports Dagster, so every piece can be used and tested alone.
Heavy libraries (torch, sentence-transformers, faiss) are imported inside functions so that
importing the package stays cheap for the Dagster code server and sensors.
"""
