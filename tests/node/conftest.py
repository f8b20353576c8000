"""A node in-process on a real SQLite store, for what no client can time from outside.

`Recorder` stands in for a connection: it takes every frame at once and
remembers it. `node` is a node on a new SQLite file with a domain "acme", a
pool "desk" of one seat and the store open, but none of the node's own tasks
running unless a test starts them; `Accounts` makes users with tokens.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from presence.admin import Admin
from presence.config import Config
from presence.core.model import Domain, License, Pool
from presence.node import Node
from presence.storage import TokenGrant, store_for_url

SERVER = TokenGrant("server")


class Recorder:
    """A connection that takes every frame at once and remembers it."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closed: int | None = None

    @property
    def gone(self) -> bool:
        return self.closed is not None

    async def send(self, frame: str) -> None:
        self.frames.append(frame)

    def push(self, frame: str) -> None:
        self.frames.append(frame)

    def close(self, code: int) -> None:
        self.closed = code

    async def drain(self) -> None:
        pass

    def messages(self, kind: str) -> list[dict[str, Any]]:
        decoded = [json.loads(frame) for frame in self.frames]
        return [message for message in decoded if message["type"] == kind]


class Accounts:
    """Users of the domain "acme", each with a user token."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self._count = 0

    async def token(self, license: License) -> str:
        self._count += 1
        user = await self.admin.create_user(
            SERVER, "acme", f"user{self._count}@example.com", f"User {self._count}", license
        )
        _, token = await self.admin.create_token(SERVER, "acme", "user", user.id)
        # Its first use is noted now: a login's check of the token writes nothing.
        await self.admin.authenticate(token)
        return token

    async def seat_token(self) -> str:
        return await self.token(License("seat", "desk"))


@contextlib.asynccontextmanager
async def open_node(workdir: Path, lease_ttl: float) -> AsyncIterator[Node]:
    """A node with the domain "acme" and its one-seat pool "desk"; the store open only."""
    store = store_for_url(f"sqlite:///{workdir / 'presence.db'}", "node")
    running = Node(store, Config(lease_ttl=lease_ttl, heartbeat_interval=lease_ttl / 3))
    await store.open(running.config.lease_ttl)
    admin = Admin(store, None)
    await admin.create_domain(SERVER, Domain("acme", "Acme", "enterprise", 10, 2))
    await admin.create_pool(SERVER, Pool("acme", "desk", "Desk", 1))
    try:
        yield running
    finally:
        await store.close()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with open_node(tmp_path, lease_ttl=60.0) as running:
        yield running


@pytest.fixture
def accounts(node: Node) -> Accounts:
    return Accounts(Admin(node.store, None))
