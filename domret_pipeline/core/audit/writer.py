"""The background writer between the serving path and the audit store.

A search must not wait for, or fail with, its audit row: a remote database may be slow or
down, a SQLite file may be locked or on a full disk. So :meth:`AuditWriter.submit` only puts
the record on a bounded in-process queue and returns; one daemon thread opens the store on
first use (migrating it, and purging rows past the retention period when one is set) and
writes the rows in order.

Nothing on this path raises to the caller. A row that cannot be written (the store cannot be
opened, the insert fails, or the queue is full because the store has fallen behind) is
counted in :attr:`AuditWriter.failures` and logged as one warning line on the
``domret.audit`` logger: the first failure, then every hundredth, so a dead store does not
flood the log. The store is reopened for the next row after a failure, so a database that
comes back is written to again.

Rows still queued when the process ends are written by :meth:`close` (registered with
``atexit``), which waits at most ``timeout`` seconds; what it could not write is counted.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from datetime import datetime, timezone
from typing import Callable

from ..sql_store import redacted
from .store import AuditRecord, AuditSettings, AuditStore

LOG = logging.getLogger("domret.audit")
WARN_EVERY = 100  # after the first failure, one warning line per this many
_STOP = object()


class AuditWriter:
    """``settings`` say where rows go; ``store`` (tests, or a caller that already opened one)
    replaces the store the writer would open: anything with ``write(record)``."""

    def __init__(self, settings: AuditSettings | None = None, store=None, queue_size: int = 1000,
                 now: Callable[[], datetime] | None = None):
        if settings is None and store is None:
            raise ValueError("an audit writer needs settings or a store")
        self.settings, self._store = settings, store
        self._opened = store is not None
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._now = now or (lambda: datetime.now(timezone.utc))
        self.written = 0  # rows the store accepted
        self.failures = 0  # rows lost: not written, or dropped because the queue was full
        self.last_error: str | None = None
        self.purged = 0  # rows deleted by the retention purge when the store was opened
        self._closed = False
        atexit.register(self.close)

    @property
    def url(self) -> str:
        """Where rows go, for messages: a database password is hidden."""
        return redacted(self.settings.url) if self.settings else getattr(self._store, "display_url", repr(self._store))

    def submit(self, record: AuditRecord) -> None:
        """Queue one row; returns at once and never raises."""
        try:
            if self._closed:
                raise RuntimeError("the audit writer is closed")
            self._start()
            self._queue.put_nowait(record)
        except queue.Full:
            self.count_failure(f"queue full ({self._queue.maxsize} rows waiting): the store is not keeping up")
        except Exception as error:  # noqa: BLE001 - never let auditing fail a search
            self.count_failure(_one_line(error))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is written or failed; False when ``timeout`` ran out."""
        if self._thread is None:
            return True
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the thread.
        Rows still queued after the wait are counted as failures."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._thread is None:
            return
        if not self.flush(timeout):
            left = self._queue.qsize()
            self.count_failure(f"{left} row(s) still queued after {timeout:g} s at close", count=left)
        try:
            self._queue.put_nowait(_STOP)
        except queue.Full:
            pass

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="domret-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            try:
                if record is _STOP:
                    return
                self._write(record)
            finally:
                self._queue.task_done()

    def _write(self, record: AuditRecord) -> None:
        try:
            store = self._open()
            store.write(record)
            self.written += 1
        except Exception as error:  # noqa: BLE001 - counted and logged, never raised
            if self.settings is not None:
                self._store, self._opened = None, False  # reopen for the next row
            self.count_failure(_one_line(error))

    def _open(self):
        if not self._opened:
            store = AuditStore(self.settings.url, self.settings.query_mode)
            store.migrate()
            if self.settings.retention_days:
                self.purged += store.purge(self.settings.retention_days, self._now())
            self._store, self._opened = store, True
        return self._store

    def count_failure(self, reason: str, count: int = 1) -> None:
        """One row (or ``count``) lost: counted, and logged on the first and every hundredth."""
        with self._lock:
            before = self.failures
            self.failures += count
            self.last_error = reason
        if before == 0 or before // WARN_EVERY != self.failures // WARN_EVERY:
            LOG.warning("audit: row not written to %s (%d lost so far): %s", self.url, self.failures, reason)


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return f"{type(error).__name__}: {text[:300]}"
