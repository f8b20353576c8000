"""Rows to values and back, the same for every SQL backend.

Each table's columns are listed once here, in the order the backends' SQL
uses them. Leases and waiters also have an ``expires_at`` column, the store's
own (see :meth:`~presence.storage.Store.renew`), which the model does not carry.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterable
from typing import Any, Protocol

from ..core.alerts import AlertState
from ..core.model import Device, Domain, Event, Identity, Lease, License, Pool, User, Waiter
from ..core.usage import FREEING, PoolState
from ..core.webhooks import Progress, Webhook
from .base import Delivery, EventQuery, Token, Tx, UsagePeriod

LEASE_COLUMNS = (
    "id, session_id, domain_id, user_id, user_name, device_id, device_kind, device_name, "
    "since, pool, seat, call_id, call_started_at, idle_since, fencing_token"
)
WAITER_COLUMNS = (
    "session_id, lease_id, domain_id, pool, user_id, user_name, device_id, "
    "device_kind, device_name, since"
)
USER_COLUMNS = "domain_id, id, email, name, model, pool"
POOL_COLUMNS = "domain_id, id, name, seats, idle_logoff_s, alert_interval_s, alert_threshold_pct"
DOMAIN_COLUMNS = "id, name, plan, named_licenses, seat_licenses"
EVENT_COLUMNS = "domain_id, at, type, user_id, device_id, pool, seat"
TOKEN_COLUMNS = "id, role, domain_id, user_id, label, created_at, expires_at, last_used_at"
QUEUE_SAMPLE_COLUMNS = "domain_id, pool, at, queued"
WEBHOOK_COLUMNS = "domain_id, id, url, events, description, enabled, secret, created_at"
PROGRESS_COLUMNS = "delivered_id, attempts, failing_since, retry_at"
DELIVERY_COLUMNS = "webhook_id, event_id, attempt, at, status, error, duration_ms"
ALERT_COLUMNS = "full_at, full_open, near_since, near_open, clear_since"
IDENTITY_COLUMNS = "domain_id, issuer, audience, email_claim, provision_model, provision_pool"
UPDATE_POOL = """
UPDATE pools SET name = $3, seats = $4, idle_logoff_s = $5, alert_interval_s = $6,
    alert_threshold_pct = $7
WHERE domain_id = $1 AND id = $2
"""

# Webhook endpoints, their delivery and the pools' alerts: the same SQL for
# every backend, with parameters $n and times given by the caller.
# A node claims ($1) the enabled endpoints whose claim ran out (before $2, now),
# claims them until $3, and renews its own when they would run out before $4.
CLAIM_WEBHOOKS = """
UPDATE webhooks SET owner = $1, claimed_until = $3
WHERE enabled = 1 AND (claimed_until < $2 OR (owner = $1 AND claimed_until < $4))
"""
# The endpoints node $1 holds at $2, with how long each claim has left.
CLAIMED_WEBHOOKS = """
SELECT domain_id, id, claimed_until - $2 AS left_s FROM webhooks
WHERE owner = $1 AND enabled = 1 AND claimed_until > $2 ORDER BY domain_id, id
"""
# An attempt's outcome, written only while node $2 holds the enabled endpoint $1.
ADVANCE_WEBHOOK = """
UPDATE webhooks SET delivered_id = $3, attempts = $4, failing_since = $5, retry_at = $6
WHERE id = $1 AND owner = $2 AND enabled = 1
"""
#: Attempts kept in an endpoint's delivery log; older ones are dropped.
DELIVERIES_KEPT = 1000
PRUNE_DELIVERIES = f"""
DELETE FROM webhook_deliveries WHERE webhook_id = $1 AND id <= (
    SELECT id FROM webhook_deliveries WHERE webhook_id = $1
    ORDER BY id DESC LIMIT 1 OFFSET {DELIVERIES_KEPT})
"""
DELIVERIES = f"""
SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1
ORDER BY id DESC LIMIT $2
"""
# Pools whose occupancy the alerts watch: those with a threshold, and those with
# an alert logged and not yet recovered; with their seats held.
WATCHED_POOLS = f"""
SELECT p.domain_id, p.id, p.name, p.seats, p.idle_logoff_s, p.alert_interval_s,
       p.alert_threshold_pct, {", ".join("a." + c for c in ALERT_COLUMNS.split(", "))},
       (SELECT count(*) FROM leases l
        WHERE l.domain_id = p.domain_id AND l.pool = p.id) AS occupied
FROM pools p LEFT JOIN pool_alerts a ON a.domain_id = p.domain_id AND a.pool = p.id
WHERE p.alert_threshold_pct IS NOT NULL OR a.full_open = 1 OR a.near_open = 1
"""
ALERT_STATE = f"SELECT {ALERT_COLUMNS} FROM pool_alerts WHERE domain_id = $1 AND pool = $2"
SET_ALERT_STATE = f"""
INSERT INTO pool_alerts (domain_id, pool, {ALERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (domain_id, pool) DO UPDATE SET full_at = $3, full_open = $4, near_since = $5,
    near_open = $6, clear_since = $7
"""

# Usage (presence.core.usage.History) reads a period by index, whatever came
# before it. ``$n`` are the parameters (SQLite's ``?n``). The events that decide
# whether a seat is held, the condition of a partial index: a query must say it
# in the same words for SQLite to use the index, and a change of it is a new
# index (another name).
SEAT_CHANGES = (
    "seat IS NOT NULL AND type IN ("
    + ", ".join(f"'{t}'" for t in ("seat_granted", *sorted(FREEING)))
    + ")"
)
USAGE_INDEXES = f"""
CREATE INDEX IF NOT EXISTS events_by_time ON events (domain_id, at, id) WHERE pool IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_seat ON events (domain_id, pool, seat, id)
    WHERE {SEAT_CHANGES};
CREATE INDEX IF NOT EXISTS queue_samples_by_pool ON queue_samples (domain_id, pool, at, id);
"""
# The id of the first pool event (in the log's order) timed at or after $2, and
# of the first at or after $3 (NULL: none): the period's events run from the
# one to the other (see presence.core.usage). Each is found in the index by
# time, reading the entries from that time on; with min(id) rather than
# min(id + 0), PostgreSQL may read the index by id from the domain's first
# event instead, even for the last hour.
PERIOD_IDS = """
SELECT (SELECT min(id + 0) FROM events WHERE domain_id = $1 AND pool IS NOT NULL AND at >= $2),
       (SELECT min(id + 0) FROM events WHERE domain_id = $1 AND pool IS NOT NULL AND at >= $3)
"""
# (pool, seat) of each seat held after the events logged before id $2: those
# whose last grant or freeing then was a grant. The seats of each pool are
# found one by one in the index (a loose index scan), each one's last change in
# one step back.
SEATS_HELD = f"""
WITH RECURSIVE seats (pool, seat) AS (
    SELECT id, (SELECT min(e.seat) FROM events e
                WHERE e.domain_id = $1 AND e.pool = pools.id AND {SEAT_CHANGES})
    FROM pools WHERE domain_id = $1
  UNION ALL
    SELECT s.pool, (SELECT min(e.seat) FROM events e
                    WHERE e.domain_id = $1 AND e.pool = s.pool AND e.seat > s.seat
                    AND {SEAT_CHANGES})
    FROM seats s WHERE s.seat IS NOT NULL)
SELECT s.pool, s.seat FROM seats s
WHERE (SELECT e.type FROM events e
       WHERE e.domain_id = $1 AND e.pool = s.pool AND e.seat = s.seat AND e.id < $2
       AND {SEAT_CHANGES} ORDER BY e.id DESC LIMIT 1) = 'seat_granted'
"""
# (pool, queue length before $2, or NULL) of each pool of the domain.
QUEUED = """
SELECT p.id, (SELECT q.queued FROM queue_samples q
              WHERE q.domain_id = $1 AND q.pool = p.id AND q.at < $2
              ORDER BY q.at DESC, q.id DESC LIMIT 1)
FROM pools p WHERE p.domain_id = $1
"""
# Bulk reads (a year of history is a million events): rows, not objects, in the
# order of presence.core.usage.EventRow and SampleRow.
PERIOD_EVENTS = """
SELECT at, pool, type, seat FROM events
WHERE domain_id = $1 AND pool IS NOT NULL AND id >= $2 AND id < $3 ORDER BY id
"""
# A period is read in chunks, each in its own transaction (a year would hold
# the node for a second): the first fixes the newest event and sample ids, and
# the chunks read no row recorded after them (the log and samples only grow).
LAST_IDS = "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM queue_samples)"
# Up to $7 samples (with their ids) of the period [$2, $3), recorded by id $4,
# after (at, id) ($5, $6), in order.
PERIOD_SAMPLES = """
SELECT at, pool, queued, id FROM queue_samples
WHERE domain_id = $1 AND at >= $2 AND at < $3 AND id <= $4
AND (at > $5 OR (at = $5 AND id > $6)) ORDER BY at, id LIMIT $7
"""
#: An id greater than every event's: all the log is before it.
NO_EVENT = 2**63 - 1


def usage_period(
    domain_id: str,
    start: float,
    end: float,
    ids: tuple[int | None, int | None],
    last_ids: tuple[int | None, int | None],
    held: Iterable[tuple[str, int]],
    queued: Iterable[tuple[str, int | None]],
) -> UsagePeriod:
    """A :class:`UsagePeriod` from the rows of :data:`PERIOD_IDS`,
    :data:`LAST_IDS`, :data:`SEATS_HELD` and :data:`QUEUED`."""
    first, after = ids
    last_event, last_sample = last_ids
    if first is None:  # no pool event since start
        first = after = 0
    elif after is None:  # none since end: the period's events run to the newest
        assert last_event is not None
        after = last_event + 1
    seats: dict[str, set[int]] = {}
    for pool, seat in held:
        seats.setdefault(pool, set()).add(seat)
    state = {
        pool: PoolState(frozenset(seats.get(pool, ())), length or 0) for pool, length in queued
    }
    return UsagePeriod(domain_id, start, end, state, first, after, last_sample or 0)


class Row(Protocol):
    """A database row, read by column name (sqlite3.Row, asyncpg.Record)."""

    def __getitem__(self, key: str) -> Any: ...


def domain(row: Row) -> Domain:
    return Domain(row["id"], row["name"], row["plan"], row["named_licenses"], row["seat_licenses"])


def domain_values(d: Domain) -> tuple[Any, ...]:
    return (d.id, d.name, d.plan, d.named_licenses, d.seat_licenses)


def pool(row: Row) -> Pool:
    return Pool(
        row["domain_id"], row["id"], row["name"], row["seats"], row["idle_logoff_s"],
        row["alert_interval_s"], row["alert_threshold_pct"],
    )  # fmt: skip


def pool_values(p: Pool) -> tuple[Any, ...]:
    return (
        p.domain_id, p.id, p.name, p.seats, p.idle_logoff_s, p.alert_interval_s,
        p.alert_threshold_pct,
    )  # fmt: skip


def alert_state(row: Row | None) -> AlertState:
    """A pool's alert state from the columns of :data:`ALERT_COLUMNS` (``None``:
    a pool that never alerted)."""
    if row is None or row["full_open"] is None:  # None: no row joined
        return AlertState()
    return AlertState(
        row["full_at"], bool(row["full_open"]), row["near_since"], bool(row["near_open"]),
        row["clear_since"],
    )  # fmt: skip


def alert_values(a: AlertState) -> tuple[Any, ...]:
    return (a.full_at, int(a.full_open), a.near_since, int(a.near_open), a.clear_since)


def identity(row: Row) -> Identity:
    model = row["provision_model"]
    provision = None if model is None else License(model, row["provision_pool"])
    return Identity(row["domain_id"], row["issuer"], row["audience"], row["email_claim"], provision)


def identity_values(i: Identity) -> tuple[Any, ...]:
    license = i.provision
    return (
        i.domain_id, i.issuer, i.audience, i.email_claim,
        None if license is None else license.model, None if license is None else license.pool,
    )  # fmt: skip


def webhook(row: Row) -> Webhook:
    events = row["events"]
    return Webhook(
        row["domain_id"], row["id"], row["url"],
        None if events is None else frozenset(json.loads(events)),
        row["description"], bool(row["enabled"]), row["secret"], row["created_at"],
    )  # fmt: skip


def webhook_values(w: Webhook) -> tuple[Any, ...]:
    events = None if w.events is None else json.dumps(sorted(w.events))
    return (w.domain_id, w.id, w.url, events, w.description, int(w.enabled), w.secret, w.created_at)


def progress(row: Row) -> Progress:
    return Progress(row["delivered_id"], row["attempts"], row["failing_since"], row["retry_at"])


def progress_values(p: Progress) -> tuple[Any, ...]:
    return (p.cursor, p.attempts, p.failing_since, p.retry_at)


def delivery(row: Row) -> Delivery:
    return Delivery(
        row["webhook_id"], row["event_id"], row["attempt"], row["at"], row["status"],
        row["error"], row["duration_ms"],
    )  # fmt: skip


def delivery_values(d: Delivery) -> tuple[Any, ...]:
    return (d.webhook_id, d.event_id, d.attempt, d.at, d.status, d.error, d.duration_ms)


def user(row: Row) -> User:
    return User(
        row["domain_id"], row["id"], row["email"], row["name"],
        License(row["model"], row["pool"]),
    )  # fmt: skip


def user_values(u: User) -> tuple[Any, ...]:
    return (u.domain_id, u.id, u.email, u.name, u.license.model, u.license.pool)


def lease(row: Row) -> Lease:
    return Lease(
        id=row["id"],
        session_id=row["session_id"],
        domain_id=row["domain_id"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        device=Device(row["device_id"], row["device_kind"], row["device_name"]),
        since=row["since"],
        pool=row["pool"],
        seat=row["seat"],
        fencing_token=row["fencing_token"],
        call_id=row["call_id"],
        call_started_at=row["call_started_at"],
        idle_since=row["idle_since"],
    )


def lease_values(x: Lease) -> tuple[Any, ...]:
    """The values of :data:`LEASE_COLUMNS`; the fencing token last."""
    return (
        x.id, x.session_id, x.domain_id, x.user_id, x.user_name, x.device.id,
        x.device.kind, x.device.name, x.since, x.pool, x.seat, x.call_id,
        x.call_started_at, x.idle_since, x.fencing_token,
    )  # fmt: skip


def waiter(row: Row) -> Waiter:
    return Waiter(
        row["session_id"], row["lease_id"], row["domain_id"], row["pool"],
        row["user_id"], row["user_name"],
        Device(row["device_id"], row["device_kind"], row["device_name"]), row["since"],
    )  # fmt: skip


def waiter_values(w: Waiter) -> tuple[Any, ...]:
    return (
        w.session_id, w.lease_id, w.domain_id, w.pool, w.user_id, w.user_name,
        w.device.id, w.device.kind, w.device.name, w.since,
    )  # fmt: skip


def event(row: Row) -> Event:
    return Event(
        row["type"], row["at"], row["domain_id"], row["user_id"], row["device_id"],
        row["pool"], row["seat"],
    )  # fmt: skip


def event_values(e: Event) -> tuple[Any, ...]:
    return (e.domain_id, e.at, e.type, e.user_id, e.device_id, e.pool, e.seat)


def events_query(domain_id: str, query: EventQuery) -> tuple[str, list[Any]]:
    """The SQL (with ``$n`` parameters) and parameters that read the events of
    ``query``, oldest first: the first ``limit`` after ``after``, or with
    ``before`` the last ``limit`` before it. Values never enter the SQL text."""
    params: list[Any] = [domain_id]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    conditions = [f"id > {param(query.after)}"]
    if query.before is not None:
        conditions.append(f"id < {param(query.before)}")
    if query.types:
        conditions.append(f"type IN ({', '.join(param(t) for t in sorted(query.types))})")
    if query.user_id is not None:
        conditions.append(f"user_id = {param(query.user_id)}")
    if query.pool is not None:
        conditions.append(f"pool = {param(query.pool)}")
    if query.start is not None:
        conditions.append(f"at >= {param(float(query.start))}")
    if query.end is not None:
        conditions.append(f"at < {param(float(query.end))}")
    order = "id DESC" if query.before is not None else "id"  # the last ones: read backwards
    page = (
        f"SELECT id, {EVENT_COLUMNS} FROM events WHERE domain_id = $1 "
        f"AND {' AND '.join(conditions)} ORDER BY {order} LIMIT {param(query.limit)}"
    )
    return f"SELECT * FROM ({page}) AS page ORDER BY id", params


def token(row: Row) -> Token:
    return Token(
        row["id"], row["role"], row["domain_id"], row["user_id"], row["label"],
        row["created_at"], row["expires_at"], row["last_used_at"],
    )  # fmt: skip


def token_values(t: Token) -> tuple[Any, ...]:
    return (
        t.id, t.role, t.domain_id, t.user_id, t.label, t.created_at, t.expires_at,
        t.last_used_at,
    )  # fmt: skip


class SQLTx(Tx):
    """What every SQL backend's transaction does with the same SQL: webhook
    endpoints and their deliveries, and the pools' alert states. A backend
    gives :meth:`_query` and :meth:`_run`, which take ``$n`` parameters."""

    @abc.abstractmethod
    async def _query(self, sql: str, *params: Any) -> list[Row]: ...
    @abc.abstractmethod
    async def _run(self, sql: str, *params: Any) -> int:
        """Run a statement that writes; how many rows it changed."""

    async def update_pool(self, pool: Pool) -> None:
        await self._run(UPDATE_POOL, *pool_values(pool))

    async def delete_pool(self, domain_id: str, pool_id: str) -> None:
        for table, column in (("pools", "id"), ("pool_alerts", "pool")):
            await self._run(
                f"DELETE FROM {table} WHERE domain_id = $1 AND {column} = $2", domain_id, pool_id
            )

    async def user_by_email(self, domain_id: str, email: str) -> User | None:
        found = await self._query(
            f"SELECT {USER_COLUMNS} FROM users WHERE domain_id = $1 AND lower(email) = lower($2)",
            domain_id,
            email,
        )
        return user(found[0]) if found else None

    async def identity(self, domain_id: str) -> Identity | None:
        found = await self._query(
            f"SELECT {IDENTITY_COLUMNS} FROM identities WHERE domain_id = $1", domain_id
        )
        return identity(found[0]) if found else None

    async def set_identity(self, identity: Identity) -> None:
        await self._run(
            f"INSERT INTO identities ({IDENTITY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
            "ON CONFLICT (domain_id) DO UPDATE SET issuer = $2, audience = $3, "
            "email_claim = $4, provision_model = $5, provision_pool = $6",
            *identity_values(identity),
        )

    async def delete_identity(self, domain_id: str) -> bool:
        return await self._run("DELETE FROM identities WHERE domain_id = $1", domain_id) > 0

    async def webhooks(self, domain_id: str | None) -> list[tuple[Webhook, Progress]]:
        where = "" if domain_id is None else "WHERE domain_id = $1"
        found = await self._query(
            f"SELECT {WEBHOOK_COLUMNS}, {PROGRESS_COLUMNS} FROM webhooks {where} "
            "ORDER BY created_at, id",
            *(() if domain_id is None else (domain_id,)),
        )
        return [(webhook(row), progress(row)) for row in found]

    async def webhook(self, domain_id: str, webhook_id: str) -> tuple[Webhook, Progress] | None:
        found = await self._query(
            f"SELECT {WEBHOOK_COLUMNS}, {PROGRESS_COLUMNS} FROM webhooks "
            "WHERE domain_id = $1 AND id = $2",
            domain_id,
            webhook_id,
        )
        return (webhook(found[0]), progress(found[0])) if found else None

    async def insert_webhook(self, webhook: Webhook, progress: Progress) -> None:
        await self._run(
            f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}, {PROGRESS_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            *webhook_values(webhook),
            *progress_values(progress),
        )

    async def update_webhook(self, webhook: Webhook, progress: Progress) -> None:
        await self._run(
            "UPDATE webhooks SET url = $3, events = $4, description = $5, enabled = $6, "
            "delivered_id = $7, attempts = $8, failing_since = $9, retry_at = $10 "
            "WHERE domain_id = $1 AND id = $2",
            *webhook_values(webhook)[:6],
            *progress_values(progress),
        )

    async def delete_webhook(self, domain_id: str, webhook_id: str) -> None:
        await self._run(
            "DELETE FROM webhooks WHERE domain_id = $1 AND id = $2", domain_id, webhook_id
        )
        await self._run("DELETE FROM webhook_deliveries WHERE webhook_id = $1", webhook_id)

    async def claim_webhooks(
        self, node_id: str, now: float, ttl: float
    ) -> list[tuple[str, str, float]]:
        await self._run(CLAIM_WEBHOOKS, node_id, now, now + ttl, now + ttl * 2 / 3)
        found = await self._query(CLAIMED_WEBHOOKS, node_id, now)
        return [(row["domain_id"], row["id"], row["left_s"]) for row in found]

    async def advance_webhook(self, webhook_id: str, node_id: str, progress: Progress) -> bool:
        return await self._run(ADVANCE_WEBHOOK, webhook_id, node_id, *progress_values(progress)) > 0

    async def add_delivery(self, delivery: Delivery) -> None:
        await self._run(
            f"INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)",
            *delivery_values(delivery),
        )
        await self._run(PRUNE_DELIVERIES, delivery.webhook_id)

    async def deliveries(self, webhook_id: str, limit: int) -> list[Delivery]:
        return [delivery(row) for row in await self._query(DELIVERIES, webhook_id, limit)]

    async def watched_pools(self) -> list[tuple[Pool, int, AlertState]]:
        return [
            (pool(row), row["occupied"], alert_state(row))
            for row in await self._query(WATCHED_POOLS)
        ]

    async def alert_state(self, domain_id: str, pool_id: str) -> AlertState:
        found = await self._query(ALERT_STATE, domain_id, pool_id)
        return alert_state(found[0] if found else None)

    async def set_alert_state(self, domain_id: str, pool_id: str, state: AlertState) -> None:
        await self._run(SET_ALERT_STATE, domain_id, pool_id, *alert_values(state))
