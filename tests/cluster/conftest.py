"""Two server nodes sharing one PostgreSQL database, as real processes.

Each test gets a new database on the session's PostgreSQL server and two
`python -m presence serve` processes on it (`servers.ServerProcess`), A and B,
with a short lease TTL (`lease_ttl`) and more environment (`node_env`),
fixtures a module may override. A test may kill or pause a node; whatever
state it leaves them in, they are stopped at the end. `on_a` and `on_b` are the
black-box clients of `tests/server/client.py`, one per node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pg import PostgresServer
from server.client import Harness
from servers import ServerProcess, new_admin_token, running

LEASE_TTL = 2


@dataclass(frozen=True)
class Cluster:
    a: ServerProcess
    b: ServerProcess


@pytest.fixture
def lease_ttl() -> float:
    """The nodes' lease TTL; a test module may override this fixture."""
    return LEASE_TTL


@pytest.fixture
def node_env() -> dict[str, str]:
    """More environment for the nodes; a test module may override this fixture."""
    return {}


@pytest.fixture
def cluster(
    postgres: PostgresServer, tmp_path: Path, lease_ttl: float, node_env: dict[str, str]
) -> Iterator[Cluster]:
    database_url = postgres.create_database()
    admin_token = new_admin_token()
    nodes = [
        ServerProcess(
            tmp_path / f"node-{name}",
            database=database_url,
            admin_token=admin_token,
            lease_ttl=lease_ttl,
            env=node_env,
        )
        for name in "ab"
    ]
    try:
        with running(*nodes):
            yield Cluster(*nodes)
    finally:
        postgres.drop_database(database_url)


@pytest.fixture
async def on_a(cluster: Cluster) -> AsyncIterator[Harness]:
    async with Harness(cluster.a.server) as harness:
        yield harness


@pytest.fixture
async def on_b(cluster: Cluster) -> AsyncIterator[Harness]:
    async with Harness(cluster.b.server) as harness:
        yield harness
