"""What the project's own SQL stores share (the feedback store, the audit store): an engine on
any SQLAlchemy URL, and a schema the project migrates itself.

Each store keeps its applied schema version in a one-row table of its own (so two stores can
share one database) and lists its migrations in order; each migration runs in its own
transaction and bumps the recorded version with it, so a failed migration leaves the previous
version recorded and the next `migrate` retries it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def redacted(url: str) -> str:
    """``url`` fit for a message or a log: a team database's password shown as ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a database URL: nothing to hide
        return url


class VersionedStore:
    """Subclasses set ``kind`` (for messages), ``schema_table``, ``schema_version``,
    ``migrations`` (target version -> ``fn(connection, table, schema)``) and ``migrate_command``,
    call ``super().__init__(url)``, then define ``self.table`` (what migrations create) and
    ``self.schema`` (the version table) on ``self.metadata``."""

    kind: str
    schema_table: str
    schema_version: int
    migrations: dict[int, Callable]
    migrate_command: str

    def __init__(self, url: str):
        from sqlalchemy import MetaData, create_engine

        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine = create_engine(url)
        self.metadata = MetaData()

    @property
    def display_url(self) -> str:
        return redacted(self.url)

    def version(self) -> int:
        from sqlalchemy import inspect, select

        if not inspect(self.engine).has_table(self.schema_table):
            return 0
        with self.engine.connect() as connection:
            return int(connection.execute(select(self.schema.c.version)).scalar() or 0)

    def migrate(self) -> int:
        """Bring the schema to ``schema_version``; returns the version it started from."""
        from sqlalchemy import delete, insert

        start = self.version()
        for target in range(start + 1, self.schema_version + 1):
            with self.engine.begin() as connection:
                if target == 1:
                    self.schema.create(connection, checkfirst=True)
                self.migrations[target](connection, self.table, self.schema)
                connection.execute(delete(self.schema))
                connection.execute(insert(self.schema).values(version=target))
        return start

    def _require_schema(self) -> None:
        if self.version() != self.schema_version:
            raise RuntimeError(f"{self.display_url}: {self.kind} schema is at version {self.version()}, expected "
                               f"{self.schema_version}: run `{self.migrate_command}`")
