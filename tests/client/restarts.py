"""What the clients' restart tests share (Python and JavaScript): a server
whose lease outlasts a restart and the reconnections after it, as the
`restartable` fixture (a plugin of tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from server.client import Device, Domain, Harness, Message
from servers import ServerProcess

from .proxy import Proxy

#: The servers' lease TTL and heartbeat interval: a restart fits in the TTL.
LEASE_TTL = 6.0
HEARTBEAT = 1.0
#: Waits between attempts to connect stay short, so every reconnection fits in the TTL.
MAX_DELAY = 1.0


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, which it may kill or stop and start again."""
    with ServerProcess(tmp_path, lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT) as process:
        yield process


async def expired_devices(domain: Domain) -> list[str]:
    """The devices whose leases expired: none, when every client came back in time."""
    return [e["device_id"] for e in await domain.all_events() if e["type"] == "lease_expired"]


async def seat_taken_meanwhile(
    harness: Harness, domain: Domain, pool: Message, proxy: Proxy
) -> Device:
    """Cut the connection of the client behind `proxy` and keep it away while
    another user takes the seat it held; the other user's device."""
    intruder = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")
    proxy.refusing = True
    proxy.cut()
    await intruder.expect("availability", free=1)
    assert (await intruder.acquire())["type"] == "welcome"
    proxy.refusing = False
    return intruder
