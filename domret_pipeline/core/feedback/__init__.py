"""Users' relevance feedback (``domret feedback``, the feedback sensor, asset
``labeling_queue``): the store, reading and checking feedback files, and active learning.
"""
