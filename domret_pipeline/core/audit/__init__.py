"""The audit trail of served requests (``domret audit``, ``core.serving.service``): one row per
search or answer, saying who asked, what served it, what was retrieved with every stage's
score, what was cited, and how long each stage took, so an incident ("the answer on 3 March
cited the wrong SLO exception") can be traced to the bundle and the passages that made it.

- ``store``: the audit database (SQLAlchemy, its own schema version), its rows and retention;
- ``writer``: the background writer the service hands rows to, so that a slow or failing
  store never fails or holds up a search (failures are counted and logged).
"""
