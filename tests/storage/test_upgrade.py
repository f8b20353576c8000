"""A database written by the previous schema opens, upgraded in place, on both backends.

Then leases and queue places belonged to a node, renewed in a table of nodes,
and fencing tokens came from a row of counters.
"""

from __future__ import annotations

import sqlite3

import asyncpg

from presence.core.model import Device, Lease

from .conftest import Nodes
from .test_contract import bare, new_lease

OLD_TABLES = """
CREATE TABLE nodes (id TEXT PRIMARY KEY, expires_at {real} NOT NULL);
CREATE TABLE leases ({lease_seq}
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL, node_id TEXT NOT NULL,
    domain_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    device_id TEXT NOT NULL, device_kind TEXT NOT NULL, device_name TEXT NOT NULL,
    since {real} NOT NULL, pool TEXT, seat INTEGER, fencing_token BIGINT,
    call_id TEXT, call_started_at {real}, idle_since {real} NOT NULL);
CREATE INDEX leases_by_node ON leases (node_id);
CREATE TABLE waiters (
    seq {serial}, pool TEXT NOT NULL,
    session_id TEXT NOT NULL UNIQUE, lease_id TEXT NOT NULL, node_id TEXT NOT NULL,
    domain_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    device_id TEXT NOT NULL, device_kind TEXT NOT NULL, device_name TEXT NOT NULL,
    since {real} NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters VALUES ('fencing_token', 41);
INSERT INTO nodes VALUES ('old-node', 0);
INSERT INTO leases (id, session_id, node_id, domain_id, user_id, user_name, device_id,
    device_kind, device_name, since, pool, seat, fencing_token, call_id, call_started_at,
    idle_since) VALUES ('old-lease', 'old-session', 'old-node', 'acme', 'u1', 'Ann',
    'pc', 'desktop', 'PC', 1000.0, 'desk', 1, 41, NULL, NULL, 1000.0);
"""
OLD = Lease("old-lease", "old-session", "acme", "u1", "Ann", Device("pc", "desktop", "PC"),
            1000.0, "desk", 1, 41, idle_since=1000.0)  # fmt: skip


async def test_an_old_database_keeps_its_leases_and_fencing_tokens(nodes: Nodes) -> None:
    if nodes.shared:
        connection = await asyncpg.connect(nodes.url)
        try:
            tables = OLD_TABLES.format(
                real="float8",
                serial="bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                lease_seq="seq bigint GENERATED ALWAYS AS IDENTITY,",
            )
            await connection.execute(tables)
        finally:
            await connection.close()
    else:
        path = nodes.url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            tables = OLD_TABLES.format(
                real="REAL", serial="INTEGER PRIMARY KEY AUTOINCREMENT", lease_seq=""
            )
            db.executescript(tables)
    store = await nodes.open()
    async with store.transaction("acme") as tx:
        assert await tx.leases("acme") == [OLD]
        assert await tx.expired_leases() == []  # kept for lease_ttl, for its holder
        granted = await tx.insert_lease(new_lease(store, user_id="u2", seat=2))
    assert granted.fencing_token is not None and granted.fencing_token > 41
    await store.renew(["old-session"])
    await store.close()
    again = await nodes.open()  # and the upgraded database opens as it is
    async with again.transaction() as tx:
        assert bare(await tx.leases("acme")) == [bare(OLD), bare(granted)]
