"""Rows to values and back, the same for every SQL backend.

Each table's columns are listed once here, in the order the backends' SQL
uses them. Leases and waiters also have an ``expires_at`` column, the store's
own (see :meth:`~presence.storage.Store.renew`), which the model does not carry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from ..core.model import Device, Domain, Event, Lease, License, Pool, User, Waiter
from ..core.usage import FREEING, PoolState
from .base import EventQuery, Token, UsagePeriod

LEASE_COLUMNS = (
    "id, session_id, domain_id, user_id, user_name, device_id, device_kind, device_name, "
    "since, pool, seat, call_id, call_started_at, idle_since, fencing_token"
)
WAITER_COLUMNS = (
    "session_id, lease_id, domain_id, pool, user_id, user_name, device_id, "
    "device_kind, device_name, since"
)
USER_COLUMNS = "domain_id, id, email, name, model, pool"
POOL_COLUMNS = "domain_id, id, name, seats, idle_logoff_s"
DOMAIN_COLUMNS = "id, name, plan, named_licenses, seat_licenses"
EVENT_COLUMNS = "domain_id, at, type, user_id, device_id, pool, seat"
TOKEN_COLUMNS = "id, role, domain_id, user_id, label, created_at, expires_at, last_used_at"
QUEUE_SAMPLE_COLUMNS = "domain_id, pool, at, queued"

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
    return Pool(row["domain_id"], row["id"], row["name"], row["seats"], row["idle_logoff_s"])


def pool_values(p: Pool) -> tuple[Any, ...]:
    return (p.domain_id, p.id, p.name, p.seats, p.idle_logoff_s)


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
