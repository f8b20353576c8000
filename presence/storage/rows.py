"""Rows to values and back, the same for every SQL backend.

Each table's columns are listed once here, in the order the backends' SQL
uses them. Leases and waiters also have an ``expires_at`` column, the store's
own (see :meth:`~presence.storage.Store.renew`), which the model does not carry.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..core.model import Device, Domain, Event, Lease, License, Pool, User, Waiter
from .base import Token

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
