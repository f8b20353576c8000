"""Fixtures that run the presence server as a real process.

`server` is one server for the whole session with a short lease TTL (2 s), so
expiry tests are quick; every test makes its own domain, so tests stay
independent on the shared server. `steady_server` has a long TTL, for the few
tests that must tell a seat freed at once from one freed by lease expiry.
`server_process` is a server of a test's own, which the test may kill or stop
and start again on the same database (restarts, graceful shutdown).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from server.client import Harness, Server
from server.raw import RawWebSocket

pytest_plugins = ["pg"]  # the `postgres` fixture, shared by every suite

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT_INTERVAL = 1
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0
#: The lease TTL of `server_process`: long enough to restart the server and
#: reconnect within it, short enough to wait for a lease to expire.
RESTART_LEASE_TTL = 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, stderr: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(trust_env=False, timeout=1.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{stderr.read_text()}")
            try:
                answer = http.get(f"{base_url}/healthz")
            except httpx.TransportError:
                pass
            else:
                if answer.status_code == 200 and answer.json() == {"status": "ok"}:
                    return
            time.sleep(0.1)
    pytest.fail(f"server not healthy within {STARTUP_TIMEOUT}s:\n{stderr.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """`python -m presence serve` on SQLite in `workdir`, as a process that can
    be stopped (gracefully or with SIGKILL) and started again on the same
    database file, port and admin token.

    The logs of every run are appended to `workdir`/stdout.log and stderr.log.
    """

    def __init__(self, workdir: Path, lease_ttl: int, extra: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.extra = tuple(extra)  # more `serve` flags, e.g. ("--auth-failures-per-minute", "3")
        self.server = Server(
            f"http://127.0.0.1:{_free_port()}",
            f"admin-{os.urandom(16).hex()}",
            HEARTBEAT_INTERVAL,
            lease_ttl,
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def stderr(self) -> Path:
        return self.workdir / "stderr.log"

    def start(self, *more: str, admin_token_env: bool = True) -> None:
        """Start the server and wait until it is healthy.

        `more` are `serve` flags for this start only; without `admin_token_env`
        the server is not given `PRESENCE_ADMIN_TOKEN`.
        """
        assert self.process is None or self.process.poll() is not None, "already running"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        if admin_token_env:
            env["PRESENCE_ADMIN_TOKEN"] = self.server.admin_token
        # The suite refuses bad tokens on purpose, all from 127.0.0.1: only the
        # tests of token guessing set a real limit (with the flag).
        env["PRESENCE_AUTH_FAILURES_PER_MINUTE"] = "1000000"
        command = [
            sys.executable,
            "-m",
            "presence",
            "serve",
            "--database",
            f"sqlite:///{self.workdir / 'presence.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            self.server.base_url.rsplit(":", 1)[1],
            "--heartbeat-interval",
            str(HEARTBEAT_INTERVAL),
            "--lease-ttl",
            str(self.server.lease_ttl),
            *self.extra,
            *more,
        ]
        with (self.workdir / "stdout.log").open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        _wait_until_healthy(self.process, self.server.base_url, self.stderr)

    def kill(self) -> None:
        """SIGKILL: the server frees nothing and tells no one."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def terminate(self) -> int:
        """SIGTERM, then wait for the exit; returns the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(SHUTDOWN_TIMEOUT)

    def stop(self) -> None:
        """Stop the server if it runs, by SIGTERM, or SIGKILL if that hangs."""
        if self.process is not None:
            _stop(self.process)


@contextmanager
def running_server(workdir: Path, lease_ttl: int, extra: Sequence[str] = ()) -> Iterator[Server]:
    """Run `python -m presence serve` on SQLite in `workdir` until exit."""
    process = ServerProcess(workdir, lease_ttl, extra)
    try:
        process.start()
        yield process.server
    finally:
        process.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("presence"), lease_ttl=2) as running:
        yield running


@pytest.fixture(scope="session")
def steady_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("steady"), lease_ttl=60) as running:
        yield running


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path, RESTART_LEASE_TTL)
    try:
        process.start()
        yield process
    finally:
        process.stop()


#: Starts a server of the test's own with more `serve` flags; see `own_server`.
StartServer = Callable[..., ServerProcess]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers of the test's own: `own_server("--flag", "value", lease_ttl=2)`.

    For tests that need a configuration of their own, or that must not disturb
    the shared server (limits per client address: every test comes from
    127.0.0.1). Each server runs in its own subdirectory of `tmp_path`; all are
    stopped at the end of the test.
    """
    started: list[ServerProcess] = []

    def start(*extra: str, lease_ttl: int = 2) -> ServerProcess:
        workdir = tmp_path / f"server-{len(started)}"
        workdir.mkdir()
        process = ServerProcess(workdir, lease_ttl, extra)
        started.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


#: Opens a hand-written WebSocket: `await open_raw(server, "/ws/device")`.
OpenRaw = Callable[..., Awaitable[RawWebSocket]]


@pytest.fixture
async def open_raw() -> AsyncIterator[OpenRaw]:
    """Open hand-written WebSockets (`server.raw`); all closed at the end of the test."""
    opened: list[RawWebSocket] = []

    async def open_(server: Server, path: str = "/ws/device") -> RawWebSocket:
        opened.append(await RawWebSocket.open(server, path))
        return opened[-1]

    yield open_
    for ws in opened:
        await ws.close()


@pytest.fixture
async def harness(server: Server) -> AsyncIterator[Harness]:
    async with Harness(server) as opened:
        yield opened


@pytest.fixture
async def steady_harness(steady_server: Server) -> AsyncIterator[Harness]:
    async with Harness(steady_server) as opened:
        yield opened
