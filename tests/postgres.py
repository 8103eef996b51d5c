"""A real PostgreSQL server for the tests (a pytest plugin: tests/conftest.py loads it).

The server is the machine's own PostgreSQL (initdb, pg_ctl), started once per test session in a
temporary directory, on a free port of 127.0.0.1, and stopped and removed at the session's end.
Each test gets a new database, owned by a user with a password, as its SQLAlchemy URL.
Without the server programs the tests that need them fail in CI (CI=true) and are skipped
elsewhere, with the line that installs them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

USER, PASSWORD = "shakegpt", "s3cret-pw"  # the tests' database user; its password is checked for in outputs


def server_programs() -> Path | None:
    """The directory of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent  # a link on PATH: the directory of the real programs
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, its programs run as the postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("PostgreSQL's programs refuse root, and this machine has no postgres user to run them as")
    return ["runuser", "-u", "postgres", "--"]


def unavailable(message: str) -> None:
    """CI must run every test: there a missing program fails the test; elsewhere it is skipped."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_driver() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg, the PostgreSQL driver, is not installed: make setup (the test extra) installs it")


class Server:
    def __init__(self, programs: Path, root: Path):
        self.programs, self.root, self.port = programs, root, free_port()
        self.data, self.sockets = root / "data", root / "sockets"

    def run(self, program: str, *args: str) -> None:
        result = subprocess.run([*as_server_user(), str(self.programs / program), *args],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            pytest.fail(f"{program} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        # Local (socket) connections are trusted, for the set-up below; TCP ones need a password.
        self.run("initdb", "-D", str(self.data), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        self.sql(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")

    def sql(self, statement: str) -> None:
        self.run("psql", "-h", str(self.sockets), "-p", str(self.port), "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                 "-q", "-c", statement)

    def stop(self) -> None:
        subprocess.run([*as_server_user(), str(self.programs / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)

    def url(self, database: str, password: str = PASSWORD) -> str:
        return f"postgresql+psycopg://{USER}:{password}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    programs = server_programs()
    if programs is None:
        unavailable("PostgreSQL's server programs (initdb, pg_ctl) are not installed: apt-get install postgresql")
    require_driver()
    root = Path(tempfile.mkdtemp(prefix="shakegpt-postgres-"))  # not under pytest's root-only tmp
    (root / "sockets").mkdir()
    if os.geteuid() == 0:
        for path in (root, root / "sockets"):
            shutil.chown(path, "postgres")
    server = Server(programs, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server, request) -> str:
    """A new database of the test's own on the session's server, as an SQLAlchemy URL."""
    database = "db_" + "".join(c if c.isalnum() else "_" for c in request.node.name).lower()[:50]
    postgres_server.sql(f"CREATE DATABASE {database} OWNER {USER}")
    return postgres_server.url(database)
