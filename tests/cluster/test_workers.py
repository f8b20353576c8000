"""`presence serve --workers N`: N nodes in N processes behind one port."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from pathlib import Path

from pg import PostgresServer
from server.client import Harness
from servers import ServerProcess

WORKERS = 2


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


async def test_workers_share_one_port_and_every_rule(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database_url = postgres.create_database()
    node = ServerProcess(tmp_path, database=database_url, flags=("--workers", str(WORKERS)))
    try:
        node.start()
        assert node.process is not None
        assert len(children(node.process.pid)) >= WORKERS  # the workers (and spawn's helper)
        async with Harness(node.server) as harness:
            domain = await harness.new_domain()
            pool = await domain.pool(3)
            members = [await domain.seat_user(pool) for _ in range(12)]
            devices = await asyncio.gather(*(harness.device() for _ in members))
            await asyncio.gather(*(d.hello(m.token) for d, m in zip(devices, members, strict=True)))
            answers = await asyncio.gather(*(d.outcome(15) for d in devices))
            outcomes = Counter(a.get("code", a["type"]) for a in answers)
            assert outcomes == {"welcome": 3, "seat_occupied": 9}
            winner = next(d for d in devices if d.welcome is not None)
            await winner.logout()
            # Every refused device hears of the freed seat, whichever worker holds it.
            for device in devices:
                if device.welcome is None:
                    await device.expect("availability", occupied=2, free=1)
        node.terminate()  # every worker stops, within the shutdown timeout
    finally:
        node.stop()
        postgres.drop_database(database_url)
