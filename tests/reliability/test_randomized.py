"""The I/O-level randomized run (`randomized.py`), a few seconds per backend:
one SQLite server, and two nodes sharing PostgreSQL with the devices spread
over both. `python -m tests.reliability --only random` runs it for longer.

Each run draws a seed and prints it with its figures; `--seed N` replays the
choices of seed N (the timing of the servers and the network still varies).
"""

from __future__ import annotations

import random
from pathlib import Path

from pg import PostgresServer
from servers import ServerProcess, new_admin_token

from .randomized import LEASE_TTL, Report, randomized_run

SECONDS = 8.0


def assert_clean(report: Report) -> None:
    print(report.text())
    rerun = f"rerun with --seed {report.seed}"
    assert report.ok, f"{len(report.violations)} violations ({rerun}):\n{report.text()}"
    # The run did what it should: thousands of operations, disconnects of every kind.
    assert sum(report.operations.values()) >= 500, report.text()
    points = {key.rsplit(" (", 1)[0] for key in report.disconnects}
    assert len(points) >= 10, report.text()


async def test_randomized_operations_on_sqlite(tmp_path: Path, seed: int | None) -> None:
    node = ServerProcess(tmp_path, lease_ttl=LEASE_TTL)
    seed = random.randrange(2**32) if seed is None else seed
    assert_clean(await randomized_run([node], SECONDS, seed, "SQLite"))


async def test_randomized_operations_on_two_nodes_sharing_postgresql(
    postgres: PostgresServer, tmp_path: Path, seed: int | None
) -> None:
    database = postgres.create_database()
    token = new_admin_token()
    nodes = [
        ServerProcess(
            tmp_path / f"node-{name}", database=database, admin_token=token, lease_ttl=LEASE_TTL
        )
        for name in "ab"
    ]
    seed = random.randrange(2**32) if seed is None else seed
    try:
        assert_clean(await randomized_run(nodes, SECONDS, seed, "two nodes on PostgreSQL"))
    finally:
        postgres.drop_database(database)
