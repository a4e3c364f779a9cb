"""A real PostgreSQL server for tests: Debian's ``postgresql`` package (``make postgres`` installs it), a data
directory of the test run's own, a free port on 127.0.0.1, and a database of its own for each test.

The server starts once per test session, on first use, and stops at its end. As root (CI, this machine), the
server runs as the package's ``postgres`` user, since PostgreSQL refuses to run as root; its data directory is
handed to that user. ``fsync=off``: a test's data need not survive a power cut, and the suite runs faster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import psycopg

__all__ = ["PostgresServer", "find_binaries"]

START_SECONDS = 60


def find_binaries() -> Path | None:
    """The folder with ``initdb`` and ``postgres`` (the newest installed major version), or None."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One running server; :meth:`database` makes a fresh database on it and gives its URL."""

    root: Path
    port: int
    user: str
    process: subprocess.Popen[bytes]

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    @classmethod
    @contextlib.contextmanager
    def running(cls, kept: Path | None = None) -> Iterator[PostgresServer]:
        """A server in a folder of its own under the system's temporary folder (pytest's are private to the
        user running the tests, which the server's user cannot enter), removed when it stops; or, with
        ``kept``, in that folder, made there the first time and started again from it after (benchmarks that
        reuse what they stored)."""
        binaries = find_binaries()
        if binaries is None:
            raise RuntimeError("PostgreSQL is not installed: run `make postgres` (apt-get install postgresql).")
        if kept is not None:
            kept.mkdir(parents=True, exist_ok=True)
            with cls._started(binaries, kept.resolve()) as server:
                yield server
            return
        root = Path(tempfile.mkdtemp(prefix="threadline-postgres-"))
        try:
            with cls._started(binaries, root) as server:
                yield server
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @classmethod
    @contextlib.contextmanager
    def _started(cls, binaries: Path, root: Path) -> Iterator[PostgresServer]:
        data, sockets = root / "data", root / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        as_root = os.geteuid() == 0
        run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
        user = "postgres" if as_root else os.environ.get("USER", "postgres")
        if as_root:
            shutil.chown(root, "postgres")
            shutil.chown(sockets, "postgres")
        if not (data / "PG_VERSION").exists():
            made = subprocess.run(
                [*run_as, str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            if made.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{made.stderr.decode(errors='replace')}")
        port = _free_port()
        log = (root / "server.log").open("wb")
        process = subprocess.Popen(
            [*run_as, str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        server = cls(root, port, user, process)
        try:
            server._wait_ready()
            yield server
        finally:
            process.terminate()  # a "smart" shutdown would wait for every client: SIGTERM is "fast"
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()

    def _wait_ready(self) -> None:
        """Until the server accepts a connection (it fails the test when the server exits or never does)."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start:\n{(self.root / 'server.log').read_text()}")
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)  # polling a condition: whether the server accepts connections yet

    def database(self, name: str | None = None) -> str:
        """A new, empty database (or the one called ``name``, made if missing); its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def drop(self, url: str) -> None:
        """Remove the database at ``url`` (made by :meth:`database`), closing what is still connected to it."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
