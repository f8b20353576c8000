"""SQLite's group commit when the COMMIT fails: every transaction of it fails, and is undone.

The failure is made with SQLite's authorizer on the store's own connection,
which refuses COMMIT as a full disk or an I/O error would fail it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from presence.errors import StorageError
from presence.notes import PoolChanged
from presence.storage.sqlite import SQLiteStore

from .test_contract import bare, by_id, new_lease


def refuse_commit(action: int, operation: Any, *_: Any) -> int:
    if action == sqlite3.SQLITE_TRANSACTION and operation == "COMMIT":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


async def test_a_failed_commit_fails_and_undoes_every_transaction_in_it(tmp_path: Path) -> None:
    path = str(tmp_path / "presence.db")
    store = SQLiteStore(path, "node-1")
    await store.open(60.0)
    kept = new_lease(store, user_id="u0", seat=0)
    async with store.transaction("acme") as tx:
        await tx.insert_lease(kept)
    lost = [new_lease(store, user_id=f"u{n}", seat=n) for n in range(1, 6)]

    async def write(n: int) -> None:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(lost[n])
            tx.notify(PoolChanged("acme", f"lost-{n}"))

    notes: list[Any] = []

    async def received(note: Any) -> None:
        notes.append(note)

    store.subscribe(received)
    assert store._db is not None
    store._db.set_authorizer(refuse_commit)  # the next COMMIT fails
    outcomes = await asyncio.gather(*(write(n) for n in range(5)), return_exceptions=True)
    store._db.set_authorizer(None)

    assert all(isinstance(outcome, StorageError) for outcome in outcomes), outcomes
    async with store.transaction() as tx:
        assert bare(await tx.leases("acme")) == [kept]
    async with store.transaction("acme") as tx:  # and the store goes on
        await tx.insert_lease(lost[0])
    await store.close()
    assert [n for n in notes if isinstance(n, PoolChanged) and n.pool.startswith("lost")] == []
    reopened = SQLiteStore(path, "node-2")
    await reopened.open(60.0)
    try:
        async with reopened.transaction() as tx:
            found = sorted(bare(await tx.leases("acme")), key=by_id)
            assert found == sorted([kept, lost[0]], key=by_id)
    finally:
        await reopened.close()
