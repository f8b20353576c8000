"""One device connection on a node, and how frames reach it.

A session answers its own device from its own task (:meth:`Session.reply`,
which may wait on the connection) and is told of changes by shared tasks
(:meth:`Session.push` and :meth:`Session.end`, which never wait: a slow
device cannot hold up the others).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from . import wire
from .core import seats
from .core.model import Device, Lease, Pool, User

CLOSE_CODES = {
    seats.LEASE_EXPIRED: 4408,
    seats.TAKEN_OVER: 4409,
    seats.REPLACED: 4409,
    seats.IDLE_LOGOFF: 4410,
    seats.LICENSE_CHANGED: 4411,
    seats.USER_DELETED: 4411,
    seats.RELEASED_BY_ADMIN: 4412,
    seats.TOKEN_REVOKED: 4401,
    seats.SERVER_SHUTDOWN: 1001,
}
END_MESSAGES = {
    seats.LEASE_EXPIRED: "No heartbeat arrived within the lease time; the session ended.",
    seats.TAKEN_OVER: "You logged in on another device, which took this seat over.",
    seats.REPLACED: "This device logged in again on a new connection.",
    seats.IDLE_LOGOFF: "Logged off after being idle without a call.",
    seats.LICENSE_CHANGED: "Your license changed; log in again.",
    seats.USER_DELETED: "Your user was deleted.",
    seats.RELEASED_BY_ADMIN: "An administrator released your seat.",
    seats.TOKEN_REVOKED: "The token this device logged in with was revoked.",
    seats.SERVER_SHUTDOWN: "The server is shutting down; log in again in a moment.",
}


class Link(Protocol):
    """A connection, as sessions use it (see :class:`presence.web.link.Link`)."""

    async def send(self, frame: str) -> None:
        """Send from the connection's own task, after anything pushed before."""

    def push(self, frame: str) -> None:
        """Queue a frame without waiting; a device that reads nothing is cut off."""

    def close(self, code: int) -> None:
        """Close once everything queued before is sent."""

    async def drain(self) -> None:
        """Wait, a bounded time, until everything queued is sent."""


class Session:
    """One device connection on this node, from ``hello`` to close."""

    __slots__ = (
        "id", "lease_id", "link", "last_seen", "user", "device", "token_id", "lease",
        "pool", "waiting", "ended", "sent_availability", "sent_position",
    )  # fmt: skip

    def __init__(self, link: Link, now: float) -> None:
        self.id = uuid.uuid4().hex
        self.lease_id = uuid.uuid4().hex  # whatever this session is granted
        self.link = link
        self.last_seen = now
        self.user: User | None = None
        self.device: Device | None = None
        self.token_id: str | None = None  # of the token it logged in with
        self.lease: Lease | None = None
        self.pool: Pool | None = None
        self.waiting = False
        self.ended = False
        self.sent_availability = ""
        self.sent_position: int | None = None

    @property
    def pool_key(self) -> tuple[str, str] | None:
        if self.user is None or self.user.license.model != "seat":
            return None
        return (self.user.domain_id, str(self.user.license.pool))

    async def reply(self, frame: str) -> None:
        """Answer the device; only from the session's own task."""
        if self.ended:
            return
        try:
            await self.link.send(frame)
        except Exception:  # the connection is gone; its endpoint cleans up
            self.ended = True

    def push(self, frame: str) -> None:
        if not self.ended:
            self.link.push(frame)

    async def error(self, code: str, message: str) -> None:
        await self.reply(wire.error_frame(code, message))

    def end(self, code: int, frame: str | None = None) -> None:
        """Send a last frame, then close the connection."""
        if self.ended:
            return
        if frame is not None:
            self.link.push(frame)
        self.ended = True
        self.link.close(code)

    def end_for(self, reason: str) -> None:
        """End with ``session_ended`` and the close code of ``reason``."""
        self.end(CLOSE_CODES[reason], wire.session_ended_frame(reason, END_MESSAGES[reason]))
