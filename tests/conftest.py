"""Fixtures that run the presence server as a real process (see `servers.py`).

`server` is one server for the whole session with a short lease TTL (2 s), so
expiry tests are quick; every test makes its own domain, so tests stay
independent on the shared server. `steady_server` has a long TTL, for the few
tests that must tell a seat freed at once from one freed by lease expiry.
`server_process` is a server of a test's own, which the test may kill or stop
and start again on the same database (restarts, graceful shutdown);
`own_server` starts servers of a test's own with flags and options of its choice.

`--seed N` makes the randomized runs replay the choices of seed N.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server.client import Harness, Server
from server.raw import RawWebSocket
from servers import ServerProcess

# `postgres`, the clients' `restartable` server and their `federated` domain,
# shared by every suite
pytest_plugins = ["pg", "client.restarts", "client.federated"]

#: The lease TTL of `server_process`: long enough to restart the server and
#: reconnect within it, short enough to wait for a lease to expire.
RESTART_LEASE_TTL = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None, help="seed of the randomized runs")


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int | None:
    """`--seed`, or None: each randomized run then draws its own and reports it."""
    chosen: int | None = request.config.getoption("--seed")
    return chosen


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ServerProcess(tmp_path_factory.mktemp("presence"), lease_ttl=2) as process:
        yield process.server


@pytest.fixture(scope="session")
def steady_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with ServerProcess(tmp_path_factory.mktemp("steady"), lease_ttl=60) as process:
        yield process.server


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path, lease_ttl=RESTART_LEASE_TTL) as process:
        yield process


#: Starts a server of the test's own; see `own_server`.
StartServer = Callable[..., ServerProcess]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers of the test's own: `own_server("--flag", "value", lease_ttl=2)`.

    Positional arguments are `serve` flags; keyword arguments are those of
    `ServerProcess` (`lease_ttl` is 2 s unless given). For tests that need a
    configuration of their own, or that must not disturb the shared server
    (limits per client address: every test comes from 127.0.0.1). Each server
    runs in its own subdirectory of `tmp_path`; all are stopped at the end of
    the test.
    """
    started: list[ServerProcess] = []

    def start(*flags: str, **options: Any) -> ServerProcess:
        options.setdefault("lease_ttl", 2)
        process = ServerProcess(tmp_path / f"server-{len(started)}", flags=flags, **options)
        started.append(process)
        process.start()
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


@pytest.fixture
async def harness(server: Server) -> AsyncIterator[Harness]:
    async with Harness(server) as opened:
        yield opened


@pytest.fixture
async def steady_harness(steady_server: Server) -> AsyncIterator[Harness]:
    async with Harness(steady_server) as opened:
        yield opened


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
