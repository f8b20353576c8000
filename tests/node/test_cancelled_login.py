"""A login whose task is cancelled while its grant commits still frees the seat.

A device endpoint's task is cancelled when the device is cut off for not
reading. No client can time that to the moment a grant is being committed,
so this test drives a node in-process, on a real SQLite store, and
cancels the login just as the store waits for the commit's thread.
"""

from __future__ import annotations

import asyncio

import pytest

from presence import wire
from presence.core.model import Device
from presence.node import Node

from .conftest import Accounts, Recorder


async def test_a_login_cancelled_as_its_grant_commits_frees_the_seat_on_close(
    node: Node, accounts: Accounts
) -> None:
    token = await accounts.seat_token()
    protocol = node.protocol
    session = protocol.open_session(Recorder())
    hello = wire.Hello(token, Device("desk-1", "desktop"))
    login = asyncio.create_task(protocol.hello(session, hello, lambda failed: None))
    for _ in range(1000):  # until the grant's transaction waits for its commit's thread
        store = node.store
        if store._leases.by_id and store._batch is not None:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("the grant was never written")
    login.cancel()
    with pytest.raises(asyncio.CancelledError):
        await login
    async with node.store.transaction() as tx:
        assert len(await tx.leases("acme", pools=["desk"])) == 1  # the grant was committed
    await protocol.disconnected(session)  # the endpoint's cleanup, as after a cut-off
    async with node.store.transaction() as tx:
        assert await tx.leases("acme", pools=["desk"]) == []
