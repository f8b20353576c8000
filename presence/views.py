"""JSON views of domains, pools, users, presence and events.

The admin API and the wallboard show the same things the same way; they all
come from here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, cast, get_args

# pydantic describes these for the OpenAPI document; on Python 3.11 it needs
# typing_extensions' TypedDict.
from typing_extensions import TypedDict

from .core.model import Domain, Identity, Lease, License, Plan, Pool, User
from .core.seats import PoolBook
from .core.usage import PoolUsage
from .core.webhooks import Webhook
from .storage import Delivery, StoredEvent, Token
from .wire import iso

if TYPE_CHECKING:
    from .core.usage import PoolSeries

JSON = dict[str, Any]

EventType = Literal[
    "seat_granted", "seat_denied", "seat_released", "lease_expired", "taken_over",
    "idle_logoff", "released_by_admin", "license_changed", "call_started", "call_ended",
    "named_login", "named_logout", "webhook_disabled", "pool_full", "pool_near_capacity",
    "pool_recovered", "token_revoked",
]  # fmt: skip
EVENT_TYPES: list[EventType] = list(get_args(EventType))


class DomainView(TypedDict):
    id: str
    name: str
    plan: Plan
    named_licenses: int
    seat_licenses: int


class PoolView(TypedDict):
    id: str
    name: str
    seats: int
    idle_logoff_s: int
    alert_interval_s: int
    alert_threshold_pct: int | None
    occupied: int


class LicenseView(TypedDict):
    model: Literal["named", "seat", "none"]
    pool: NotRequired[str]  # for a seat license only


class UserView(TypedDict):
    id: str
    email: str
    name: str
    license: LicenseView


class IdentityView(TypedDict):
    issuer: str
    audience: str
    email_claim: str
    provision: LicenseView | None


class Person(TypedDict):
    id: str
    name: str


class DeviceView(TypedDict):
    id: str
    kind: str
    name: str


class HolderView(TypedDict):
    seat: int | None
    lease_id: str
    user: Person
    device: DeviceView
    since: str
    in_call: bool


class PoolPresenceView(TypedDict):
    id: str
    name: str
    seats: int
    occupied: int
    in_call: int
    free: int
    queued: int
    holders: list[HolderView]


class NamedDeviceView(DeviceView):
    since: str
    in_call: bool


class NamedView(TypedDict):
    user: Person
    devices: list[NamedDeviceView]


class PresenceView(TypedDict):
    domain: str
    pools: list[PoolPresenceView]
    named: list[NamedView]


Role = Literal["server", "admin", "wallboard", "user"]


class TokenView(TypedDict):
    id: str
    role: Role
    label: str | None
    user_id: str | None
    created_at: str | None
    expires_at: str | None
    last_used_at: str | None


class CreatedTokenView(TypedDict):
    id: str
    token: str
    role: Role
    label: str | None
    created_at: str | None
    expires_at: str | None


class WebhookView(TypedDict):
    id: str
    url: str
    events: list[EventType]
    description: str | None
    enabled: bool
    created_at: str


class CreatedWebhookView(WebhookView):
    secret: str


class DeliveryView(TypedDict):
    event_id: int
    attempt: int
    at: str
    status: int | None
    error: str | None
    duration_ms: float


class EventView(TypedDict):
    id: int
    at: str
    type: EventType
    user_id: str
    pool: str | None
    seat: int | None
    device_id: str


class UsageView(TypedDict):
    pool: str
    seats: int
    peak_occupied: int
    seat_seconds: float
    denials: int
    calls: int


def domain_view(d: Domain) -> DomainView:
    return {
        "id": d.id,
        "name": d.name,
        "plan": d.plan,
        "named_licenses": d.named_licenses,
        "seat_licenses": d.seat_licenses,
    }


def pool_view(p: Pool, occupied: int) -> PoolView:
    return {
        "id": p.id,
        "name": p.name,
        "seats": p.seats,
        "idle_logoff_s": p.idle_logoff_s,
        "alert_interval_s": p.alert_interval_s,
        "alert_threshold_pct": p.alert_threshold_pct,
        "occupied": occupied,
    }


def license_view(license: License) -> LicenseView:
    if license.model == "seat" and license.pool is not None:
        return {"model": "seat", "pool": license.pool}
    return {"model": license.model}


def user_view(u: User) -> UserView:
    return {"id": u.id, "email": u.email, "name": u.name, "license": license_view(u.license)}


def _device(lease: Lease) -> DeviceView:
    d = lease.device
    return {"id": d.id, "kind": d.kind, "name": d.name}


def holder_view(lease: Lease) -> HolderView:
    return {
        "seat": lease.seat,
        "lease_id": lease.id,
        "user": {"id": lease.user_id, "name": lease.user_name},
        "device": _device(lease),
        "since": iso(lease.since),
        "in_call": lease.in_call,
    }


def pool_presence_view(book: PoolBook) -> PoolPresenceView:
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


def named_view(named: list[Lease]) -> list[NamedView]:
    """Named users with their connected devices, in order of first login."""
    users: dict[str, NamedView] = {}
    for lease in named:
        entry = users.setdefault(
            lease.user_id,
            {"user": {"id": lease.user_id, "name": lease.user_name}, "devices": []},
        )
        entry["devices"].append(
            {**_device(lease), "since": iso(lease.since), "in_call": lease.in_call}
        )
    return list(users.values())


def presence_view(domain_id: str, books: list[PoolBook], named: list[Lease]) -> PresenceView:
    return {
        "domain": domain_id,
        "pools": [pool_presence_view(book) for book in books],
        "named": named_view(named),
    }


def _time(at: float | None) -> str | None:
    return None if at is None else iso(at)


def token_view(t: Token) -> TokenView:
    """A token as listed: never its secret."""
    return {
        "id": t.id,
        "role": cast(Role, t.role),
        "label": t.label,
        "user_id": t.user_id,
        "created_at": _time(t.created_at),
        "expires_at": _time(t.expires_at),
        "last_used_at": _time(t.last_used_at),
    }


def created_token_view(t: Token, secret: str) -> CreatedTokenView:
    """A token just created, with its secret: the only answer that shows it."""
    return {
        "id": t.id,
        "token": secret,
        "role": cast(Role, t.role),
        "label": t.label,
        "created_at": _time(t.created_at),
        "expires_at": _time(t.expires_at),
    }


def identity_view(i: Identity) -> IdentityView:
    return {
        "issuer": i.issuer,
        "audience": i.audience,
        "email_claim": i.email_claim,
        "provision": None if i.provision is None else license_view(i.provision),
    }


def webhook_view(w: Webhook) -> WebhookView:
    """An endpoint as listed: never its secret."""
    events = EVENT_TYPES if w.events is None else [t for t in EVENT_TYPES if t in w.events]
    return {
        "id": w.id,
        "url": w.url,
        "events": events,
        "description": w.description,
        "enabled": w.enabled,
        "created_at": iso(w.created_at),
    }


def created_webhook_view(w: Webhook) -> CreatedWebhookView:
    """An endpoint just created, with its secret: the only answer that shows it."""
    return {**webhook_view(w), "secret": w.secret}


def delivery_view(d: Delivery) -> DeliveryView:
    return {
        "event_id": d.event_id,
        "attempt": d.attempt,
        "at": iso(d.at),
        "status": d.status,
        "error": d.error,
        "duration_ms": d.duration_ms,
    }


def event_view(stored: StoredEvent) -> EventView:
    e = stored.event
    return {
        "id": stored.id,
        "at": iso(e.at),
        "type": cast(EventType, e.type),
        "user_id": e.user_id,
        "pool": e.pool,
        "seat": e.seat,
        "device_id": e.device_id,
    }


def named_event_view(event: Mapping[str, Any], names: dict[str, str]) -> JSON:
    """An event view with its user's name, as the wallboard shows it."""
    user_id = event["user_id"]
    return {**event, "user": {"id": user_id, "name": names.get(user_id, "")}}


def usage_view(u: PoolUsage) -> UsageView:
    return {
        "pool": u.pool,
        "seats": u.seats,
        "peak_occupied": u.peak_occupied,
        "seat_seconds": u.seat_seconds,
        "denials": u.denials,
        "calls": u.calls,
    }


def usage_csv(rows: list[UsageView]) -> str:
    return _csv(list(UsageView.__annotations__), rows)


def _csv(fields: list[str], rows: Sequence[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class SeriesPointView(TypedDict):
    at: str
    peak_occupied: int
    seat_seconds: float
    denials: int
    peak_queued: int
    calls: int


class SeriesView(TypedDict):
    pool: str
    seats: int
    points: list[SeriesPointView]


def series_view(s: PoolSeries) -> SeriesView:
    return {
        "pool": s.pool,
        "seats": s.seats,
        "points": [
            {
                "at": iso(p.at),
                "peak_occupied": p.peak_occupied,
                "seat_seconds": p.seat_seconds,
                "denials": p.denials,
                "peak_queued": p.peak_queued,
                "calls": p.calls,
            }
            for p in s.points
        ],
    }


def series_csv(series: list[SeriesView]) -> str:
    """One row per pool and step."""
    fields = ["pool", *SeriesPointView.__annotations__]
    return _csv(fields, [{"pool": s["pool"], **p} for s in series for p in s["points"]])


ErrorCode = Literal[
    "bad_request", "unauthorized", "forbidden", "not_found", "method_not_allowed",
    "plan_required", "license_limit", "seats_exceed_licenses", "pool_not_empty",
    "email_taken", "already_exists", "too_large", "rate_limited", "unavailable",
]  # fmt: skip


class ErrorDetail(TypedDict):
    code: ErrorCode
    message: str
    field: NotRequired[str]  # for bad_request: the field at fault


class ErrorView(TypedDict):
    error: ErrorDetail
