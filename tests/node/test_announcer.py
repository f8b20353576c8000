"""What the announcer pushes, and what it reads for it.

In-process on a real SQLite store, with the announcer's task running. A
login's change is pushed as its commit told it, without a read. The read of
a changed pool fails as it does while the database is away, and the change is
announced once the read succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from presence import leases, wire
from presence.admin import Admin
from presence.core.model import Device, License, Pool
from presence.errors import StorageError
from presence.node import Node, announcer

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


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pools the announcer reads from now on, in the order read."""
    read: list[str] = []

    def counted(load: Callable[..., Any]) -> Callable[..., Any]:
        async def counting(tx: Any, domain_id: str, pools: list[str]) -> Any:
            read.extend(pools)
            return await load(tx, domain_id, pools)

        return counting

    reads = SimpleNamespace(
        load_occupancy=counted(leases.load_occupancy), load_books=counted(leases.load_books)
    )
    monkeypatch.setattr(announcer, "leases", reads)
    return read


async def log_in(node: Node, link: Recorder, token: str, device: str) -> None:
    session = node.protocol.open_session(link)
    hello = wire.Hello(token, Device(device, "desktop"))
    await node.protocol.hello(session, hello, lambda failed: None)


async def seen(recorder: Recorder, **fields: int) -> None:
    """Until the recorder was pushed an availability with these ``fields``."""
    while not any(
        all(m[name] == value for name, value in fields.items())
        for m in recorder.messages("availability")
    ):
        await asyncio.sleep(0.01)  # polling what the recorder was pushed


async def test_a_login_is_announced_as_its_commit_told_without_a_read(
    node: Node, accounts: Accounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = Admin(node.store, None)
    await admin.update_domain(SERVER, "acme", {"seat_licenses": 3})
    await admin.create_pool(SERVER, Pool("acme", "wide", "Wide", 2))
    tokens = [await accounts.token(License("seat", "wide")) for _ in range(3)]
    first, second, third = Recorder(), Recorder(), Recorder()
    async with announcing(node):
        await log_in(node, first, tokens[0], "pc-1")
        await asyncio.wait_for(seen(first, occupied=1), WAIT)
        read = counting_reads(monkeypatch)
        await log_in(node, second, tokens[1], "pc-2")
        await log_in(node, third, tokens[2], "pc-3")  # refused: both seats are taken
        for recorder in (first, second, third):
            await asyncio.wait_for(seen(recorder, occupied=2, free=0), WAIT)
    assert read == []


async def test_a_change_announced_while_the_database_is_away_arrives_later(
    node: Node, accounts: Accounts, caplog: pytest.LogCaptureFixture
) -> None:
    link = Recorder()
    session = node.protocol.open_session(link)
    hello = wire.Hello(await accounts.seat_token(), Device("pc", "desktop"))
    await node.protocol.hello(session, hello, lambda failed: None)
    async with announcing(node):
        await asyncio.wait_for(seen(link, seats=1), WAIT)
        left = failing_reads(node, times=2)
        await Admin(node.store, None).update_pool(SERVER, "acme", "desk", {"seats": 2})
        await asyncio.wait_for(seen(link, seats=2), WAIT)
    assert left() == 0  # both failed reads happened before the announcement came
    assert "announcing 1 pool(s) again later" in caplog.text
