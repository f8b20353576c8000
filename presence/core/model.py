"""The nouns of licensing: domains, pools, users, devices, leases and waiters.

All values are immutable; times are seconds since the epoch as floats, given
by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Plan = Literal["standard", "business", "enterprise"]
PLANS: tuple[Plan, ...] = ("standard", "business", "enterprise")
DEVICE_KINDS = ("desktop", "phone", "tablet", "glasses", "browser", "other")


@dataclass(frozen=True, slots=True)
class Domain:
    id: str
    name: str
    plan: Plan
    named_licenses: int
    seat_licenses: int


@dataclass(frozen=True, slots=True)
class Pool:
    domain_id: str
    id: str
    name: str
    seats: int
    idle_logoff_s: int = 0
    alert_interval_s: int = 300
    alert_threshold_pct: int | None = None  # None: no pool_near_capacity alert


@dataclass(frozen=True, slots=True)
class License:
    """``model`` is ``named``, ``seat`` (with ``pool``) or ``none``."""

    model: Literal["named", "seat", "none"]
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """A domain's identity provider (OpenID Connect): ID tokens from ``issuer``
    for ``audience`` sign its users in by the e-mail address in ``email_claim``;
    ``provision`` is the license of users created at their first sign-in
    (``None``: no user is created)."""

    domain_id: str
    issuer: str
    audience: str
    email_claim: str = "email"
    provision: License | None = None


@dataclass(frozen=True, slots=True)
class User:
    domain_id: str
    id: str
    email: str
    name: str
    license: License


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """One live session's hold: a seat of a pool, or a named user's device.

    ``pool``, ``seat`` and ``fencing_token`` are ``None`` for named users; a
    seat lease gets its ``fencing_token`` when it is stored. ``idle_since`` is
    when the last call ended (or the grant), for idle log-off.
    """

    id: str
    session_id: str
    domain_id: str
    user_id: str
    user_name: str
    device: Device
    since: float
    pool: str | None = None
    seat: int | None = None
    fencing_token: int | None = None
    call_id: str | None = None
    call_started_at: float | None = None
    idle_since: float = 0.0

    @property
    def in_call(self) -> bool:
        return self.call_id is not None

    def with_call(self, call_id: str | None, now: float) -> Lease:
        if call_id is None:
            return replace(self, call_id=None, call_started_at=None, idle_since=now)
        return replace(self, call_id=call_id, call_started_at=now)


@dataclass(frozen=True, slots=True)
class Waiter:
    """A session waiting in a pool's queue; it is granted ``lease_id``."""

    session_id: str
    lease_id: str
    domain_id: str
    pool: str
    user_id: str
    user_name: str
    device: Device
    since: float


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a domain's event log (section 2 of the contract)."""

    type: str
    at: float
    domain_id: str
    user_id: str
    device_id: str
    pool: str | None = None
    seat: int | None = None


@dataclass(frozen=True, slots=True)
class QueueSample:
    """A pool's queue length, ``queued``, from ``at`` until the pool's next sample.

    Queue joins and leaves are not events (the contract's list of event types
    is closed): the store keeps these samples instead, written with the changes.
    """

    domain_id: str
    pool: str
    at: float
    queued: int
