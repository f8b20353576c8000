"""One device connection on a node, from its first frame to its end, as one state.

A session is in one :class:`Phase` and changes it only by the named moves of
:data:`MOVES`, each allowed from some phases only; any other raises
:exc:`InvalidMove`::

    connected ─hello─▶ authenticated ◀─refused─ waiting
        │                 │  │    └──queued──────▶ │
        │                 │  └─granted─▶ holding ◀─┘granted
        │                 │              ▲    │
        │                 │     call_end │    ▼ call_start
        │                 │              in_call
        ▼                 ▼ (and from waiting, holding, in_call)
      ended ◀─released─ ending

The node serves exactly the sessions in a live phase (authenticated,
waiting, holding, in a call), which are the ones in :class:`Sessions`: a
session enters it as it authenticates and leaves it the moment it starts
ending, whatever ends it. Only those have their leases renewed, so anything
the store holds for a session that left expires by itself. A live session
cannot reach ``ended`` but through ``ending``, where the node frees what it
holds in the store.

A session answers its own device from its own task (:meth:`Session.reply`,
which may wait on the connection) and is told of changes by shared tasks
(:meth:`Session.push`, which never waits: a slow device cannot hold up the
others).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterator
from typing import Protocol

from .. import wire
from ..core import seats
from ..core.model import Device, Lease, Pool, User

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


class Phase(enum.Enum):
    CONNECTED = "connected"  # no hello yet
    AUTHENTICATED = "authenticated"  # logged in as a user, holding nothing
    WAITING = "waiting"  # in its pool's queue
    HOLDING = "holding"  # holds a lease: a seat, or a named user's device
    IN_CALL = "in_call"  # holds a lease, in a call
    ENDING = "ending"  # ended; what it held is being freed
    ENDED = "ended"


P = Phase
#: Each move, from the phases that allow it to the phase it leads to (as h11's
#: EVENT_TRIGGERED_TRANSITIONS).
MOVES: dict[str, dict[Phase, Phase]] = {
    "authenticate": {P.CONNECTED: P.AUTHENTICATED},
    "refuse_login": {P.CONNECTED: P.ENDED},
    "hold": {P.AUTHENTICATED: P.HOLDING, P.WAITING: P.HOLDING},
    "wait": {P.AUTHENTICATED: P.WAITING, P.WAITING: P.WAITING},
    "refuse": {P.AUTHENTICATED: P.AUTHENTICATED, P.WAITING: P.AUTHENTICATED},
    "start_call": {P.HOLDING: P.IN_CALL},
    "end_call": {P.IN_CALL: P.HOLDING},
    "ending": {
        P.CONNECTED: P.ENDED,
        P.AUTHENTICATED: P.ENDING,
        P.WAITING: P.ENDING,
        P.HOLDING: P.ENDING,
        P.IN_CALL: P.ENDING,
    },  # fmt: skip
    "released": {P.ENDING: P.ENDED},
}
LIVE = frozenset({P.AUTHENTICATED, P.WAITING, P.HOLDING, P.IN_CALL})


class InvalidMove(Exception):
    """A move the session's phase does not allow: a bug in the node."""


class Link(Protocol):
    """A connection, as sessions use it (see :class:`presence.web.link.Link`)."""

    @property
    def gone(self) -> bool:
        """Whether the connection is closing or closed: nothing more comes or goes."""

    async def send(self, frame: str) -> None:
        """Send from the connection's own task, after anything pushed before."""

    def push(self, frame: str) -> None:
        """Queue a frame without waiting; a device that reads nothing is cut off."""

    def close(self, code: int) -> None:
        """Close once everything queued before is sent."""

    async def drain(self) -> None:
        """Wait, a bounded time, until everything queued is sent."""


class Session:
    """One device connection on this node; see the module's docstring."""

    __slots__ = (
        "id", "lease_id", "link", "sessions", "phase", "last_seen", "user", "device", "token_id",
        "lease", "pool", "sent_availability", "sent_position",
    )  # fmt: skip

    def __init__(self, link: Link, sessions: Sessions, now: float) -> None:
        self.id = uuid.uuid4().hex
        self.lease_id = uuid.uuid4().hex  # whatever this session is granted
        self.link = link
        self.sessions = sessions
        self.phase = P.CONNECTED
        self.last_seen = now
        self.user: User | None = None
        self.device: Device | None = None
        self.token_id: str | None = None  # of the token it logged in with
        self.lease: Lease | None = None  # while holding or in a call
        self.pool: Pool | None = None  # a seat user's, once read
        self.sent_availability = ""
        self.sent_position: int | None = None

    @property
    def live(self) -> bool:
        return self.phase in LIVE

    @property
    def pool_key(self) -> tuple[str, str] | None:
        """(domain, pool) of a seat user, whose availability the session follows."""
        if self.user is None or self.user.license.model != "seat":
            return None
        return (self.user.domain_id, str(self.user.license.pool))

    # The moves.

    def authenticate(self, user: User, device: Device, token_id: str | None) -> None:
        self._move("authenticate")
        self.user, self.device, self.token_id = user, device, token_id
        self.sessions.add(self)

    def hold(self, lease: Lease) -> None:
        """Granted ``lease``, at login or from the queue."""
        self._move("hold")
        self.lease = lease

    def wait(self) -> None:
        """Entered the queue of its pool (again: at its end)."""
        self._move("wait")
        self.sent_position = None  # to be told its place

    def refuse(self) -> None:
        """Refused a seat, or taken out of the queue: authenticated, holding nothing."""
        self._move("refuse")

    def start_call(self, lease: Lease) -> None:
        self._move("start_call")
        self.lease = lease

    def end_call(self, lease: Lease) -> None:
        self._move("end_call")
        self.lease = lease

    def ending(self, reason: str) -> Phase | None:
        """End the session for ``reason``, telling the device; the phase it ended in.

        ``None`` if it had ended already. A live session is then ``ending`` and
        no longer served: the caller must free what it holds, then call
        :meth:`released`. One never authenticated is ended at once.
        """
        was = self.phase
        if was is P.ENDING or was is P.ENDED:
            return None
        self._move("ending")
        self.sessions.discard(self)
        self.lease = None
        if reason in CLOSE_CODES:
            self._close(CLOSE_CODES[reason], wire.session_ended_frame(reason, END_MESSAGES[reason]))
        elif reason == seats.LOGGED_OUT:
            self._close(1000, wire.bye_frame())
        return was

    def released(self) -> None:
        """What the ending session held is freed, or left to expire."""
        self._move("released")

    def turn_away(self, frame: str) -> None:
        """End a session before any decision of it began, so holding nothing: send
        ``frame``, then close 1013 (try again later)."""
        if self.ending("turned_away") is not None:
            self._close(1013, frame)
            if self.phase is P.ENDING:
                self.released()

    def refuse_login(self, code: int, frame: str) -> None:
        """Close a session that could not log in (a bad token, no license)."""
        self._move("refuse_login")
        self._close(code, frame)

    def _move(self, move: str) -> None:
        to = MOVES[move].get(self.phase)
        if to is None:
            raise InvalidMove(f"session {self.id}: {move} in phase {self.phase.value}")
        self.phase = to

    # Frames.

    async def reply(self, frame: str) -> None:
        """Answer the device; only from the session's own task."""
        if self.phase is not P.ENDED and not self.link.gone:
            try:
                await self.link.send(frame)
            except Exception:  # the connection is gone; its endpoint ends the session
                pass

    def push(self, frame: str) -> None:
        if self.live:
            self.link.push(frame)

    async def error(self, code: str, message: str) -> None:
        await self.reply(wire.error_frame(code, message))

    def _close(self, code: int, frame: str) -> None:
        self.link.push(frame)
        self.link.close(code)


class Sessions:
    """The live sessions of this node, by id, and by the pool whose availability they
    follow once told the outcome of their login (so that it comes first)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._by_pool: dict[tuple[str, str], set[Session]] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Session]:
        """Every live session, safe to iterate while sessions end."""
        return iter(list(self._by_id.values()))

    def get(self, session_id: str) -> Session | None:
        return self._by_id.get(session_id)

    def of_pool(self, key: tuple[str, str]) -> set[Session]:
        """The sessions following a pool's availability (don't change the set)."""
        return self._by_pool.get(key, _NONE)

    def pools(self) -> list[tuple[str, str]]:
        return list(self._by_pool)

    def add(self, session: Session) -> None:
        self._by_id[session.id] = session

    def follow(self, session: Session) -> None:
        """Let a live seat user's session follow its pool."""
        key = session.pool_key
        if key is not None and session.id in self._by_id:
            self._by_pool.setdefault(key, set()).add(session)

    def discard(self, session: Session) -> None:
        if self._by_id.pop(session.id, None) is None:
            return
        key = session.pool_key
        if key is not None and key in self._by_pool:
            followers = self._by_pool[key]
            followers.discard(session)
            if not followers:
                del self._by_pool[key]


_NONE: set[Session] = set()
