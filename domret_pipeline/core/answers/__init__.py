"""The answer step after search: extractive answers that cite sentence spans or abstain, the
evidence-trained sentence selector that can score their sentences (asset ``sentence_selector``),
the optional LLM generator, and the answer and citation types with their per-query metrics.
"""
