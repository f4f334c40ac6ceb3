"""Where the graph starts (assets ``corpus_documents``, ``corpus_chunks``, ``labeled_queries``):
documents and their sentence spans, the loaders (validation that names the file and line),
chunking, labeled queries and their frozen train/dev/test split, JSON Lines serialization.
"""
