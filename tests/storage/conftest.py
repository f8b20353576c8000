"""Every storage backend, for the one contract suite.

`database_url` is parametrized over the backends: a new SQLite file, or a new
database on the session's PostgreSQL server. A test that checks what only a
backend shared by several nodes does narrows it to PostgreSQL with
`@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)`.
`nodes` opens stores on that database, each one node, and closes them all at
the end; `store` is the first of them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pg import PostgresServer

from presence.storage import Store, store_for_url

BACKENDS = ["sqlite", "postgresql"]

#: A lease TTL no test outlives: a node opened with it never becomes orphaned.
LONG_TTL = 60.0


class Nodes:
    """Opens stores on one database, as many nodes; closes them all."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._opened: list[Store] = []

    @property
    def shared(self) -> bool:
        """Whether several nodes may have the database open at once (not SQLite)."""
        return not self.url.startswith("sqlite:")

    async def open(self, lease_ttl: float = LONG_TTL) -> Store:
        store = store_for_url(self.url, uuid.uuid4().hex)
        await store.open(lease_ttl)
        self._opened.append(store)
        return store

    async def close(self) -> None:
        for store in reversed(self._opened):
            await store.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'presence.db'}"
        return
    postgres: PostgresServer = request.getfixturevalue("postgres")
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture
async def nodes(database_url: str) -> AsyncIterator[Nodes]:
    opened = Nodes(database_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def store(nodes: Nodes) -> Store:
    return await nodes.open()
