"""The lease keeper keeps what live sessions hold, and only that.

In-process on a real SQLite store with a short lease TTL, with the keeper's
task running: a session the node stops serving, by whatever path, loses its
lease within the TTL, while the leases of live sessions stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from presence import wire
from presence.admin import Admin
from presence.core.model import Device
from presence.node import Node
from presence.node.session import Phase, Session
from presence.storage import EventQuery

from .conftest import SERVER, Accounts, Recorder, open_node

TTL = 1.0
WAIT = 10.0


@contextlib.asynccontextmanager
async def keeping(node: Node) -> AsyncIterator[None]:
    task = asyncio.create_task(node.keeper.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def logged_in(node: Node, token: str, device: str) -> Session:
    session = node.protocol.open_session(Recorder())
    await node.protocol.hello(session, wire.Hello(token, Device(device, "desktop")), judged)
    return session


def judged(failed: bool) -> None:
    assert not failed


async def beat(session: Session) -> None:
    """Heartbeats, as its device sends them: the session stays live."""
    while True:
        session.last_seen = time.monotonic()
        await asyncio.sleep(TTL / 5)


async def test_a_lease_the_node_no_longer_serves_expires_and_a_live_one_stays(
    tmp_path: Path,
) -> None:
    async with open_node(tmp_path, TTL) as node:
        accounts = Accounts(Admin(node.store, None))
        await Admin(node.store, None).update_pool(SERVER, "acme", "desk", {"seats": 2})
        live = await logged_in(node, await accounts.seat_token(), "pc-1")
        forgotten = await logged_in(node, await accounts.seat_token(), "pc-2")
        assert live.phase is forgotten.phase is Phase.HOLDING
        node.sessions.discard(forgotten)  # as a session lost by any bug would be
        heart = asyncio.create_task(beat(live))
        try:
            async with keeping(node):
                started = time.monotonic()
                deadline = started + WAIT
                while True:
                    async with node.store.transaction() as tx:
                        held = await tx.leases("acme", pools=["desk"])
                    if [x.session_id for x in held] == [live.id]:
                        break
                    assert time.monotonic() < deadline, held
                    await asyncio.sleep(0.05)
                freed_at = time.monotonic()
                await asyncio.sleep(2 * TTL)  # the live one is renewed all along
                async with node.store.transaction() as tx:
                    assert [x.session_id for x in await tx.leases("acme")] == [live.id]
                    events = await tx.events("acme", EventQuery())
        finally:
            heart.cancel()
        expired = [e.event for e in events if e.event.type == "lease_expired"]
        assert [e.device_id for e in expired] == ["pc-2"]
        assert freed_at - started < 3 * TTL  # within the TTL and a few ticks


async def test_a_seat_granted_to_a_session_gone_meanwhile_is_freed(tmp_path: Path) -> None:
    async with open_node(tmp_path, TTL) as node:
        accounts = Accounts(Admin(node.store, None))
        holder = await logged_in(node, await accounts.seat_token(), "pc-1")
        waiter = node.protocol.open_session(Recorder())
        hello = wire.Hello(await accounts.seat_token(), Device("pc-2", "desktop"), queue=True)
        await node.protocol.hello(waiter, hello, judged)
        assert waiter.phase is Phase.WAITING
        # The waiter's connection drops as the holder logs out: the seat goes to
        # the waiter in the logout's transaction, and its end frees it again.
        await asyncio.gather(
            node.protocol.end(holder, "logged_out"), node.protocol.disconnected(waiter)
        )
        async with node.store.transaction() as tx:
            assert await tx.leases("acme") == []
            assert await tx.waiters("acme", ["desk"]) == []
