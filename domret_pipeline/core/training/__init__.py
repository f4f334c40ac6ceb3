"""What is learned from the labels (assets ``hard_negatives``, ``embedding_checkpoint``,
``reranker_adapter``): positive chunks, hard-negative mining, the bi-encoder's training rows and
dev set and its fine-tuning, the reranker's data and LoRA training, and the trainer plumbing
both share (early stopping, the outcome fields). Loading and scoring a trained reranker is
query-time code: :mod:`..retrieval.cross_encoder`.
"""
