"""A login whose task is cancelled while its grant commits still frees the seat.

A device endpoint's task is cancelled when the device is cut off for not
reading. No client can time that to the moment a grant is being committed,
so this test drives a coordinator in-process, on a real SQLite store, and
cancels the login just as the store waits for the commit's thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from presence import wire
from presence.admin import Admin
from presence.config import Config
from presence.coordinator import Coordinator
from presence.core.model import Device, Domain, License, Pool
from presence.storage import TokenGrant, store_for_url


class Recorder:
    """A connection that takes every frame at once and remembers it."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: int | None = None

    async def send(self, frame: str) -> None:
        self.frames.append(frame)

    def push(self, frame: str) -> None:
        self.frames.append(frame)

    def close(self, code: int) -> None:
        self.closed = code

    async def drain(self) -> None:
        pass


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[tuple[Coordinator, str]]:
    """A coordinator on an open store, and the token of a seat user of a one-seat pool."""
    store = store_for_url(f"sqlite:///{tmp_path / 'presence.db'}", "node")
    coordinator = Coordinator(store, Config(lease_ttl=60.0))
    # The store alone, without the node's ticker: nothing else takes its lock.
    await store.open(coordinator.config.lease_ttl)
    admin = Admin(store, None)
    server = TokenGrant("server")
    await admin.create_domain(server, Domain("acme", "Acme", "enterprise", 0, 1))
    await admin.create_pool(server, Pool("acme", "desk", "Desk", 1))
    user = await admin.create_user(server, "acme", "a@example.com", "Al", License("seat", "desk"))
    _, token = await admin.create_token(server, "acme", "user", user.id)
    # Its first use is noted now: the login's check of the token writes nothing.
    await admin.authenticate(token)
    try:
        yield coordinator, token
    finally:
        await store.close()


async def test_a_login_cancelled_as_its_grant_commits_frees_the_seat_on_close(
    node: tuple[Coordinator, str],
) -> None:
    coordinator, token = node
    session = coordinator.open_session(Recorder())
    hello = wire.Hello(token, Device("desk-1", "desktop"))
    login = asyncio.create_task(coordinator.hello(session, hello))
    await asyncio.sleep(0)  # the grant's transaction now waits for its commit's thread
    login.cancel()
    with pytest.raises(asyncio.CancelledError):
        await login
    async with coordinator.store.transaction() as tx:
        assert len(await tx.leases("acme", pool="desk")) == 1  # the grant was committed
    await coordinator.disconnected(session)  # the endpoint's cleanup, as after a cut-off
    async with coordinator.store.transaction() as tx:
        assert await tx.leases("acme", pool="desk") == []
