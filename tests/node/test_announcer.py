"""An announcement the database could not give at first still reaches the devices.

In-process on a real SQLite store, with the announcer's task running: the
read of a changed pool fails as it does while the database is away, and the
change is announced once the read succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from presence import wire
from presence.admin import Admin
from presence.core.model import Device
from presence.errors import StorageError
from presence.node import Node

from .conftest import SERVER, Accounts, Recorder

WAIT = 10.0


@contextlib.asynccontextmanager
async def announcing(node: Node) -> AsyncIterator[None]:
    task = asyncio.create_task(node.announcer.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def failing_reads(node: Node, times: int) -> Callable[[], int]:
    """Make the next ``times`` transactions without a domain (the announcer's
    reads) fail as the database's absence does; return how many are left."""
    real = node.store.transaction
    left = times

    def transaction(domain_id: str | None = None, **options: Any) -> Any:
        nonlocal left
        if domain_id is None and left > 0:
            left -= 1
            raise StorageError("The database failed: connection refused")
        return real(domain_id, **options)

    node.store.transaction = transaction  # type: ignore[method-assign]
    return lambda: left


async def seats_seen(recorder: Recorder, seats: int) -> None:
    while not any(m["seats"] == seats for m in recorder.messages("availability")):
        await asyncio.sleep(0.01)  # polling what the recorder was pushed


async def test_a_change_announced_while_the_database_is_away_arrives_later(
    node: Node, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    link = Recorder()
    session = node.protocol.open_session(link)
    hello = wire.Hello(await accounts.seat_token(), Device("pc", "desktop"))
    await node.protocol.hello(session, hello, lambda failed: None)
    async with announcing(node):
        await asyncio.wait_for(seats_seen(link, 1), WAIT)
        left = failing_reads(node, times=2)
        await Admin(node.store, None).update_pool(SERVER, "acme", "desk", {"seats": 2})
        await asyncio.wait_for(seats_seen(link, 2), WAIT)
    assert left() == 0  # both failed reads happened before the announcement came
    assert "announcing 1 pool(s) again later" in caplog.text
