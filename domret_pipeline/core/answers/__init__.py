"""The answer step after search: extractive answers that cite sentence spans or abstain, the
optional LLM generator, and the answer and citation types with their per-query metrics.
"""
