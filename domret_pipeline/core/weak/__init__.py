"""Weak supervision from the corpus itself (asset ``pseudo_queries``): weakly labeled
(query, positive passage) pairs made without any model or judgement, for when labels are few.
"""
