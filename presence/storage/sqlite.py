"""The embedded backend: one SQLite file, one node.

The file is opened in WAL mode with ``synchronous=FULL``: every commit is on
disk before it is acknowledged, so a power loss loses no grant, release or
fencing token that a client was told about. Transactions run one at a time
(``BEGIN IMMEDIATE`` behind an asyncio lock), which is the whole node's lock.

The node is the file's only user (it holds an exclusive lock on it), so the
live leases, which every seat decision reads, are also kept in memory: written
through to the file, undone with the transaction that rolls back, and read
without a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from operator import attrgetter
from typing import Any

from ..core.model import Domain, Event, Lease, Pool, User, Waiter
from ..core.usage import EventRow
from ..errors import RuleViolation, StorageError
from ..notes import Note
from . import rows
from .base import (
    LAST_USED_RESOLUTION,
    EventQuery,
    Store,
    StoredEvent,
    Token,
    TokenGrant,
    UsagePeriod,
    check_deadline,
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS domains (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, plan TEXT NOT NULL,
    named_licenses INTEGER NOT NULL, seat_licenses INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
    domain_id TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,
    seats INTEGER NOT NULL, idle_logoff_s INTEGER NOT NULL,
    PRIMARY KEY (domain_id, id));
CREATE TABLE IF NOT EXISTS users (
    domain_id TEXT NOT NULL, id TEXT NOT NULL, email TEXT NOT NULL,
    name TEXT NOT NULL, model TEXT NOT NULL, pool TEXT,
    PRIMARY KEY (domain_id, id), UNIQUE (domain_id, email));
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, role TEXT NOT NULL, domain_id TEXT, user_id TEXT);
CREATE TABLE IF NOT EXISTS leases (
    id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
    domain_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    device_id TEXT NOT NULL, device_kind TEXT NOT NULL, device_name TEXT NOT NULL,
    since REAL NOT NULL, pool TEXT, seat INTEGER, fencing_token INTEGER,
    call_id TEXT, call_started_at REAL, idle_since REAL NOT NULL, expires_at REAL NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS leases_one_holder_per_seat
    ON leases (domain_id, pool, seat) WHERE pool IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS leases_one_seat_per_user
    ON leases (domain_id, user_id) WHERE pool IS NOT NULL;
CREATE INDEX IF NOT EXISTS leases_by_session ON leases (session_id);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
CREATE TABLE IF NOT EXISTS waiters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL,
    session_id TEXT NOT NULL UNIQUE, lease_id TEXT NOT NULL,
    domain_id TEXT NOT NULL, user_id TEXT NOT NULL, user_name TEXT NOT NULL,
    device_id TEXT NOT NULL, device_kind TEXT NOT NULL, device_name TEXT NOT NULL,
    since REAL NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS waiters_by_expiry ON waiters (expires_at);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('fencing_token', 0);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, domain_id TEXT NOT NULL, at REAL NOT NULL,
    type TEXT NOT NULL, user_id TEXT NOT NULL, device_id TEXT NOT NULL,
    pool TEXT, seat INTEGER);
CREATE INDEX IF NOT EXISTS events_by_domain ON events (domain_id, id);
CREATE TABLE IF NOT EXISTS queue_samples (
    id INTEGER PRIMARY KEY, domain_id TEXT NOT NULL, pool TEXT NOT NULL,
    at REAL NOT NULL, queued INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS queue_samples_by_time ON queue_samples (domain_id, at);
-- With email as well, the lookup reads the index alone, and the planner takes it
-- over the unique index on (domain_id, email), which would read every address.
CREATE INDEX IF NOT EXISTS users_by_email ON users (domain_id, lower(email), email);
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY, domain_id TEXT NOT NULL, url TEXT NOT NULL, events TEXT,
    description TEXT, enabled INTEGER NOT NULL, secret TEXT NOT NULL, created_at REAL NOT NULL,
    delivered_id INTEGER NOT NULL, attempts INTEGER NOT NULL, failing_since REAL, retry_at REAL,
    owner TEXT, claimed_until REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS webhooks_by_domain ON webhooks (domain_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL, event_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL, at REAL NOT NULL, status INTEGER, error TEXT,
    duration_ms REAL NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE TABLE IF NOT EXISTS identities (
    domain_id TEXT PRIMARY KEY, issuer TEXT NOT NULL, audience TEXT NOT NULL,
    email_claim TEXT NOT NULL, provision_model TEXT, provision_pool TEXT);
CREATE TABLE IF NOT EXISTS pool_alerts (
    domain_id TEXT NOT NULL, pool TEXT NOT NULL, full_at REAL, full_open INTEGER NOT NULL,
    near_since REAL, near_open INTEGER NOT NULL, clear_since REAL,
    PRIMARY KEY (domain_id, pool));
{rows.USAGE_INDEXES}"""
# Columns tables gained after their first release: a file from before gets
# them in place (each of its tokens an id), a new file the same way.
COLUMNS_ADDED = {
    "tokens": {
        "id": "TEXT", "label": "TEXT", "created_at": "REAL", "expires_at": "REAL",
        "last_used_at": "REAL",
    },
    "pools": {"alert_interval_s": "INTEGER NOT NULL DEFAULT 300", "alert_threshold_pct": "INTEGER"},
}  # fmt: skip
UPGRADE = """
UPDATE tokens SET id = lower(hex(randomblob(16))) WHERE id IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id);
CREATE INDEX IF NOT EXISTS tokens_by_domain ON tokens (domain_id);
-- Files from before marked the generation of a server token with this row.
DELETE FROM tokens WHERE hash = 'server-token-generated';
"""

# Files from before leases expired by themselves: their leases and waiters
# belonged to a node, renewed in a table of nodes.
UPGRADE_LEASES = """
DROP INDEX IF EXISTS leases_by_node;
ALTER TABLE leases DROP COLUMN node_id;
ALTER TABLE leases ADD COLUMN expires_at REAL NOT NULL DEFAULT 0;
ALTER TABLE waiters DROP COLUMN node_id;
ALTER TABLE waiters ADD COLUMN expires_at REAL NOT NULL DEFAULT 0;
DROP TABLE nodes;
"""

#: Sessions renewed per transaction: a long renewal would hold up every decision.
RENEW_BATCH = 2000


EMAIL_TAKEN = "SELECT 1 FROM users WHERE domain_id = ? AND lower(email) = lower(?)"


def _numbered(sql: str) -> str:
    """The shared SQL of :mod:`.rows` with SQLite's parameters: ``$n`` is ``?n``."""
    return sql.replace("$", "?")


_PERIOD_IDS = _numbered(rows.PERIOD_IDS)
_SEATS_HELD = _numbered(rows.SEATS_HELD)
_QUEUED = _numbered(rows.QUEUED)
_PERIOD_EVENTS = _numbered(rows.PERIOD_EVENTS)
_PERIOD_SAMPLES = _numbered(rows.PERIOD_SAMPLES)
_LAST_IDS = rows.LAST_IDS


class SQLiteStore(Store):
    """A store in one SQLite file; ``path`` is created readable by its owner only.

    Statements run on the event loop's thread: on a local file they take
    microseconds, less than a hop to another thread. Only the COMMIT, which
    waits for the disk, runs in a thread, for many transactions at once
    (:class:`_Batch`).
    """

    def __init__(self, path: str, node_id: str) -> None:
        super().__init__(node_id)
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._batch: _Batch | None = None
        self._committer: asyncio.Task[None] | None = None  # held: the loop keeps weak refs
        self._lease_ttl = 0.0
        self._leases = LiveLeases()

    async def open(self, lease_ttl: float) -> None:
        self._lease_ttl = lease_ttl
        if self.path != ":memory:" and not os.path.exists(self.path):
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            if "node_id" in _columns(db, "leases"):
                db.executescript(UPGRADE_LEASES)
            db.executescript(SCHEMA)  # writes, so takes the file's lock until closed
            for table, added in COLUMNS_ADDED.items():
                columns = _columns(db, table)
                for column, kind in added.items():
                    if column not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            db.executescript(UPGRADE)
            # This node is the file's only user: what it held before a restart
            # is kept for lease_ttl from now, for its holders to reclaim. A
            # queue place is never reclaimed (a session waits on its own
            # connection), so the queues start empty, and their history says so.
            now = time.time()
            db.execute("UPDATE leases SET expires_at = ?", (now + lease_ttl,))
            # Nor does any other node deliver webhooks: claim them again at once.
            db.execute("UPDATE webhooks SET owner = NULL, claimed_until = 0")
            db.execute(
                "INSERT INTO queue_samples (domain_id, pool, at, queued) "
                "SELECT DISTINCT domain_id, pool, ?, 0 FROM waiters",
                (now,),
            )
            db.execute("DELETE FROM waiters")
            found = db.execute(f"SELECT {rows.LEASE_COLUMNS} FROM leases ORDER BY since, rowid")
            self._leases = LiveLeases(rows.lease(row) for row in found)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                raise StorageError(f"Cannot open {self.path}: another node is using it.") from exc
            raise StorageError(f"Cannot open {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"Cannot open {self.path}: {exc}") from exc
        self._db = db
        self.bus.start()

    async def close(self) -> None:
        if self._db is None:
            return
        await self.bus.stop()
        self._db.close()
        self._db = None

    def healthy(self) -> bool:
        return self._db is not None

    async def renew(self, session_ids: Collection[str]) -> None:
        ids = list(session_ids)
        for start in range(0, len(ids), RENEW_BATCH):
            async with self.transaction() as tx:
                await tx.renew(ids[start : start + RENEW_BATCH], time.time() + self._lease_ttl)

    @asynccontextmanager
    async def transaction(
        self, domain_id: str | None = None, *, deadline: float | None = None
    ) -> AsyncIterator[SQLiteTx]:
        """One transaction, made durable by the next COMMIT (see :class:`_Batch`)."""
        db = self._db
        if db is None:
            raise StorageError("The database is not open.")
        async with self._lock:
            check_deadline(deadline)
            tx = SQLiteTx(db, self._leases, self._lease_ttl)
            try:
                if not db.in_transaction:
                    if self._batch is not None:  # SQLite rolled the batch back on an error
                        self._abandon("The database rolled back a transaction.")
                    db.execute("BEGIN IMMEDIATE")
                db.execute("SAVEPOINT tx")
            except sqlite3.Error as exc:
                raise StorageError(f"The database failed: {exc}") from exc
            try:
                yield tx
                db.execute("RELEASE tx")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):  # gone if SQLite rolled back all
                    db.execute("ROLLBACK TO tx")
                    db.execute("RELEASE tx")
                tx.undo()
                if isinstance(exc, sqlite3.Error):
                    raise StorageError(f"The database failed: {exc}") from exc
                raise
            batch = self._batch
            if tx.wrote:
                if batch is None:
                    batch = self._batch = _Batch()
                    self._committer = asyncio.create_task(self._commit())
                batch.txs.append(tx)
            elif batch is None:
                db.execute("COMMIT")  # read only, and nothing else waits: no disk write
                self.bus.deliver(tx.notes)
                return
        # Written, or read what others wrote: done once that is on disk.
        cancelled = await _outcome(batch.done)
        batch.done.result()  # the commit's error, if any
        if not tx.wrote:
            self.bus.deliver(tx.notes)
        if cancelled:
            raise asyncio.CancelledError

    async def _commit(self) -> None:
        """COMMIT the batch, once the transactions queued before this call have joined it.

        The COMMIT runs in a thread, which waits for the disk; the lock keeps
        every statement off the connection meanwhile.
        """
        async with self._lock:
            batch, self._batch = self._batch, None
            if batch is None:
                return  # abandoned
            db = self._db
            assert db is not None
            committing = asyncio.get_running_loop().run_in_executor(None, db.execute, "COMMIT")
            cancelled = await _outcome(committing)
            try:
                committing.result()
            except sqlite3.Error as exc:
                self._batch = batch
                self._abandon(f"The database failed: {exc}")
            else:
                for tx in batch.txs:
                    self.bus.deliver(tx.notes)
                batch.done.set_result(None)
            if cancelled:
                raise asyncio.CancelledError

    def _abandon(self, message: str) -> None:
        """Roll the batch back, in memory as in the file; its transactions fail."""
        batch, self._batch = self._batch, None
        assert batch is not None and self._db is not None
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the batch fails all the same
                self._db.execute("ROLLBACK")
        for tx in reversed(batch.txs):
            tx.undo()
        batch.done.set_exception(StorageError(message))


async def _outcome(future: asyncio.Future[Any]) -> bool:
    """Wait until ``future`` is done, cancelled or not (memory must follow the file);
    whether the caller was cancelled meanwhile."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    return cancelled


class _Batch:
    """The transactions that wrote since the last COMMIT (group commit).

    Transactions run one at a time, each in a savepoint of one open SQLite
    transaction. One that wrote waits for the next COMMIT, which a task takes
    once the transactions queued before it have run; those that queue up
    while it waits for the disk join the COMMIT after. Under load, one disk
    write makes many transactions durable. Their notes are delivered in order
    once the COMMIT is done; if it fails, every one of them is undone and
    fails.
    """

    __slots__ = ("txs", "done")

    def __init__(self) -> None:
        self.txs: list[SQLiteTx] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class LiveLeases:
    """The live leases in memory, found as :meth:`Tx.leases` asks for them.

    Each lease is found by id, and in the groups of its domain, its user and
    its pool. A lease changes only its call, never its groups.
    """

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        self.by_id: dict[str, Lease] = {}
        self._groups: dict[tuple[str, str, str], dict[str, Lease]] = {}
        for lease in leases:
            self.put(lease)

    def select(
        self, domain_id: str, pools: Collection[str] | None, users: Collection[str] | None
    ) -> list[Lease]:
        """Oldest first, as in :meth:`Tx.leases`."""
        if users is not None:
            groups = [self._groups.get((domain_id, "user", user), {}) for user in set(users)]
            found = [x for g in groups for x in g.values() if pools is None or x.pool in pools]
        elif pools is not None:
            groups = [self._groups.get((domain_id, "pool", pool), {}) for pool in set(pools)]
            found = [x for g in groups for x in g.values()]
        else:
            found = list(self._groups.get((domain_id, "", ""), {}).values())
        return sorted(found, key=_SINCE)

    def change(self, old: Lease | None, new: Lease | None) -> None:
        """Add ``new``, replace ``old`` by ``new`` (the same lease), or drop ``old``."""
        if new is not None:
            self.put(new)
        elif old is not None:
            del self.by_id[old.id]
            for key in _groups_of(old):
                group = self._groups[key]
                del group[old.id]
                if not group:
                    del self._groups[key]

    def put(self, lease: Lease) -> None:
        self.by_id[lease.id] = lease
        for key in _groups_of(lease):
            self._groups.setdefault(key, {})[lease.id] = lease


_SINCE = attrgetter("since")


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}


def _groups_of(lease: Lease) -> list[tuple[str, str, str]]:
    groups = [(lease.domain_id, "", ""), (lease.domain_id, "user", lease.user_id)]
    if lease.pool is not None:
        groups.append((lease.domain_id, "pool", lease.pool))
    return groups


class SQLiteTx(rows.SQLTx):
    def __init__(self, db: sqlite3.Connection, live: LiveLeases, lease_ttl: float) -> None:
        self._db = db
        self._live = live
        self._lease_ttl = lease_ttl
        self._undo: list[tuple[Lease | None, Lease | None]] = []  # (before, after)
        self.notes: list[Note] = []
        self.wrote = False

    def undo(self) -> None:
        """Put the live leases back as they were before this transaction."""
        for before, after in reversed(self._undo):
            self._live.change(after, before)
        self._undo.clear()

    def _change(self, before: Lease | None, after: Lease | None) -> None:
        self._undo.append((before, after))
        self._live.change(before, after)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> None:
        self.wrote = True
        self._db.execute(sql, tuple(params))

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._db.execute(sql, tuple(params)).fetchall()

    async def _query(self, sql: str, *params: Any) -> list[rows.Row]:
        return self._db.execute(_numbered(sql), params).fetchall()

    async def _run(self, sql: str, *params: Any) -> int:
        self.wrote = True
        return self._db.execute(_numbered(sql), params).rowcount

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, tuple(params)).fetchone()
        return row

    async def _insert(self, table: str, columns: str, values: tuple[Any, ...]) -> None:
        marks = ", ".join("?" * len(values))
        try:
            await self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)
        except sqlite3.IntegrityError as exc:
            raise RuleViolation("already_exists", f"That {table[:-1]} exists already.") from exc

    async def now(self) -> float:
        return time.time()

    async def domains(self) -> list[Domain]:
        return [rows.domain(row) for row in await self._all("SELECT * FROM domains ORDER BY id")]

    async def domain(self, domain_id: str) -> Domain | None:
        row = await self._one("SELECT * FROM domains WHERE id = ?", (domain_id,))
        return rows.domain(row) if row else None

    async def insert_domain(self, domain: Domain) -> None:
        await self._insert("domains", rows.DOMAIN_COLUMNS, rows.domain_values(domain))

    async def update_domain(self, domain: Domain) -> None:
        await self.execute(
            "UPDATE domains SET name = ?, plan = ?, named_licenses = ?, seat_licenses = ? "
            "WHERE id = ?",
            (*rows.domain_values(domain)[1:], domain.id),
        )

    async def pools(self, domain_id: str) -> list[Pool]:
        found = await self._all(
            "SELECT * FROM pools WHERE domain_id = ? ORDER BY rowid", (domain_id,)
        )
        return [rows.pool(row) for row in found]

    async def pool(self, domain_id: str, pool_id: str) -> Pool | None:
        row = await self._one(
            "SELECT * FROM pools WHERE domain_id = ? AND id = ?", (domain_id, pool_id)
        )
        return rows.pool(row) if row else None

    async def insert_pool(self, pool: Pool) -> None:
        await self._insert("pools", rows.POOL_COLUMNS, rows.pool_values(pool))

    async def users(self, domain_id: str, ids: Collection[str] | None = None) -> list[User]:
        found = await self._all(
            "SELECT * FROM users WHERE domain_id = ? "
            "AND (?2 IS NULL OR id IN (SELECT value FROM json_each(?2))) ORDER BY rowid",
            (domain_id, None if ids is None else json.dumps(list(ids))),
        )
        return [rows.user(row) for row in found]

    async def user(self, domain_id: str, user_id: str) -> User | None:
        row = await self._one(
            "SELECT * FROM users WHERE domain_id = ? AND id = ?", (domain_id, user_id)
        )
        return rows.user(row) if row else None

    async def email_taken(self, domain_id: str, email: str) -> bool:
        return await self._one(EMAIL_TAKEN, (domain_id, email)) is not None

    async def named_users(self, domain_id: str) -> int:
        row = await self._one(
            "SELECT COUNT(*) AS n FROM users WHERE domain_id = ? AND model = 'named'",
            (domain_id,),
        )
        assert row is not None
        return int(row["n"])

    async def insert_user(self, user: User) -> None:
        await self._insert("users", rows.USER_COLUMNS, rows.user_values(user))

    async def update_user(self, user: User) -> None:
        await self.execute(
            "UPDATE users SET email = ?, name = ?, model = ?, pool = ? "
            "WHERE domain_id = ? AND id = ?",
            (*rows.user_values(user)[2:], user.domain_id, user.id),
        )

    async def delete_user(self, domain_id: str, user_id: str) -> None:
        await self.execute("DELETE FROM users WHERE domain_id = ? AND id = ?", (domain_id, user_id))

    async def insert_token(self, token_hash: str, token: Token) -> None:
        await self.execute(
            f"INSERT INTO tokens (hash, {rows.TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (token_hash, *rows.token_values(token)),
        )

    async def use_tokens(self, token_hashes: Collection[str]) -> dict[str, TokenGrant]:
        now = await self.now()
        grants = {}
        for token_hash in token_hashes:
            row = await self._one(
                f"SELECT {rows.TOKEN_COLUMNS} FROM tokens "
                "WHERE hash = ? AND (expires_at IS NULL OR expires_at > ?)",
                (token_hash, now),
            )
            if row is None:
                continue
            token = rows.token(row)
            if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
                await self.execute(
                    "UPDATE tokens SET last_used_at = ? WHERE hash = ?", (now, token_hash)
                )
            grants[token_hash] = token.grant
        return grants

    async def tokens(self, domain_id: str | None) -> list[Token]:
        found = await self._all(
            f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE domain_id IS ? "
            "ORDER BY created_at NULLS FIRST, rowid",
            (domain_id,),
        )
        return [rows.token(row) for row in found]

    async def delete_token(self, domain_id: str | None, token_id: str) -> Token | None:
        row = await self._one(
            f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE id = ? AND domain_id IS ?",
            (token_id, domain_id),
        )
        if row is None:
            return None
        await self.execute("DELETE FROM tokens WHERE id = ?", (token_id,))
        return rows.token(row)

    async def leases(
        self,
        domain_id: str,
        *,
        pools: Collection[str] | None = None,
        users: Collection[str] | None = None,
    ) -> list[Lease]:
        return self._live.select(domain_id, pools, users)

    async def lease(self, lease_id: str) -> Lease | None:
        return self._live.by_id.get(lease_id)

    async def insert_leases(self, leases: Sequence[Lease]) -> list[Lease]:
        inserted = []
        for lease in leases:
            if lease.pool is not None:
                lease = replace(lease, fencing_token=await self._next_fencing_token())
            # A seat granted from the queue lives as long as the queue place did:
            # a session its node stopped serving has no more time than that.
            expires_at = await self._one(
                "SELECT expires_at FROM waiters WHERE session_id = ?", (lease.session_id,)
            )
            await self._insert(
                "leases",
                f"{rows.LEASE_COLUMNS}, expires_at",
                (*rows.lease_values(lease), expires_at[0] if expires_at else self._expiry()),
            )
            self._change(None, lease)
            inserted.append(lease)
        return inserted

    async def _next_fencing_token(self) -> int:
        await self.execute("UPDATE counters SET value = value + 1 WHERE name = 'fencing_token'")
        row = await self._one("SELECT value FROM counters WHERE name = 'fencing_token'")
        assert row is not None
        return int(row["value"])

    def _expiry(self) -> float:
        return time.time() + self._lease_ttl

    async def update_lease(self, lease: Lease) -> None:
        await self.execute(
            "UPDATE leases SET call_id = ?, call_started_at = ?, idle_since = ? WHERE id = ?",
            (lease.call_id, lease.call_started_at, lease.idle_since, lease.id),
        )
        before = self._live.by_id.get(lease.id)
        if before is not None:
            self._change(before, replace(
                before, call_id=lease.call_id, call_started_at=lease.call_started_at,
                idle_since=lease.idle_since,
            ))  # fmt: skip

    async def delete_leases(self, lease_ids: Collection[str]) -> None:
        ids = json.dumps(list(lease_ids))
        await self.execute(
            "DELETE FROM leases WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        )
        for lease_id in lease_ids:
            before = self._live.by_id.get(lease_id)
            if before is not None:
                self._change(before, None)

    async def waiters(self, domain_id: str, pools: Collection[str]) -> list[Waiter]:
        found = await self._all(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE domain_id = ? "
            "AND pool IN (SELECT value FROM json_each(?)) AND expires_at >= ? ORDER BY seq",
            (domain_id, json.dumps(list(pools)), time.time()),
        )
        return [rows.waiter(row) for row in found]

    async def waiter(self, session_id: str) -> Waiter | None:
        row = await self._one(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE session_id = ?", (session_id,)
        )
        return rows.waiter(row) if row else None

    async def insert_waiter(self, waiter: Waiter) -> None:
        await self._insert(
            "waiters",
            f"{rows.WAITER_COLUMNS}, expires_at",
            (*rows.waiter_values(waiter), self._expiry()),
        )

    async def delete_waiter(self, session_id: str) -> None:
        await self.execute("DELETE FROM waiters WHERE session_id = ?", (session_id,))

    async def renew(self, session_ids: list[str], expires_at: float) -> None:
        ids = json.dumps(session_ids)
        for table in ("leases", "waiters"):
            await self.execute(
                f"UPDATE {table} SET expires_at = ? "
                "WHERE session_id IN (SELECT value FROM json_each(?)) AND expires_at >= ?",
                (expires_at, ids, time.time()),
            )

    async def expired_leases(self) -> list[Lease]:
        found = await self._all(
            f"SELECT {rows.LEASE_COLUMNS} FROM leases WHERE expires_at < ? ORDER BY since",
            (time.time(),),
        )
        return [rows.lease(row) for row in found]

    async def expired_waiters(self) -> list[Waiter]:
        found = await self._all(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE expires_at < ? ORDER BY seq",
            (time.time(),),
        )
        return [rows.waiter(row) for row in found]

    async def pool_usage(
        self, domain_id: str, pools: Collection[str]
    ) -> dict[str, tuple[int, int]]:
        usage: dict[str, tuple[int, int]] = {}
        for lease in self._live.select(domain_id, pools, None):
            occupied, in_call = usage.get(lease.pool or "", (0, 0))
            usage[lease.pool or ""] = (occupied + 1, in_call + lease.in_call)
        return usage

    async def seat_counts(self) -> list[tuple[str, str, int, int]]:
        found = await self._all(
            "SELECT p.domain_id, p.id, p.seats, COUNT(l.id) AS occupied FROM pools p "
            "LEFT JOIN leases l ON l.domain_id = p.domain_id AND l.pool = p.id "
            "GROUP BY p.domain_id, p.id ORDER BY p.domain_id, p.id"
        )
        return [(r["domain_id"], r["id"], r["seats"], r["occupied"]) for r in found]

    async def add_events(self, events: list[Event]) -> list[StoredEvent]:
        stored = []
        self.wrote = self.wrote or bool(events)
        for event in events:
            cursor = self._db.execute(
                f"INSERT INTO events ({rows.EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows.event_values(event),
            )
            assert cursor.lastrowid is not None
            stored.append(StoredEvent(cursor.lastrowid, event))
        return stored

    async def events(self, domain_id: str, query: EventQuery) -> list[StoredEvent]:
        sql, params = rows.events_query(domain_id, query)
        found = await self._all(_numbered(sql), params)
        return [StoredEvent(row["id"], rows.event(row)) for row in found]

    async def latest_events(self, domain_id: str, limit: int) -> list[StoredEvent]:
        found = await self._all(
            f"SELECT id, {rows.EVENT_COLUMNS} FROM events WHERE domain_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (domain_id, limit),
        )
        return [StoredEvent(row["id"], rows.event(row)) for row in reversed(found)]

    async def record_queue(self, domain_id: str, pool: str, at: float, queued: int) -> None:
        await self.execute(
            f"INSERT INTO queue_samples ({rows.QUEUE_SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?)",
            (domain_id, pool, at, queued),
        )

    async def usage_period(self, domain_id: str, start: float, end: float) -> UsagePeriod:
        ids = self._tuples(_PERIOD_IDS, (domain_id, start, end)).fetchone()
        first = rows.NO_EVENT if ids[0] is None else ids[0]
        return rows.usage_period(
            domain_id, start, end, ids, self._tuples(_LAST_IDS, ()).fetchone(),
            self._tuples(_SEATS_HELD, (domain_id, first)).fetchall(),
            self._tuples(_QUEUED, (domain_id, start)).fetchall(),
        )  # fmt: skip

    async def usage_events(self, domain_id: str, first: int, after: int) -> list[EventRow]:
        return self._tuples(_PERIOD_EVENTS, (domain_id, first, after)).fetchall()

    async def usage_samples(
        self, period: UsagePeriod, since: tuple[float, int], limit: int
    ) -> list[tuple[float, str, int, int]]:
        params = (period.domain_id, period.start, period.end, period.last_sample, *since, limit)
        return self._tuples(_PERIOD_SAMPLES, params).fetchall()

    def _tuples(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Rows as plain tuples, for bulk reads."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params)

    def notify(self, note: Note) -> None:
        self.notes.append(note)
