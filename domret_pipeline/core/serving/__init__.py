"""What serves a query (asset ``serving_config``, ``domret search``, the API): the search
pipeline, the only code that ranks, with its :class:`~.search.ServingConfig` (the serving
configuration: which stages run and how), the ranking it derives from the stages' outputs, the
query rewrite before its first stage (pseudo-relevance feedback); the dev choice of that configuration and its latency
budget; opening a serving bundle (the ``serving_config`` artifact: the chosen configuration
with the path and hash of everything it serves); and the service that serves one search or
answer from it, timed and written to the audit trail.
"""
