"""Webhook endpoints and when to try a delivery again, without I/O.

An endpoint receives its domain's events in id order, one at a time: the
next only once the one before was delivered. Its :class:`Progress` is how
far it got: the last event delivered (``cursor``) and, while the next one
fails, when that began and how many attempts it took. The store keeps both
with the endpoint, so a crash or another node taking over loses nothing and
carries on the same schedule.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

#: Waits after the 1st, 2nd, ... failed attempt of an event (seconds); after
#: the last, every hour, until :data:`GIVE_UP_AFTER` since the first failure.
RETRY_WAITS = (5.0, 30.0, 120.0, 600.0, 1800.0)
HOURLY = 3600.0
#: Seconds after an event's first failed attempt when its endpoint is disabled.
GIVE_UP_AFTER = 86_400.0


@dataclass(frozen=True, slots=True)
class Webhook:
    """An endpoint; ``events`` is the event types it receives (``None``: all)."""

    domain_id: str
    id: str
    url: str
    events: frozenset[str] | None
    description: str | None
    enabled: bool
    secret: str
    created_at: float

    def wants(self, event_type: str) -> bool:
        return self.events is None or event_type in self.events


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an endpoint's delivery got: every event up to ``cursor`` is
    delivered; the next one failed ``attempts`` times since ``failing_since``
    and is tried again at ``retry_at``."""

    cursor: int
    attempts: int = 0
    failing_since: float | None = None
    retry_at: float | None = None

    def delivered(self, event_id: int) -> Progress:
        return Progress(event_id)

    def failed(self, now: float, scale: float = 1.0) -> Progress | None:
        """The progress after a failed attempt at ``now``, or ``None`` when it is
        time to give up (:data:`GIVE_UP_AFTER` since the first failure, both
        times ``scale``)."""
        since = now if self.failing_since is None else self.failing_since
        if now - since >= GIVE_UP_AFTER * scale:
            return None
        attempts = self.attempts + 1
        return Progress(self.cursor, attempts, since, now + retry_wait(attempts) * scale)


def retry_wait(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed attempt of an event."""
    return RETRY_WAITS[failures - 1] if failures <= len(RETRY_WAITS) else HOURLY


def public_address(address: str) -> bool:
    """Whether an IP address is one a webhook may reach without
    ``PRESENCE_WEBHOOK_ALLOW_PRIVATE``: a global unicast address, also when
    written inside an IPv6 one (IPv4-mapped, 6to4, Teredo, NAT64)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None and not public_address(str(inner)):
            return False
    return ip.is_global and not ip.is_multicast


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
