"""Fixtures of the webhook tests: a server that may deliver to 127.0.0.1, and a receiver.

`webhook_server` is one server per module with `PRESENCE_WEBHOOK_ALLOW_PRIVATE`
(the receiver listens on 127.0.0.1), a 1 s request timeout and retry waits
scaled by `RETRY_SCALE` (5 ms, 30 ms, 120 ms, 600 ms, 1.8 s, then 3.6 s);
every test makes its own domain on it. `harness` talks to it (it replaces the
suite's `harness`, which talks to the shared server). `receiver` is a receiver
process of the test's own, started in mode `ok` and stopped at the end.
Tests of other knobs start servers of their own with `own_server(env=...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from server.client import Harness
from servers import ServerProcess

from .hooks import ReceiverProcess

RETRY_SCALE = 0.001
TIMEOUT = 1


def webhook_env(scale: float = RETRY_SCALE, *, allow_private: bool = True) -> dict[str, str]:
    """The server environment of the webhook knobs."""
    env = {"PRESENCE_WEBHOOK_TIMEOUT": str(TIMEOUT), "PRESENCE_WEBHOOK_RETRY_SCALE": f"{scale:g}"}
    if allow_private:
        env["PRESENCE_WEBHOOK_ALLOW_PRIVATE"] = "1"
    return env


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("webhooks")
    with ServerProcess(workdir, lease_ttl=2, env=webhook_env()) as process:
        yield process


@pytest.fixture
async def harness(webhook_server: ServerProcess) -> AsyncIterator[Harness]:
    async with Harness(webhook_server.server) as opened:
        yield opened


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path / "receiver")
    process.start()
    try:
        yield process
    finally:
        process.stop()
