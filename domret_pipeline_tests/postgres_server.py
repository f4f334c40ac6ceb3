"""A throw-away PostgreSQL server for the tests: a fresh cluster in a temporary folder, started
with the image's ``initdb``/``pg_ctl``, listening on a free local port, removed at the end.

``initdb`` refuses to run as root, and the tests run as root in CI: then the cluster belongs to
the ``postgres`` system user and every server command runs through ``runuser -u postgres``.
The folder is made with :func:`tempfile.mkdtemp` (under ``/tmp`` as root: not pytest's
``tmp_path``, whose parents only root may enter). Authentication is ``trust`` on 127.0.0.1 and
the folder's own socket: nothing outside the machine can reach it, and it lives one test run.

Missing binaries are an error, not a skip: CI (``.ci/run``) checks they are installed first,
and a developer without PostgreSQL deselects these tests with ``-m "not postgres"``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Where Debian's packages put the server programs when /usr/bin has no link to them.
SEARCH_DIRS = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
SERVER_USER = "postgres"


def server_binary(name: str) -> str:
    """``initdb``/``pg_ctl`` from PATH, else from the newest ``/usr/lib/postgresql/<n>/bin``."""
    found = shutil.which(name) or next((f"{d}/{name}" for d in SEARCH_DIRS if os.access(f"{d}/{name}", os.X_OK)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (looked on PATH and in /usr/lib/postgresql/*/bin): "
                           "install the server (Debian: apt-get install postgresql-15), or deselect these tests "
                           "with -m 'not postgres'")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """``start()`` a cluster, ``create_database(name)`` -> a SQLAlchemy URL, ``stop()`` it and
    delete its folder."""

    def __init__(self):
        root = os.geteuid() == 0
        # As root, under /tmp itself: the postgres user must be able to reach the folder, and a
        # TMPDIR (or pytest's tmp_path) under a root-only folder would not let it.
        self.folder = Path(tempfile.mkdtemp(prefix="domret-pg-", dir="/tmp" if root else None))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self.user = SERVER_USER
        self._as_server_user: list[str] = []
        if root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise RuntimeError(f"running as root, initdb needs a non-root user: there is no {SERVER_USER!r} "
                                   "user (Debian's postgresql package creates it)") from None
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._as_server_user = ["runuser", "-u", SERVER_USER, "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *command: str) -> None:
        done = subprocess.run([*self._as_server_user, *command], cwd=self.folder, capture_output=True, text=True)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}")

    def start(self) -> "PostgresServer":
        # --no-sync and fsync=off: a test cluster need not survive a power cut, and syncing is
        # most of initdb's time on a shared disk.
        self._run(server_binary("initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-locale", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(server_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log),
                  "-w", "-t", "300", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(server_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server, stopped and deleted on exit (also when it fails half-way through starting)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
