"""The shared backend: one PostgreSQL database for any number of nodes.

Transactions run at READ COMMITTED on pooled connections. A transaction of a
domain first takes the domain's advisory lock, so it serialises with every
other transaction of that domain on every node: what the core reads and what
it writes back happen as one step. Unique indexes back up the rule that
matters most (one holder per seat, one seat per seat user). Fencing tokens
come from a sequence: every token is greater than every one handed out
before, in any domain, on any node.

Every time that leases live by comes from the database's clock, the same for
all nodes: :meth:`Tx.now`, and when leases and queue places expire.

Notes are sent with ``pg_notify`` inside the transaction, so they go out when
it commits and never if it rolls back. Every node, the sender included,
receives them in commit order on its own LISTEN connection; PostgreSQL
folds identical notes of one transaction into one, which is harmless as each
note asks to read something again or to do something once. NOTIFY keeps
nothing for a node that is not listening: when that connection is lost, the
node listens again and then receives :class:`~presence.notes.Resync`, so that
it reads the state again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .. import notes
from ..core.model import Domain, Event, Lease, Pool, User, Waiter
from ..core.usage import EventRow
from ..errors import Overloaded, RuleViolation, StorageError
from ..notes import Note
from . import rows
from .base import (
    LAST_USED_RESOLUTION,
    DomainTurns,
    EventQuery,
    Store,
    StoredEvent,
    Token,
    TokenGrant,
    UsagePeriod,
    check_deadline,
)

logger = logging.getLogger(__name__)

CHANNEL = "presence"
MAX_PAYLOAD = 7999  # bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more
POOL_SIZE = 10
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0
LISTEN_CHECK_INTERVAL = 1.0  # seconds between pings of the LISTEN connection

# The database clock as seconds since the epoch, like every time stored.
NOW = "extract(epoch FROM clock_timestamp())::float8"
# The key space is the one of pg_advisory_xact_lock(bigint): no domain id
# contains a space, so the schema's key is no domain's.
LOCK_DOMAIN = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
LOCK_SCHEMA = "SELECT pg_advisory_xact_lock(hashtextextended('presence schema', 0))"

# The driver's errors that mean the database failed or refused a statement.
# InternalClientError: a connection cut in the middle of an operation.
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)

#: Bumped with every change of SCHEMA or UPGRADE.
SCHEMA_VERSION = 6
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS domains (
    id text PRIMARY KEY, name text NOT NULL, plan text NOT NULL,
    named_licenses integer NOT NULL, seat_licenses integer NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    domain_id text NOT NULL, id text NOT NULL, name text NOT NULL,
    seats integer NOT NULL, idle_logoff_s integer NOT NULL,
    PRIMARY KEY (domain_id, id));
CREATE TABLE IF NOT EXISTS users (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    domain_id text NOT NULL, id text NOT NULL, email text NOT NULL,
    name text NOT NULL, model text NOT NULL, pool text,
    PRIMARY KEY (domain_id, id), UNIQUE (domain_id, email));
CREATE TABLE IF NOT EXISTS tokens (
    hash text PRIMARY KEY, role text NOT NULL, domain_id text, user_id text);
CREATE TABLE IF NOT EXISTS leases (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY, session_id text NOT NULL,
    domain_id text NOT NULL, user_id text NOT NULL, user_name text NOT NULL,
    device_id text NOT NULL, device_kind text NOT NULL, device_name text NOT NULL,
    since float8 NOT NULL, pool text, seat integer, fencing_token bigint,
    call_id text, call_started_at float8, idle_since float8 NOT NULL,
    expires_at float8 NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS leases_one_holder_per_seat
    ON leases (domain_id, pool, seat) WHERE pool IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS leases_one_seat_per_user
    ON leases (domain_id, user_id) WHERE pool IS NOT NULL;
CREATE INDEX IF NOT EXISTS leases_by_user ON leases (domain_id, user_id);
CREATE TABLE IF NOT EXISTS waiters (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pool text NOT NULL,
    session_id text NOT NULL UNIQUE, lease_id text NOT NULL,
    domain_id text NOT NULL, user_id text NOT NULL, user_name text NOT NULL,
    device_id text NOT NULL, device_kind text NOT NULL, device_name text NOT NULL,
    since float8 NOT NULL, expires_at float8 NOT NULL);
CREATE INDEX IF NOT EXISTS waiters_by_pool ON waiters (domain_id, pool, seq);
CREATE SEQUENCE IF NOT EXISTS fencing_tokens;
CREATE TABLE IF NOT EXISTS events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, domain_id text NOT NULL,
    at float8 NOT NULL, type text NOT NULL, user_id text NOT NULL,
    device_id text NOT NULL, pool text, seat integer);
CREATE INDEX IF NOT EXISTS events_by_domain ON events (domain_id, id);
CREATE TABLE IF NOT EXISTS queue_samples (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, domain_id text NOT NULL,
    pool text NOT NULL, at float8 NOT NULL, queued integer NOT NULL);
CREATE INDEX IF NOT EXISTS queue_samples_by_time ON queue_samples (domain_id, at, id);
CREATE INDEX IF NOT EXISTS users_by_email ON users (domain_id, lower(email));
CREATE TABLE IF NOT EXISTS webhooks (
    id text PRIMARY KEY, domain_id text NOT NULL, url text NOT NULL, events text,
    description text, enabled integer NOT NULL, secret text NOT NULL, created_at float8 NOT NULL,
    delivered_id bigint NOT NULL, attempts integer NOT NULL, failing_since float8,
    retry_at float8, owner text, claimed_until float8 NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS webhooks_by_domain ON webhooks (domain_id);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, webhook_id text NOT NULL,
    event_id bigint NOT NULL, attempt integer NOT NULL, at float8 NOT NULL, status integer,
    error text, duration_ms float8 NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE TABLE IF NOT EXISTS identities (
    domain_id text PRIMARY KEY, issuer text NOT NULL, audience text NOT NULL,
    email_claim text NOT NULL, provision_model text, provision_pool text);
CREATE TABLE IF NOT EXISTS pool_alerts (
    domain_id text NOT NULL, pool text NOT NULL, full_at float8, full_open integer NOT NULL,
    near_since float8, near_open integer NOT NULL, clear_since float8,
    PRIMARY KEY (domain_id, pool));
{rows.USAGE_INDEXES}"""

# Run after SCHEMA, on new databases as on those from before leases expired by
# themselves: then leases and waiters belonged to a node, renewed in a table of
# nodes, and fencing tokens came from a row of counters. What they held is kept
# for lease_ttl from the upgrade.
UPGRADE = """
-- Columns the tokens table gained: the id's default gives every token one.
ALTER TABLE tokens
    ADD COLUMN IF NOT EXISTS id text NOT NULL DEFAULT replace(gen_random_uuid()::text, '-', ''),
    ADD COLUMN IF NOT EXISTS label text,
    ADD COLUMN IF NOT EXISTS created_at float8,
    ADD COLUMN IF NOT EXISTS expires_at float8,
    ADD COLUMN IF NOT EXISTS last_used_at float8;
CREATE UNIQUE INDEX IF NOT EXISTS tokens_by_id ON tokens (id);
CREATE INDEX IF NOT EXISTS tokens_by_domain ON tokens (domain_id);
-- Databases from before marked the generation of a server token with this row.
DELETE FROM tokens WHERE hash = 'server-token-generated';
ALTER TABLE leases DROP COLUMN IF EXISTS node_id;
ALTER TABLE leases ADD COLUMN IF NOT EXISTS expires_at float8 NOT NULL DEFAULT 0;
ALTER TABLE waiters DROP COLUMN IF EXISTS node_id;
ALTER TABLE waiters ADD COLUMN IF NOT EXISTS expires_at float8 NOT NULL DEFAULT 0;
DROP TABLE IF EXISTS nodes;
CREATE INDEX IF NOT EXISTS leases_by_session ON leases (session_id);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
CREATE INDEX IF NOT EXISTS waiters_by_expiry ON waiters (expires_at);
ALTER TABLE pools
    ADD COLUMN IF NOT EXISTS alert_interval_s integer NOT NULL DEFAULT 300,
    ADD COLUMN IF NOT EXISTS alert_threshold_pct integer;
"""
KEEP_UPGRADED = f"""
UPDATE leases SET expires_at = {NOW} + $1::float8 WHERE expires_at = 0
"""
# One statement: the live tokens of some hashes, each one's last use written if
# older than $2 s.
USE_TOKENS = f"""
WITH found AS (
    SELECT hash, {rows.TOKEN_COLUMNS}, {NOW} AS now FROM tokens
    WHERE hash = ANY($1::text[]) AND (expires_at IS NULL OR expires_at > {NOW})),
used AS (
    UPDATE tokens SET last_used_at = found.now FROM found
    WHERE tokens.hash = found.hash
        AND (found.last_used_at IS NULL OR found.last_used_at < found.now - $2))
SELECT * FROM found
"""
# Tokens of the domain $1, or the server's for NULL; unlike IS NOT DISTINCT
# FROM, it can use the index.
OF_DOMAIN = "(domain_id = $1 OR ($1::text IS NULL AND domain_id IS NULL))"
FENCING_FROM_COUNTERS = """
SELECT setval('fencing_tokens', value) FROM counters
WHERE name = 'fencing_token' AND value > 0
"""
# An expired lease is the sweeper's, even if it was not freed yet. A row that
# a transaction is changing now is skipped (renewed next time, well within its
# TTL): renewals never wait for decisions, nor deadlock with them.
RENEW = f"""
UPDATE {{table}} SET expires_at = {NOW} + $2::float8 WHERE {{key}} IN (
    SELECT {{key}} FROM {{table}} WHERE session_id = ANY($1::text[]) AND expires_at >= {NOW}
    FOR UPDATE SKIP LOCKED)
"""
# New leases from one array per column, in one statement; a seat lease takes
# the next fencing token. A seat granted from the queue lives as long as the
# queue place did: a session its node stopped serving has no more time than that.
INSERT_LEASES = f"""
INSERT INTO leases ({rows.LEASE_COLUMNS}, expires_at)
SELECT n.id, n.session_id, n.domain_id, n.user_id, n.user_name, n.device_id, n.device_kind,
       n.device_name, n.since, n.pool, n.seat, n.call_id, n.call_started_at, n.idle_since,
       CASE WHEN n.pool IS NULL THEN NULL ELSE nextval('fencing_tokens') END,
       COALESCE((SELECT expires_at FROM waiters WHERE session_id = n.session_id),
                {NOW} + $15::float8)
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::float8[], $10::text[], $11::integer[], $12::text[],
            $13::float8[], $14::float8[])
    WITH ORDINALITY AS n(id, session_id, domain_id, user_id, user_name, device_id, device_kind,
                         device_name, since, pool, seat, call_id, call_started_at, idle_since, o)
ORDER BY n.o
RETURNING id, fencing_token
"""
INSERT_EVENTS = f"""
INSERT INTO events ({rows.EVENT_COLUMNS})
SELECT n.domain_id, n.at, n.type, n.user_id, n.device_id, n.pool, n.seat
FROM unnest($1::text[], $2::float8[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::integer[]) WITH ORDINALITY AS n(domain_id, at, type, user_id, device_id, pool,
                                                seat, o)
ORDER BY n.o
RETURNING id
"""
#: Sessions renewed per statement.
RENEW_BATCH = 5000
EXPIRED = f"expires_at < {NOW}"


async def _create_schema(conn: PoolConnectionProxy[asyncpg.Record], lease_ttl: float) -> None:
    """Create or upgrade the schema, unless it is this version's already.

    DDL locks the tables it touches: a node starting beside running ones must
    not take such locks (it would wait behind their transactions, stop them,
    and deadlock with them), so the work is done once, by the first node of a
    version, with nodes starting together taking turns.
    """
    current = "SELECT version FROM schema_version"
    if await conn.fetchval("SELECT to_regclass('schema_version')") is not None:
        if await conn.fetchval(current) == SCHEMA_VERSION:
            return
    async with conn.transaction():
        await conn.execute(LOCK_SCHEMA)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        if await conn.fetchval(current) == SCHEMA_VERSION:
            return
        await conn.execute(SCHEMA)
        await conn.execute(UPGRADE)
        await conn.execute(KEEP_UPGRADED, lease_ttl)
        if await conn.fetchval("SELECT to_regclass('counters')") is not None:
            await conn.execute(FENCING_FROM_COUNTERS)
            await conn.execute("DROP TABLE counters")
        await conn.execute("DELETE FROM schema_version")
        await conn.execute("INSERT INTO schema_version VALUES ($1)", SCHEMA_VERSION)


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """A released connection needs no reset (one round trip and a RESET ALL per
    transaction): the pool ends every transaction, and nothing here sets session
    state, listens or takes a session-level lock on a pooled connection."""


@asynccontextmanager
async def _released(
    pool: asyncpg.Pool[asyncpg.Record], conn: PoolConnectionProxy[asyncpg.Record]
) -> AsyncIterator[None]:
    """Give an acquired connection back to its pool at the end of the block (without a
    timeout, the pool would reset it under what remained of the acquire's)."""
    try:
        yield
    finally:
        await pool.release(conn, timeout=CLOSE_TIMEOUT)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Raise the driver's errors as :exc:`StorageError`."""
    try:
        yield
    except _ERRORS as exc:
        raise StorageError(f"The database failed: {exc}") from exc


class PostgresStore(Store):
    """A store in a PostgreSQL database shared by nodes; ``url`` is a libpq URL.

    A node's transactions stalled for longer than ``lease_ttl`` (a paused
    process) are ended by the server, so that they release their domains'
    locks: such a node has lost its leases anyway.
    """

    def __init__(self, url: str, node_id: str) -> None:
        super().__init__(node_id)
        self.url = url
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._listener: asyncpg.Connection[asyncpg.Record] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._lease_ttl = 0.0
        self._domain_turns = DomainTurns()

    async def open(self, lease_ttl: float) -> None:
        self._lease_ttl = lease_ttl
        try:
            with _translated():
                self._pool = await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=POOL_SIZE,
                    timeout=CONNECT_TIMEOUT,
                    reset=_keep_session,
                    server_settings={
                        "application_name": f"presence {self.node_id}"[:63],
                        "idle_in_transaction_session_timeout": str(int(lease_ttl * 1000)),
                        # A statement is planned for its values and the tables as
                        # they are. A generic plan, kept after five runs, was made
                        # for the tables as they were: those of a storm's first
                        # seconds scanned every lease of the domain once it had
                        # 10,000 (2 ms a read instead of 0.1). Planning costs
                        # about 5 us a statement.
                        "plan_cache_mode": "force_custom_plan",
                    },
                )
                async with self._pool.acquire() as conn:
                    await _create_schema(conn, lease_ttl)
                self._listener = await self._listen()
        except BaseException:
            await self._disconnect()
            raise
        self._checking = asyncio.create_task(self._keep_listening(), name="presence-listen")
        self.bus.start()

    async def close(self) -> None:
        if self._pool is None:
            return
        await self.bus.stop()
        if self._checking is not None:
            self._checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checking
            self._checking = None
        await self._disconnect()

    def healthy(self) -> bool:
        return (
            self._pool is not None
            and not self._pool.is_closing()
            and self._listener is not None
            and not self._listener.is_closed()
        )

    async def renew(self, session_ids: Collection[str]) -> None:
        if self._pool is None:
            raise StorageError("The database is not open.")
        ids = list(session_ids)
        with _translated():
            for start in range(0, len(ids), RENEW_BATCH):
                batch = ids[start : start + RENEW_BATCH]
                for table, key in (("leases", "id"), ("waiters", "seq")):
                    renew = RENEW.format(table=table, key=key)
                    await self._pool.execute(renew, batch, self._lease_ttl)

    @asynccontextmanager
    async def transaction(
        self, domain_id: str | None = None, *, deadline: float | None = None
    ) -> AsyncIterator[PostgresTx]:
        if self._pool is None:
            raise StorageError("The database is not open.")
        if domain_id is None:
            async with self._transaction(None, deadline) as tx:
                yield tx
            return
        # A domain's transactions on this node queue here, each in turn, rather
        # than on pooled connections waiting for the domain's lock: a storm on
        # one domain leaves connections for every other.
        async with self._domain_turns.turn(domain_id):
            check_deadline(deadline)
            async with self._transaction(domain_id, deadline) as tx:
                yield tx

    @asynccontextmanager
    async def _transaction(
        self, domain_id: str | None, deadline: float | None
    ) -> AsyncIterator[PostgresTx]:
        assert self._pool is not None
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            conn = await self._pool.acquire(timeout=wait)
        except TimeoutError:
            raise Overloaded from None
        except _ERRORS as exc:
            raise StorageError(f"The database failed: {exc}") from exc
        with _translated():
            async with (
                _released(self._pool, conn),
                conn.transaction(isolation="read_committed"),
            ):
                if domain_id is not None:
                    await conn.execute(LOCK_DOMAIN, domain_id)
                tx = PostgresTx(conn, self._lease_ttl)
                yield tx
                await tx.publish()

    async def _listen(self) -> asyncpg.Connection[asyncpg.Record]:
        listener = await asyncpg.connect(
            self.url,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": f"presence-listen {self.node_id}"[:63]},
        )
        try:
            await listener.add_listener(CHANNEL, self._received)
        except BaseException:
            listener.terminate()
            raise
        return listener

    def _received(self, connection: object, pid: int, channel: str, payload: object) -> None:
        assert isinstance(payload, str)
        try:
            note = notes.decode(payload)
        except notes.BadNote:  # from a node of another version, say
            logger.warning("ignored a note: %s", payload[:200])
            return
        self.bus.deliver([note])

    async def _keep_listening(self) -> None:
        """Check the LISTEN connection; once it is lost, listen again and resync."""
        while True:
            await asyncio.sleep(LISTEN_CHECK_INTERVAL)
            assert self._listener is not None
            try:
                await self._listener.fetchval("SELECT 1", timeout=LISTEN_CHECK_INTERVAL)
                continue
            except _ERRORS as exc:
                logger.warning("lost the LISTEN connection (%s); listening again", exc)
            self._listener.terminate()
            while True:
                try:
                    self._listener = await self._listen()
                    break
                except _ERRORS as exc:
                    logger.warning("cannot LISTEN (%s); retrying", exc)
                    await asyncio.sleep(LISTEN_CHECK_INTERVAL)
            self.bus.deliver([notes.Resync()])

    async def _disconnect(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(*_ERRORS):
                await self._listener.close(timeout=CLOSE_TIMEOUT)
            self._listener = None
        if self._pool is not None:
            try:  # transactions still running are given a moment, then cut
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                self._pool.terminate()
            self._pool = None


def _payloads(note: Note) -> Iterator[str]:
    """The NOTIFY payloads of a note: :class:`~presence.notes.EventsLogged` too
    large is split in halves, and :class:`~presence.notes.PoolChanged` too large
    (a queue of some two hundred) goes without its occupancy, for nodes to read.

    Other notes are small (ids, codes, a message); one too large fails the
    transaction.
    """
    payload = notes.encode(note)
    if len(payload) <= MAX_PAYLOAD:
        yield payload
    elif isinstance(note, notes.PoolChanged) and note.occupancy is not None:
        yield from _payloads(replace(note, occupancy=None))  # a long queue: read it
    elif not isinstance(note, notes.EventsLogged) or len(note.events) < 2:
        yield payload
    else:
        half = len(note.events) // 2
        yield from _payloads(replace(note, events=note.events[:half]))
        yield from _payloads(replace(note, events=note.events[half:]))


class PostgresTx(rows.SQLTx):
    def __init__(self, conn: PoolConnectionProxy[asyncpg.Record], lease_ttl: float) -> None:
        self._conn = conn
        self._lease_ttl = lease_ttl
        self.notes: list[Note] = []

    async def publish(self) -> None:
        """Send the notes; PostgreSQL delivers them when the transaction commits."""
        payloads = [(CHANNEL, payload) for note in self.notes for payload in _payloads(note)]
        if payloads:
            await self._conn.executemany("SELECT pg_notify($1, $2)", payloads)

    async def _query(self, sql: str, *params: Any) -> list[rows.Row]:
        return list(await self._conn.fetch(sql, *params))

    async def _run(self, sql: str, *params: Any) -> int:
        status = await self._conn.execute(sql, *params)
        return int(status.rsplit(" ", 1)[-1])

    async def _insert(self, table: str, columns: str, values: tuple[Any, ...]) -> None:
        marks = ", ".join(f"${n}" for n in range(1, len(values) + 1))
        try:
            await self._conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", *values)
        except asyncpg.UniqueViolationError as exc:
            raise RuleViolation("already_exists", f"That {table[:-1]} exists already.") from exc

    async def now(self) -> float:
        now: float = await self._conn.fetchval(f"SELECT {NOW}")
        return now

    async def domains(self) -> list[Domain]:
        found = await self._conn.fetch(f"SELECT {rows.DOMAIN_COLUMNS} FROM domains ORDER BY id")
        return [rows.domain(row) for row in found]

    async def domain(self, domain_id: str) -> Domain | None:
        row = await self._conn.fetchrow(
            f"SELECT {rows.DOMAIN_COLUMNS} FROM domains WHERE id = $1", domain_id
        )
        return rows.domain(row) if row else None

    async def insert_domain(self, domain: Domain) -> None:
        await self._insert("domains", rows.DOMAIN_COLUMNS, rows.domain_values(domain))

    async def update_domain(self, domain: Domain) -> None:
        await self._conn.execute(
            "UPDATE domains SET name = $2, plan = $3, named_licenses = $4, seat_licenses = $5 "
            "WHERE id = $1",
            *rows.domain_values(domain),
        )

    async def pools(self, domain_id: str) -> list[Pool]:
        found = await self._conn.fetch(
            f"SELECT {rows.POOL_COLUMNS} FROM pools WHERE domain_id = $1 ORDER BY seq", domain_id
        )
        return [rows.pool(row) for row in found]

    async def pool(self, domain_id: str, pool_id: str) -> Pool | None:
        row = await self._conn.fetchrow(
            f"SELECT {rows.POOL_COLUMNS} FROM pools WHERE domain_id = $1 AND id = $2",
            domain_id,
            pool_id,
        )
        return rows.pool(row) if row else None

    async def insert_pool(self, pool: Pool) -> None:
        await self._insert("pools", rows.POOL_COLUMNS, rows.pool_values(pool))

    async def users(self, domain_id: str, ids: Collection[str] | None = None) -> list[User]:
        found = await self._conn.fetch(
            f"SELECT {rows.USER_COLUMNS} FROM users WHERE domain_id = $1 "
            "AND ($2::text[] IS NULL OR id = ANY($2)) ORDER BY seq",
            domain_id,
            None if ids is None else list(ids),
        )
        return [rows.user(row) for row in found]

    async def email_taken(self, domain_id: str, email: str) -> bool:
        taken: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT FROM users WHERE domain_id = $1 AND lower(email) = lower($2))",
            domain_id,
            email,
        )
        return taken

    async def named_users(self, domain_id: str) -> int:
        count: int = await self._conn.fetchval(
            "SELECT COUNT(*) FROM users WHERE domain_id = $1 AND model = 'named'", domain_id
        )
        return count

    async def user(self, domain_id: str, user_id: str) -> User | None:
        row = await self._conn.fetchrow(
            f"SELECT {rows.USER_COLUMNS} FROM users WHERE domain_id = $1 AND id = $2",
            domain_id,
            user_id,
        )
        return rows.user(row) if row else None

    async def insert_user(self, user: User) -> None:
        await self._insert("users", rows.USER_COLUMNS, rows.user_values(user))

    async def update_user(self, user: User) -> None:
        await self._conn.execute(
            "UPDATE users SET email = $3, name = $4, model = $5, pool = $6 "
            "WHERE domain_id = $1 AND id = $2",
            *rows.user_values(user),
        )

    async def delete_user(self, domain_id: str, user_id: str) -> None:
        await self._conn.execute(
            "DELETE FROM users WHERE domain_id = $1 AND id = $2", domain_id, user_id
        )

    async def insert_token(self, token_hash: str, token: Token) -> None:
        await self._conn.execute(
            f"INSERT INTO tokens (hash, {rows.TOKEN_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            token_hash,
            *rows.token_values(token),
        )

    async def use_tokens(self, token_hashes: Collection[str]) -> dict[str, TokenGrant]:
        found = await self._conn.fetch(USE_TOKENS, list(token_hashes), LAST_USED_RESOLUTION)
        return {row["hash"]: rows.token(row).grant for row in found}

    async def tokens(self, domain_id: str | None) -> list[Token]:
        found = await self._conn.fetch(
            f"SELECT {rows.TOKEN_COLUMNS} FROM tokens WHERE {OF_DOMAIN} "
            "ORDER BY created_at NULLS FIRST, id",
            domain_id,
        )
        return [rows.token(row) for row in found]

    async def delete_token(self, domain_id: str | None, token_id: str) -> Token | None:
        row = await self._conn.fetchrow(
            f"DELETE FROM tokens WHERE id = $2 AND {OF_DOMAIN} RETURNING {rows.TOKEN_COLUMNS}",
            domain_id,
            token_id,
        )
        return rows.token(row) if row else None

    async def leases(
        self,
        domain_id: str,
        *,
        pools: Collection[str] | None = None,
        users: Collection[str] | None = None,
    ) -> list[Lease]:
        found = await self._conn.fetch(
            f"SELECT {rows.LEASE_COLUMNS} FROM leases WHERE domain_id = $1 "
            "AND ($2::text[] IS NULL OR pool = ANY($2)) "
            "AND ($3::text[] IS NULL OR user_id = ANY($3)) ORDER BY since, seq",
            domain_id,
            None if pools is None else list(pools),
            None if users is None else list(users),
        )
        return [rows.lease(row) for row in found]

    async def lease(self, lease_id: str) -> Lease | None:
        row = await self._conn.fetchrow(
            f"SELECT {rows.LEASE_COLUMNS} FROM leases WHERE id = $1", lease_id
        )
        return rows.lease(row) if row else None

    async def insert_leases(self, leases: Sequence[Lease]) -> list[Lease]:
        columns = zip(*(rows.lease_values(lease)[:-1] for lease in leases), strict=True)
        try:
            found = await self._conn.fetch(INSERT_LEASES, *map(list, columns), self._lease_ttl)
        except asyncpg.UniqueViolationError as exc:
            raise RuleViolation("already_exists", "That lease exists already.") from exc
        tokens = {row["id"]: row["fencing_token"] for row in found}
        return [replace(lease, fencing_token=tokens[lease.id]) for lease in leases]

    async def update_lease(self, lease: Lease) -> None:
        await self._conn.execute(
            "UPDATE leases SET call_id = $2, call_started_at = $3, idle_since = $4 WHERE id = $1",
            lease.id,
            lease.call_id,
            lease.call_started_at,
            lease.idle_since,
        )

    async def delete_leases(self, lease_ids: Collection[str]) -> None:
        await self._conn.execute("DELETE FROM leases WHERE id = ANY($1::text[])", list(lease_ids))

    async def waiters(self, domain_id: str, pools: Collection[str]) -> list[Waiter]:
        found = await self._conn.fetch(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE domain_id = $1 "
            f"AND pool = ANY($2::text[]) AND NOT {EXPIRED} ORDER BY seq",
            domain_id,
            list(pools),
        )
        return [rows.waiter(row) for row in found]

    async def waiter(self, session_id: str) -> Waiter | None:
        row = await self._conn.fetchrow(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE session_id = $1", session_id
        )
        return rows.waiter(row) if row else None

    async def insert_waiter(self, waiter: Waiter) -> None:
        values = rows.waiter_values(waiter)
        marks = ", ".join(f"${n}" for n in range(1, len(values) + 1))
        try:
            await self._conn.execute(
                f"INSERT INTO waiters ({rows.WAITER_COLUMNS}, expires_at) "
                f"VALUES ({marks}, {NOW} + ${len(values) + 1}::float8)",
                *values, self._lease_ttl,
            )  # fmt: skip
        except asyncpg.UniqueViolationError as exc:
            raise RuleViolation("already_exists", "That waiter exists already.") from exc

    async def delete_waiter(self, session_id: str) -> None:
        await self._conn.execute("DELETE FROM waiters WHERE session_id = $1", session_id)

    async def expired_leases(self) -> list[Lease]:
        found = await self._conn.fetch(
            f"SELECT {rows.LEASE_COLUMNS} FROM leases WHERE {EXPIRED} ORDER BY since, seq"
        )
        return [rows.lease(row) for row in found]

    async def expired_waiters(self) -> list[Waiter]:
        found = await self._conn.fetch(
            f"SELECT {rows.WAITER_COLUMNS} FROM waiters WHERE {EXPIRED} ORDER BY seq"
        )
        return [rows.waiter(row) for row in found]

    async def pool_usage(
        self, domain_id: str, pools: Collection[str]
    ) -> dict[str, tuple[int, int]]:
        found = await self._conn.fetch(
            "SELECT pool, count(*) AS occupied, count(call_id) AS in_call FROM leases "
            "WHERE domain_id = $1 AND pool = ANY($2::text[]) GROUP BY pool",
            domain_id,
            list(pools),
        )
        return {row["pool"]: (row["occupied"], row["in_call"]) for row in found}

    async def seat_counts(self) -> list[tuple[str, str, int, int]]:
        found = await self._conn.fetch(
            "SELECT p.domain_id, p.id, p.seats, count(l.id) AS occupied FROM pools p "
            "LEFT JOIN leases l ON l.domain_id = p.domain_id AND l.pool = p.id "
            "GROUP BY p.domain_id, p.id ORDER BY p.domain_id, p.id"
        )
        return [(r["domain_id"], r["id"], r["seats"], r["occupied"]) for r in found]

    async def add_events(self, events: list[Event]) -> list[StoredEvent]:
        if not events:
            return []
        columns = zip(*map(rows.event_values, events), strict=True)
        found = await self._conn.fetch(INSERT_EVENTS, *map(list, columns))
        # Ids are drawn as the rows are inserted, in the order given.
        ids = sorted(row["id"] for row in found)
        return [StoredEvent(event_id, event) for event_id, event in zip(ids, events, strict=True)]

    async def events(self, domain_id: str, query: EventQuery) -> list[StoredEvent]:
        sql, params = rows.events_query(domain_id, query)
        found = await self._conn.fetch(sql, *params)
        return [StoredEvent(row["id"], rows.event(row)) for row in found]

    async def latest_events(self, domain_id: str, limit: int) -> list[StoredEvent]:
        found = await self._conn.fetch(
            f"SELECT id, {rows.EVENT_COLUMNS} FROM events WHERE domain_id = $1 "
            "ORDER BY id DESC LIMIT $2",
            domain_id,
            limit,
        )
        return [StoredEvent(row["id"], rows.event(row)) for row in reversed(found)]

    async def record_queue(self, domain_id: str, pool: str, at: float, queued: int) -> None:
        await self._conn.execute(
            f"INSERT INTO queue_samples ({rows.QUEUE_SAMPLE_COLUMNS}) VALUES ($1, $2, $3, $4)",
            domain_id,
            pool,
            at,
            queued,
        )

    async def usage_period(self, domain_id: str, start: float, end: float) -> UsagePeriod:
        ids = await self._conn.fetchrow(rows.PERIOD_IDS, domain_id, start, end)
        last_ids = await self._conn.fetchrow(rows.LAST_IDS)
        assert ids is not None and last_ids is not None
        first = rows.NO_EVENT if ids[0] is None else ids[0]
        held = await self._conn.fetch(rows.SEATS_HELD, domain_id, first)
        queued = await self._conn.fetch(rows.QUEUED, domain_id, start)
        return rows.usage_period(
            domain_id, start, end, tuple(ids), tuple(last_ids), map(tuple, held), map(tuple, queued)
        )

    async def usage_events(self, domain_id: str, first: int, after: int) -> list[EventRow]:
        # Records index, unpack and compare as tuples: a year of events is not copied.
        found = await self._conn.fetch(rows.PERIOD_EVENTS, domain_id, first, after)
        return cast("list[EventRow]", found)

    async def usage_samples(
        self, period: UsagePeriod, since: tuple[float, int], limit: int
    ) -> list[tuple[float, str, int, int]]:
        found = await self._conn.fetch(
            rows.PERIOD_SAMPLES, period.domain_id, period.start, period.end,
            period.last_sample, *since, limit,
        )  # fmt: skip
        return cast("list[tuple[float, str, int, int]]", found)

    def notify(self, note: Note) -> None:
        self.notes.append(note)
