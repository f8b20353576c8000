"""The seat and lease rules, without I/O.

A :class:`PoolBook` holds one pool's leases and queue as read from the store
inside one transaction. Its methods decide (grant, refuse, queue, release)
and record what happened in :attr:`Decisions.effects` and
:attr:`Decisions.events`; the caller must write every effect and event back in
the same transaction, then publish them. Named users' devices are decided by
:func:`login_named`, calls by :func:`start_call` and :func:`end_call`.

Nothing here reads the clock: every method takes ``now``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import Device, Event, Lease, Pool, Waiter

# Why a session ended, as sent to its device in ``session_ended``.
TAKEN_OVER = "taken_over"
REPLACED = "replaced"
LEASE_EXPIRED = "lease_expired"
IDLE_LOGOFF = "idle_logoff"
LICENSE_CHANGED = "license_changed"
USER_DELETED = "user_deleted"
RELEASED_BY_ADMIN = "released_by_admin"
TOKEN_REVOKED = "token_revoked"
SERVER_SHUTDOWN = "server_shutdown"
# Ends the device chose itself; they are not sent to it.
LOGGED_OUT = "logged_out"
DISCONNECTED = "disconnected"

# The event logged when a seat lease ends, by reason. A replaced lease logs
# nothing: its seat stays with the same user and device under the new grant.
_SEAT_END_EVENTS = {
    TAKEN_OVER: "taken_over",
    LEASE_EXPIRED: "lease_expired",
    IDLE_LOGOFF: "idle_logoff",
    LICENSE_CHANGED: "license_changed",
    USER_DELETED: "license_changed",
    RELEASED_BY_ADMIN: "released_by_admin",
    TOKEN_REVOKED: "seat_released",  # the token_revoked event is logged once, by the revocation
    LOGGED_OUT: "seat_released",
    DISCONNECTED: "seat_released",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A session asking for a seat (or, for named users, to log in)."""

    session_id: str
    lease_id: str
    domain_id: str
    user_id: str
    user_name: str
    device: Device
    takeover: bool = False
    queue: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request; ``code`` is a device protocol error code."""

    session_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Granted:
    """A lease granted; ``queued``: to a session waiting in the queue, which is
    told by a note, not by the answer to its own request."""

    lease: Lease
    queued: bool = False


@dataclass(frozen=True, slots=True)
class Ended:
    lease: Lease
    reason: str


@dataclass(frozen=True, slots=True)
class Updated:
    """A lease's call state changed."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Enqueued:
    """A session joined the queue at ``at``, which is ``queued`` long after it."""

    waiter: Waiter
    queued: int
    at: float


@dataclass(frozen=True, slots=True)
class Dequeued:
    """A session left the queue at ``at`` (served or gone), ``queued`` long after it."""

    waiter: Waiter
    queued: int
    at: float


Effect = Granted | Ended | Updated | Enqueued | Dequeued | Refusal


@dataclass(slots=True)
class Decisions:
    """What a decision changed: effects to store, events to log."""

    effects: list[Effect] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def end(self, lease: Lease, reason: str, now: float) -> None:
        self.effects.append(Ended(lease, reason))
        if lease.in_call:
            self.events.append(_event("call_ended", now, lease))
        if lease.pool is None:
            if reason != REPLACED:
                self.events.append(_event("named_logout", now, lease))
        elif reason in _SEAT_END_EVENTS:
            self.events.append(_event(_SEAT_END_EVENTS[reason], now, lease))

    def pools_read(self) -> dict[str, Pool]:
        """The pools these decisions were made on, as read, by id."""
        return {}

    def occupancies(self) -> dict[str, Occupancy]:
        """The pools these decisions had whole (every lease and waiter), by id, as
        they are once the decisions are written."""
        return {}


@dataclass(frozen=True, slots=True)
class Availability:
    pool: str
    seats: int
    occupied: int
    in_call: int
    free: int
    queued: int


@dataclass(frozen=True, slots=True)
class Occupancy:
    """A pool's seats as counted, and its queue (the waiting sessions' ids, in
    order): what the sessions following the pool are told. A :class:`PoolBook`
    has one; a read that needs no more than this counts the leases instead of
    reading them."""

    pool: Pool
    occupied: int
    in_call: int
    queue: tuple[str, ...]

    def availability(self) -> Availability:
        seats = self.pool.seats
        return Availability(
            self.pool.id, seats, self.occupied, self.in_call, max(0, seats - self.occupied),
            len(self.queue),
        )  # fmt: skip

    def position(self, session_id: str) -> int | None:
        """1-based place of a session in the queue, or ``None``."""
        return self.queue.index(session_id) + 1 if session_id in self.queue else None


class PoolBook(Decisions):
    """One pool's seats, leases and queue, for one transaction's decisions.

    A seat granted here has no fencing token yet: the store gives it the next
    one of the database's counter as it writes the grant.
    """

    __slots__ = ("pool", "leases", "waiters")

    def __init__(self, pool: Pool, leases: list[Lease], waiters: list[Waiter]) -> None:
        super().__init__()
        self.pool = pool
        self.leases = {lease.id: lease for lease in leases}
        self.waiters = list(waiters)

    def pools_read(self) -> dict[str, Pool]:
        return {self.pool.id: self.pool}

    def occupancies(self) -> dict[str, Occupancy]:
        return {self.pool.id: self.occupancy()}

    def occupancy(self) -> Occupancy:
        in_call = sum(lease.in_call for lease in self.leases.values())
        queue = tuple(waiter.session_id for waiter in self.waiters)
        return Occupancy(self.pool, len(self.leases), in_call, queue)

    def availability(self) -> Availability:
        return self.occupancy().availability()

    def position(self, session_id: str) -> int | None:
        return self.occupancy().position(session_id)

    def acquire(self, request: Request, now: float) -> Granted | Refusal | Enqueued:
        """Decide a login (or ``acquire``) of a seat user of this pool.

        Rules S2 (one seat per user, takeover), S3 (same device replaces),
        S4 (``seat_occupied``), S9 (no grant while at or over size) and the
        queue, which is served before any new login.
        """
        self._leave_queue(request.session_id, now)
        held = self._lease_of_user(request.user_id)
        if held is not None:
            if held.session_id == request.session_id:  # granted from the queue meanwhile
                return Granted(held)
            if held.device.id == request.device.id:
                self._drop(held, REPLACED, now)
                return self._grant(request, held.seat, now)
            if not request.takeover:
                return self._refuse(
                    request,
                    "already_logged_in",
                    f"You already hold seat {held.seat} of {self.pool.name} on "
                    f"{_device_phrase(held.device)}. Log out there, or log in "
                    "again with takeover to move the seat to this device.",
                )
            self._drop(held, TAKEN_OVER, now)
            return self._grant(request, held.seat, now)
        if not self.waiters and len(self.leases) < self.pool.seats:
            return self._grant(request, self._free_seat(), now)
        self.events.append(
            Event("seat_denied", now, request.domain_id, request.user_id,
                  request.device.id, self.pool.id)
        )  # fmt: skip
        if request.queue:
            waiter = Waiter(
                request.session_id, request.lease_id, request.domain_id, self.pool.id,
                request.user_id, request.user_name, request.device, now,
            )  # fmt: skip
            self.waiters.append(waiter)
            enqueued = Enqueued(waiter, len(self.waiters), now)
            self.effects.append(enqueued)
            return enqueued
        return self._refuse(request, "seat_occupied", self._occupied_message())

    def release(self, lease_id: str, reason: str, now: float) -> Lease | None:
        """End a lease (S6) and hand freed seats to the head of the queue.

        Returns the ended lease, or ``None`` if it was not held.
        """
        lease = self.leases.get(lease_id)
        if lease is None:
            return None
        self._drop(lease, reason, now)
        self.fill(now)
        return lease

    def leave(self, session_id: str, now: float) -> None:
        """Take a session out of the queue (it closed or stopped waiting)."""
        self._leave_queue(session_id, now)

    def fill(self, now: float) -> None:
        """Grant free seats to waiters, in the order they asked."""
        while self.waiters and len(self.leases) < self.pool.seats:
            waiter = self.waiters.pop(0)
            self.effects.append(Dequeued(waiter, len(self.waiters), now))
            request = Request(
                waiter.session_id, waiter.lease_id, waiter.domain_id, waiter.user_id,
                waiter.user_name, waiter.device,
            )  # fmt: skip
            held = self._lease_of_user(waiter.user_id)
            if held is None:
                self._grant(request, self._free_seat(), now, queued=True)
            else:
                self._refuse(
                    request,
                    "already_logged_in",
                    f"You already hold seat {held.seat} of {self.pool.name} on "
                    f"{_device_phrase(held.device)}.",
                )

    def _grant(
        self, request: Request, seat: int | None, now: float, queued: bool = False
    ) -> Granted:
        lease = Lease(
            id=request.lease_id,
            session_id=request.session_id,
            domain_id=request.domain_id,
            user_id=request.user_id,
            user_name=request.user_name,
            device=request.device,
            since=now,
            pool=self.pool.id,
            seat=seat,
            idle_since=now,
        )
        self.leases[lease.id] = lease
        granted = Granted(lease, queued)
        self.effects.append(granted)
        self.events.append(_event("seat_granted", now, lease))
        return granted

    def _drop(self, lease: Lease, reason: str, now: float) -> None:
        del self.leases[lease.id]
        self.end(lease, reason, now)

    def _refuse(self, request: Request, code: str, message: str) -> Refusal:
        refusal = Refusal(request.session_id, code, message)
        self.effects.append(refusal)
        return refusal

    def _leave_queue(self, session_id: str, now: float) -> None:
        for waiter in self.waiters:
            if waiter.session_id == session_id:
                self.waiters.remove(waiter)
                self.effects.append(Dequeued(waiter, len(self.waiters), now))
                return

    def _lease_of_user(self, user_id: str) -> Lease | None:
        for lease in self.leases.values():
            if lease.user_id == user_id:
                return lease
        return None

    def _free_seat(self) -> int:
        taken = {lease.seat for lease in self.leases.values()}
        return next(seat for seat in range(1, self.pool.seats + 1) if seat not in taken)

    def _occupied_message(self) -> str:
        pool = self.pool
        if pool.seats == 0:
            return f"{pool.name} has no seats; ask your administrator for one."
        if pool.seats == 1 and len(self.leases) == 1:
            (holder,) = self.leases.values()
            return (
                f"The seat of {pool.name} is already occupied by "
                f"{holder.user_name} on {_device_phrase(holder.device)} since "
                f"{_clock(holder.since)}. Try again when they log out."
            )
        if len(self.leases) < pool.seats:
            return (
                f"The free seats of {pool.name} are reserved for the "
                f"{len(self.waiters)} people already waiting; ask to queue."
            )
        return (
            f"All {pool.seats} seats of {pool.name} are already occupied. "
            "Try again when one is free, or ask to queue."
        )


def login_named(held: list[Lease], request: Request, now: float) -> Decisions:
    """Log a named user in on a device, next to the leases it ``held``.

    A named user may be on any number of devices; the same device logging in
    again replaces its old session (S3).
    """
    decisions = Decisions()
    for lease in held:
        if lease.device.id == request.device.id:
            decisions.end(lease, REPLACED, now)
    lease = Lease(
        id=request.lease_id,
        session_id=request.session_id,
        domain_id=request.domain_id,
        user_id=request.user_id,
        user_name=request.user_name,
        device=request.device,
        since=now,
        idle_since=now,
    )
    decisions.effects.append(Granted(lease))
    decisions.events.append(_event("named_login", now, lease))
    return decisions


class DomainBook(Decisions):
    """Logins of one domain decided together, in one transaction: the books of
    their pools and the leases their named users held, as read in it.

    Each login is decided as if alone, after those before it (:meth:`login`),
    and what every decision changed is gathered here in that order, to be
    written in one go. A user logs in at most once per book: a second login of
    the same user could replace a lease not written yet.
    """

    __slots__ = ("books", "named", "_users")

    def __init__(self, books: Iterable[PoolBook], named: Iterable[Lease]) -> None:
        super().__init__()
        self.books = {book.pool.id: book for book in books}
        self.named: dict[str, list[Lease]] = {}
        for lease in named:
            self.named.setdefault(lease.user_id, []).append(lease)
        self._users: set[str] = set()

    def pools_read(self) -> dict[str, Pool]:
        return {pool_id: book.pool for pool_id, book in self.books.items()}

    def occupancies(self) -> dict[str, Occupancy]:
        return {pool_id: book.occupancy() for pool_id, book in self.books.items()}

    def login(self, request: Request, pool: str | None, now: float) -> Granted | Refusal | Enqueued:
        """Decide a login of a user of ``pool`` (``None``: a named user), whose
        book must be here."""
        if request.user_id in self._users:
            raise ValueError(f"user {request.user_id} logs in twice in one book")
        self._users.add(request.user_id)
        if pool is None:
            made = login_named(self.named.get(request.user_id, []), request, now)
            self.effects += made.effects
            self.events += made.events
            return next(effect for effect in made.effects if isinstance(effect, Granted))
        book = self.books[pool]
        effects, events = len(book.effects), len(book.events)
        outcome = book.acquire(request, now)
        self.effects += book.effects[effects:]
        self.events += book.events[events:]
        return outcome


def start_call(lease: Lease, call_id: str, now: float) -> Decisions | Refusal:
    """Start a call on a lease: one call at a time per seat or device (S5)."""
    if lease.call_id is not None:
        return Refusal(
            lease.session_id,
            "call_in_progress",
            f"Call {lease.call_id} is still active on this "
            f"{'seat' if lease.seat is not None else 'device'}; end it first.",
        )
    return _call_change(lease.with_call(call_id, now), "call_started", now)


def end_call(lease: Lease, call_id: str, now: float) -> Decisions | Refusal:
    """End the active call ``call_id`` of a lease; the idle timer restarts."""
    if lease.call_id != call_id:
        return Refusal(lease.session_id, "unknown_call", f"There is no active call {call_id!r}.")
    return _call_change(lease.with_call(None, now), "call_ended", now)


def _call_change(lease: Lease, event: str, now: float) -> Decisions:
    return Decisions([Updated(lease)], [_event(event, now, lease)])


def idle_deadline(lease: Lease, idle_logoff_s: int) -> float | None:
    """When a seat session is logged off for idleness (S8), if ever."""
    if idle_logoff_s <= 0 or lease.in_call or lease.pool is None:
        return None
    return lease.idle_since + idle_logoff_s


def _event(type_: str, now: float, lease: Lease) -> Event:
    return Event(
        type_, now, lease.domain_id, lease.user_id, lease.device.id, lease.pool, lease.seat
    )


def _device_phrase(device: Device) -> str:
    return f"a {device.kind} ({device.name})" if device.name else f"a {device.kind}"


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
