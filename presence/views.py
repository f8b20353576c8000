"""JSON views of domains, pools, users, presence and events.

The admin API and the wallboard show the same things the same way; they all
come from here.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from .core.model import Domain, Lease, License, Pool, User
from .core.seats import PoolBook
from .core.usage import PoolUsage
from .storage import StoredEvent, Token
from .wire import iso

JSON = dict[str, Any]


def domain_view(d: Domain) -> JSON:
    return {
        "id": d.id,
        "name": d.name,
        "plan": d.plan,
        "named_licenses": d.named_licenses,
        "seat_licenses": d.seat_licenses,
    }


def pool_view(p: Pool, occupied: int) -> JSON:
    return {
        "id": p.id,
        "name": p.name,
        "seats": p.seats,
        "idle_logoff_s": p.idle_logoff_s,
        "occupied": occupied,
    }


def license_view(license: License) -> JSON:
    if license.model == "seat":
        return {"model": "seat", "pool": license.pool}
    return {"model": license.model}


def user_view(u: User) -> JSON:
    return {"id": u.id, "email": u.email, "name": u.name, "license": license_view(u.license)}


def _device(lease: Lease) -> JSON:
    d = lease.device
    return {"id": d.id, "kind": d.kind, "name": d.name}


def holder_view(lease: Lease) -> JSON:
    return {
        "seat": lease.seat,
        "lease_id": lease.id,
        "user": {"id": lease.user_id, "name": lease.user_name},
        "device": _device(lease),
        "since": iso(lease.since),
        "in_call": lease.in_call,
    }


def pool_presence_view(book: PoolBook) -> JSON:
    a = book.availability()
    holders = sorted(book.leases.values(), key=lambda lease: lease.seat or 0)
    return {
        "id": book.pool.id,
        "name": book.pool.name,
        "seats": a.seats,
        "occupied": a.occupied,
        "in_call": a.in_call,
        "free": a.free,
        "queued": a.queued,
        "holders": [holder_view(lease) for lease in holders],
    }


def named_view(named: list[Lease]) -> list[JSON]:
    """Named users with their connected devices, in order of first login."""
    users: dict[str, JSON] = {}
    for lease in named:
        entry = users.setdefault(
            lease.user_id,
            {"user": {"id": lease.user_id, "name": lease.user_name}, "devices": []},
        )
        entry["devices"].append(
            {**_device(lease), "since": iso(lease.since), "in_call": lease.in_call}
        )
    return list(users.values())


def presence_view(domain_id: str, books: list[PoolBook], named: list[Lease]) -> JSON:
    return {
        "domain": domain_id,
        "pools": [pool_presence_view(book) for book in books],
        "named": named_view(named),
    }


def _time(at: float | None) -> str | None:
    return None if at is None else iso(at)


def token_view(t: Token) -> JSON:
    """A token as listed: never its secret."""
    return {
        "id": t.id,
        "role": t.role,
        "label": t.label,
        "user_id": t.user_id,
        "created_at": _time(t.created_at),
        "expires_at": _time(t.expires_at),
        "last_used_at": _time(t.last_used_at),
    }


def created_token_view(t: Token, secret: str) -> JSON:
    """A token just created, with its secret: the only answer that shows it."""
    return {
        "id": t.id,
        "token": secret,
        "role": t.role,
        "label": t.label,
        "created_at": _time(t.created_at),
        "expires_at": _time(t.expires_at),
    }


def event_view(stored: StoredEvent) -> JSON:
    e = stored.event
    return {
        "id": stored.id,
        "at": iso(e.at),
        "type": e.type,
        "user_id": e.user_id,
        "pool": e.pool,
        "seat": e.seat,
        "device_id": e.device_id,
    }


def named_event_view(event: JSON, names: dict[str, str]) -> JSON:
    """An event view with its user's name, as the wallboard shows it."""
    user_id = event["user_id"]
    return {**event, "user": {"id": user_id, "name": names.get(user_id, "")}}


USAGE_FIELDS = ("pool", "seats", "peak_occupied", "seat_seconds", "denials", "calls")


def usage_view(usage: PoolUsage) -> JSON:
    return {field: getattr(usage, field) for field in USAGE_FIELDS}


def usage_csv(rows: list[JSON]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, USAGE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
