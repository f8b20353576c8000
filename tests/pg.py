"""A throwaway PostgreSQL server for the tests, started from its binaries.

The `postgres` fixture runs one server for the whole test session: a new
cluster made with `initdb` in a temporary directory, listening on a free port
of 127.0.0.1 (and on a unix socket in that directory), with durability off
for speed. PostgreSQL refuses to run as root, so under root the cluster
belongs to the `postgres` system user. Tests that need PostgreSQL fail, never
skip, when it is not installed: install Debian's `postgresql` package.

`tests/conftest.py` registers this module as a plugin, so every suite shares
the one server; each test makes its own database on it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import free_port

STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
SUPERUSER = "postgres"
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
}


class PostgresServer:
    """A running throwaway server; `url()` gives a database URL on it."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root
        self.port = port
        self.log = root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database_url: str | None = None) -> str:
        """Run one statement with psql as the superuser, in the server's
        `postgres` database or the one of `database_url`; return its output."""
        done = subprocess.run(
            [self.bindir / "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-d", database_url or self.url(), "-c", statement],
            capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(f"psql failed on {statement!r}: {done.stderr}")
        return done.stdout

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = f"test_{uuid.uuid4().hex}"
        self.sql(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database`, disconnecting its clients."""
        self.sql(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; stopped and deleted at the end."""
    bindir, owner = _bindir(), _owner()
    root = Path(tempfile.mkdtemp(prefix="presence-pg-"))
    try:
        if owner:
            os.chown(root, owner["user"], owner["group"])
        _initdb(bindir, root / "data", owner)
        server = PostgresServer(bindir, root, free_port())
        options = [arg for key, value in SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        with server.log.open("wb") as log:
            process = subprocess.Popen(
                [bindir / "postgres", "-D", root / "data", "-p", str(server.port), "-k", root,
                 *options],
                cwd=root, stdout=log, stderr=subprocess.STDOUT, **owner,
            )  # fmt: skip
        try:
            _wait_until_ready(server, process)
            yield server
        finally:
            process.send_signal(signal.SIGINT)  # fast shutdown: disconnects every client
            try:
                process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _bindir() -> Path:
    """Where initdb and postgres are: $PG_BINDIR, Debian's newest, or $PATH."""
    if "PG_BINDIR" in os.environ:
        return Path(os.environ["PG_BINDIR"])
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    found = debian[-1] if debian else shutil.which("initdb")
    if found is None:
        pytest.fail(
            "PostgreSQL is not installed (no initdb): `apt-get install -y postgresql`, "
            "or set PG_BINDIR to its bin directory."
        )
    return Path(found).parent


def _owner() -> dict[str, Any]:
    """subprocess arguments that run PostgreSQL as a user it accepts: not root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("Under root, the test cluster needs the `postgres` system user to own it.")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _initdb(bindir: Path, data: Path, owner: dict[str, Any]) -> None:
    done = subprocess.run(
        [bindir / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "--no-sync",
         "-E", "UTF8", "--locale=C"],
        cwd=data.parent, capture_output=True, text=True, timeout=STARTUP_TIMEOUT, **owner,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"initdb failed:\n{done.stdout}{done.stderr}")


def _wait_until_ready(server: PostgresServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"PostgreSQL exited with {process.returncode}:\n{server.log.read_text()}")
        ready = subprocess.run(
            [server.bindir / "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(server.port)],
            timeout=STARTUP_TIMEOUT,
        )
        if ready.returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"PostgreSQL not ready within {STARTUP_TIMEOUT}s:\n{server.log.read_text()}")
