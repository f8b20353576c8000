"""Random sequences of logins, releases, queueing, calls and resizes against the seat rules.

After every step: no seat is held twice, no seat user holds two seats, a grant
never takes occupancy above the pool size (holders may stay above it after a
shrink), and nobody waits while a seat is free (fencing tokens are the
store's, checked by its contract suite). Each step reloads the pool from the
previous step's state, as every store transaction does.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from presence.core import seats
from presence.core.model import Device, Lease, Pool, Waiter
from presence.core.seats import Granted, PoolBook, Request

USERS = st.sampled_from(["ann", "bob", "cat", "dan", "eve", "fay"])
DEVICES = st.sampled_from(["pc", "phone", "glasses"])
REASONS = st.sampled_from(
    [seats.LOGGED_OUT, seats.DISCONNECTED, seats.LEASE_EXPIRED, seats.IDLE_LOGOFF,
     seats.RELEASED_BY_ADMIN, seats.LICENSE_CHANGED]
)  # fmt: skip


class SeatMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = Pool("acme", "desk", "Help desk", 3)
        self.leases: list[Lease] = []
        self.waiters: list[Waiter] = []
        self.now = 1_800_000_000.0
        self.ids = itertools.count()
        self.granted_above_size = False

    def _book(self) -> PoolBook:
        return PoolBook(self.pool, self.leases, self.waiters)

    def _keep(self, book: PoolBook) -> None:
        before = len(self.leases)
        grants = [e.lease for e in book.effects if isinstance(e, Granted)]
        if grants and len(book.leases) > max(before, self.pool.seats):
            self.granted_above_size = True
        for effect in book.effects:
            if isinstance(effect, seats.Ended):
                assert effect.lease.id not in book.leases
        self.leases = list(book.leases.values())
        self.waiters = list(book.waiters)
        self.now += 1

    @rule(user=USERS, device=DEVICES, takeover=st.booleans(), queue=st.booleans())
    def acquire(self, user: str, device: str, takeover: bool, queue: bool) -> None:
        n = next(self.ids)
        book = self._book()
        request = Request(f"s{n}", f"l{n}", "acme", user, user, Device(device, "phone"),
                          takeover, queue)  # fmt: skip
        outcome = book.acquire(request, self.now)
        if isinstance(outcome, Granted):
            assert outcome.lease.user_id == user and outcome.lease.device.id == device
        self._keep(book)

    @precondition(lambda self: self.leases)
    @rule(data=st.data(), reason=REASONS)
    def release(self, data: st.DataObject, reason: str) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        book = self._book()
        assert book.release(lease.id, reason, self.now) == lease
        self._keep(book)

    @precondition(lambda self: self.waiters)
    @rule(data=st.data())
    def leave_queue(self, data: st.DataObject) -> None:
        waiter = data.draw(st.sampled_from(self.waiters))
        book = self._book()
        book.leave(waiter.session_id, self.now)
        self._keep(book)

    @rule(size=st.integers(min_value=0, max_value=5))
    def resize(self, size: int) -> None:
        self.pool = replace(self.pool, seats=size)
        book = self._book()
        book.fill(self.now)
        self._keep(book)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def call(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        result = (
            seats.end_call(lease, lease.call_id, self.now)
            if lease.call_id
            else seats.start_call(lease, "call", self.now)
        )
        assert isinstance(result, seats.Decisions)
        (update,) = result.effects
        assert isinstance(update, seats.Updated)
        self.leases = [update.lease if x.id == lease.id else x for x in self.leases]

    @invariant()
    def no_seat_held_twice(self) -> None:
        held = [lease.seat for lease in self.leases]
        assert len(held) == len(set(held))
        assert all(seat is not None and seat >= 1 for seat in held)

    @invariant()
    def no_user_holds_two_seats(self) -> None:
        users = [lease.user_id for lease in self.leases]
        assert len(users) == len(set(users))

    @invariant()
    def no_grant_above_size(self) -> None:
        assert not self.granted_above_size

    @invariant()
    def nobody_waits_for_a_free_seat(self) -> None:
        if self.waiters:
            assert len(self.leases) >= self.pool.seats

    @invariant()
    def waiters_are_unique_sessions(self) -> None:
        sessions = [w.session_id for w in self.waiters]
        assert len(sessions) == len(set(sessions))


SeatMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestSeatMachine = SeatMachine.TestCase
