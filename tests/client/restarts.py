"""What the clients' restart tests share (Python and JavaScript): a server
whose lease outlasts a restart and the reconnections after it."""

from __future__ import annotations

from pathlib import Path

from server.client import Domain
from servers import ServerProcess

#: The servers' lease TTL and heartbeat interval: a restart fits in the TTL.
LEASE_TTL = 6.0
HEARTBEAT = 1.0
#: Waits between attempts to connect stay short, so every reconnection fits in the TTL.
MAX_DELAY = 1.0


def restartable(workdir: Path) -> ServerProcess:
    return ServerProcess(workdir, lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT)


async def expired_devices(domain: Domain) -> list[str]:
    """The devices whose leases expired: none, when every client came back in time."""
    return [e["device_id"] for e in await domain.all_events() if e["type"] == "lease_expired"]
