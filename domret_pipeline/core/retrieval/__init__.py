"""The retrievers and the models they run (assets ``base_faiss_index``, ``bm25_index`` and
``faiss_index``, the tuned index): loading the encoder, loading and scoring with a
cross-encoder (the reranker at query time), inference precision and its dev parity check, the
FAISS dense index, BM25, the embedding cache, and chunk hits to document rankings.
"""
