"""Deciding a release (the ``release_gate`` check on ``evaluation_report``, asset
``champion_release``): base, champion and challenger compared end to end, and the gate.
"""
