"""The seat rules, with plain calls and an injected clock: no event loop, no sleeps."""

from __future__ import annotations

import itertools

import pytest

from presence.core import seats
from presence.core.model import Device, Lease, Pool
from presence.core.seats import (
    Dequeued,
    Ended,
    Enqueued,
    Granted,
    PoolBook,
    Refusal,
    Request,
    Updated,
)

NOW = 1_800_000_000.0
_ids = itertools.count(1)


def request(user: str, device: str = "d1", kind: str = "desktop", **flags: bool) -> Request:
    n = next(_ids)
    return Request(f"s{n}", f"l{n}", "acme", user, user.title(), Device(device, kind, ""), **flags)


def book(seats_: int = 2, *leases: Lease, waiters: tuple = ()) -> PoolBook:
    pool = Pool("acme", "desk", "Help desk", seats_)
    return PoolBook(pool, list(leases), list(waiters))


def granted(outcome: object) -> Lease:
    assert isinstance(outcome, Granted), outcome
    return outcome.lease


def test_grants_the_lowest_free_seat_leaving_its_fencing_token_to_the_store() -> None:
    b = book(3)
    first = granted(b.acquire(request("ann"), NOW))
    second = granted(b.acquire(request("bob"), NOW + 1))
    assert (first.seat, second.seat) == (1, 2)
    assert first.fencing_token is None and second.fencing_token is None
    assert b.availability() == seats.Availability("desk", 3, 2, 0, 1, 0)
    assert [e.type for e in b.events] == ["seat_granted", "seat_granted"]


def test_full_pool_refuses_with_seat_occupied_naming_the_holder() -> None:
    b = book(1)
    granted(b.acquire(request("ann", kind="glasses"), NOW))
    refusal = b.acquire(request("bob"), NOW)
    assert isinstance(refusal, Refusal) and refusal.code == "seat_occupied"
    assert "Ann" in refusal.message and "glasses" in refusal.message
    assert "2027-01-15 08:00 UTC" in refusal.message
    assert b.events[-1].type == "seat_denied"


def test_full_multi_seat_pool_says_all_seats_are_occupied() -> None:
    b = book(2)
    granted(b.acquire(request("ann"), NOW))
    granted(b.acquire(request("bob"), NOW))
    refusal = b.acquire(request("cat"), NOW)
    assert isinstance(refusal, Refusal) and "All 2 seats" in refusal.message


def test_a_pool_without_seats_says_so() -> None:
    refusal = book(0).acquire(request("ann"), NOW)
    assert isinstance(refusal, Refusal) and refusal.code == "seat_occupied"
    assert "no seats" in refusal.message


def test_second_device_is_refused_unless_it_takes_over() -> None:
    b = book(2)
    first = granted(b.acquire(request("ann", "pc"), NOW))
    refusal = b.acquire(request("ann", "phone"), NOW)
    assert isinstance(refusal, Refusal) and refusal.code == "already_logged_in"
    taken = granted(b.acquire(request("ann", "phone", takeover=True), NOW + 5))
    assert taken.seat == first.seat and taken.device.id == "phone"
    assert Ended(first, seats.TAKEN_OVER) in b.effects
    assert [e.type for e in b.events][-2:] == ["taken_over", "seat_granted"]
    assert len(b.leases) == 1


def test_same_device_replaces_its_old_session_and_keeps_the_seat() -> None:
    b = book(2)
    granted(b.acquire(request("bob"), NOW))
    old = granted(b.acquire(request("ann", "pc"), NOW))
    new = granted(b.acquire(request("ann", "pc"), NOW + 1))
    assert new.seat == old.seat == 2 and new.id != old.id
    assert Ended(old, seats.REPLACED) in b.effects
    assert len(b.leases) == 2


def test_a_session_asking_again_for_the_seat_it_was_granted_keeps_it() -> None:
    b = book(1)
    granted(b.acquire(request("ann"), NOW))
    ask = request("bob", queue=True)
    assert isinstance(b.acquire(ask, NOW), Enqueued)
    (ann,) = b.leases.values()
    b.release(ann.id, seats.LOGGED_OUT, NOW)  # the seat goes to bob's session from the queue
    effects = len(b.effects)
    again = granted(b.acquire(ask, NOW + 1))  # bob asks again before hearing of it
    assert again.session_id == ask.session_id and len(b.effects) == effects


def test_release_frees_the_seat_and_logs_the_reason() -> None:
    b = book(1)
    lease = granted(b.acquire(request("ann"), NOW))
    assert b.release(lease.id, seats.RELEASED_BY_ADMIN, NOW + 9) == lease
    assert b.release(lease.id, seats.RELEASED_BY_ADMIN, NOW + 9) is None
    assert b.availability().free == 1
    assert b.events[-1].type == "released_by_admin"


@pytest.mark.parametrize(
    ("reason", "event"),
    [
        (seats.LOGGED_OUT, "seat_released"),
        (seats.DISCONNECTED, "seat_released"),
        (seats.LEASE_EXPIRED, "lease_expired"),
        (seats.IDLE_LOGOFF, "idle_logoff"),
        (seats.LICENSE_CHANGED, "license_changed"),
        (seats.USER_DELETED, "license_changed"),
        (seats.TOKEN_REVOKED, "seat_released"),  # frees the seat in usage, as a logout does
    ],
)
def test_each_end_of_a_seat_logs_its_event(reason: str, event: str) -> None:
    b = book(1)
    lease = granted(b.acquire(request("ann"), NOW))
    b.release(lease.id, reason, NOW)
    assert b.events[-1].type == event


def test_ending_a_seat_in_a_call_also_ends_the_call() -> None:
    b = book(1)
    lease = granted(b.acquire(request("ann"), NOW))
    b.leases[lease.id] = lease.with_call("c1", NOW)
    b.release(lease.id, seats.DISCONNECTED, NOW + 3)
    assert [e.type for e in b.events][-2:] == ["call_ended", "seat_released"]


def test_shrunk_pool_keeps_holders_and_grants_nothing_until_below_size() -> None:
    b = book(3)
    held = [granted(b.acquire(request(u), NOW)) for u in ("ann", "bob", "cat")]
    shrunk = book(1, *held)
    assert shrunk.availability().occupied == 3 and shrunk.availability().free == 0
    assert isinstance(shrunk.acquire(request("dan"), NOW), Refusal)
    shrunk.release(held[0].id, seats.LOGGED_OUT, NOW)
    assert isinstance(shrunk.acquire(request("dan"), NOW), Refusal)
    shrunk.release(held[1].id, seats.LOGGED_OUT, NOW)
    assert isinstance(shrunk.acquire(request("dan"), NOW), Refusal)
    shrunk.release(held[2].id, seats.LOGGED_OUT, NOW)
    assert granted(shrunk.acquire(request("dan"), NOW)).seat == 1


def test_queue_is_served_in_order_before_new_logins() -> None:
    b = book(1)
    holder = granted(b.acquire(request("ann"), NOW))
    first = b.acquire(request("bob", queue=True), NOW + 1)
    second = b.acquire(request("cat", queue=True), NOW + 2)
    assert isinstance(first, Enqueued) and isinstance(second, Enqueued)
    assert b.position(first.waiter.session_id) == 1 and b.position(second.waiter.session_id) == 2
    assert b.availability().queued == 2
    b.release(holder.id, seats.LOGGED_OUT, NOW + 3)
    bob = b.leases[first.waiter.lease_id]
    assert bob.user_id == "bob" and bob.session_id == first.waiter.session_id
    assert Dequeued(first.waiter, 1, NOW + 3) in b.effects  # cat still waits
    # Bob is told by a note; Ann was answered by her own request.
    assert Granted(bob, queued=True) in b.effects
    assert [e.queued for e in b.effects if isinstance(e, Granted)] == [False, True]
    assert b.position(second.waiter.session_id) == 1
    refused = b.acquire(request("dan"), NOW + 4)
    assert isinstance(refused, Refusal) and refused.code == "seat_occupied"


def test_a_free_seat_waits_for_the_queue_not_a_newcomer() -> None:
    b = book(1)
    w = b.acquire(request("bob", queue=True), NOW)
    assert isinstance(w, Granted)  # nobody held the seat: no queue needed
    queued = b.acquire(request("cat", queue=True), NOW)
    assert isinstance(queued, Enqueued)
    grown = PoolBook(Pool("acme", "desk", "Help desk", 2), list(b.leases.values()), b.waiters)
    refusal = grown.acquire(request("dan"), NOW)
    assert isinstance(refusal, Refusal) and "waiting" in refusal.message
    grown.fill(NOW)
    assert {lease.user_id for lease in grown.leases.values()} == {"bob", "cat"}


def test_leaving_the_queue_and_asking_again_moves_to_the_back() -> None:
    b = book(1)
    granted(b.acquire(request("ann"), NOW))
    bob = b.acquire(request("bob", queue=True), NOW)
    cat = b.acquire(request("cat", queue=True), NOW)
    assert isinstance(bob, Enqueued) and isinstance(cat, Enqueued)
    b.leave(bob.waiter.session_id, NOW)
    assert b.position(cat.waiter.session_id) == 1 and b.position(bob.waiter.session_id) is None


def test_a_waiter_whose_user_got_a_seat_meanwhile_is_refused_when_served() -> None:
    b = book(1)
    ann = granted(b.acquire(request("ann"), NOW))
    pc = b.acquire(request("bob", "pc", queue=True), NOW)
    phone = b.acquire(request("bob", "phone", queue=True), NOW)
    assert isinstance(pc, Enqueued) and isinstance(phone, Enqueued)
    grown = PoolBook(Pool("acme", "desk", "Help desk", 2), [ann], b.waiters)
    grown.release(ann.id, seats.LOGGED_OUT, NOW)
    assert [lease.device.id for lease in grown.leases.values()] == ["pc"]
    refusal = grown.effects[-1]
    assert isinstance(refusal, Refusal) and refusal.code == "already_logged_in"
    assert refusal.session_id == phone.waiter.session_id and not grown.waiters


def test_named_users_log_in_on_many_devices_and_a_device_replaces_itself() -> None:
    first = seats.login_named([], request("ned", "pc"), NOW)
    pc = first.effects[0]
    assert isinstance(pc, Granted) and pc.lease.pool is None and pc.lease.fencing_token is None
    assert [e.type for e in first.events] == ["named_login"]
    phone = seats.login_named([pc.lease], request("ned", "phone"), NOW)
    assert [type(e) for e in phone.effects] == [Granted]
    again = seats.login_named([pc.lease], request("ned", "pc"), NOW)
    assert again.effects[0] == Ended(pc.lease, seats.REPLACED)
    assert [e.type for e in again.events] == ["named_login"]


def test_named_logout_is_logged() -> None:
    decisions = seats.Decisions()
    lease = granted(seats.login_named([], request("ned"), NOW).effects[0])
    decisions.end(lease, seats.DISCONNECTED, NOW)
    assert [e.type for e in decisions.events] == ["named_logout"]


def test_one_call_at_a_time() -> None:
    lease = granted(book(1).acquire(request("ann"), NOW))
    started = seats.start_call(lease, "c1", NOW + 1)
    assert isinstance(started, seats.Decisions)
    (update,) = started.effects
    assert isinstance(update, Updated) and update.lease.call_id == "c1"
    assert [e.type for e in started.events] == ["call_started"]
    busy = seats.start_call(update.lease, "c2", NOW + 2)
    assert isinstance(busy, Refusal) and busy.code == "call_in_progress"
    unknown = seats.end_call(update.lease, "c2", NOW + 3)
    assert isinstance(unknown, Refusal) and unknown.code == "unknown_call"
    ended = seats.end_call(update.lease, "c1", NOW + 10)
    assert isinstance(ended, seats.Decisions)
    (update,) = ended.effects
    assert isinstance(update, Updated)
    assert update.lease.call_id is None and update.lease.idle_since == NOW + 10


def test_idle_logoff_never_during_a_call_and_restarts_after_one() -> None:
    lease = granted(book(1).acquire(request("ann"), NOW))
    assert seats.idle_deadline(lease, 0) is None
    assert seats.idle_deadline(lease, 60) == NOW + 60
    in_call = lease.with_call("c1", NOW + 30)
    assert seats.idle_deadline(in_call, 60) is None
    assert seats.idle_deadline(in_call.with_call(None, NOW + 100), 60) == NOW + 160


def test_a_domain_book_decides_logins_in_order_and_gathers_their_effects_in_that_order() -> None:
    desk = book(1)
    earlier = Lease("l0", "s0", "acme", "cy", "Cy", Device("phone-1", "phone", ""), NOW - 9)
    domain = seats.DomainBook([desk], [earlier])
    first = granted(domain.login(request("ann"), "desk", NOW))
    refused = domain.login(request("bob", queue=True), "desk", NOW)
    named = granted(domain.login(request("cy", device="phone-1"), None, NOW))
    assert first.seat == 1 and isinstance(refused, Enqueued)
    assert named.pool is None and named.user_id == "cy"
    # Cy's same device replaced its earlier lease; every change is here, in order.
    kinds = [type(effect).__name__ for effect in domain.effects]
    assert kinds == ["Granted", "Enqueued", "Ended", "Granted"]
    assert domain.effects[2] == Ended(earlier, seats.REPLACED)
    assert [e.type for e in domain.events] == ["seat_granted", "seat_denied", "named_login"]
    # The pool's own book saw its decisions, as a lone login would have.
    assert desk.availability() == seats.Availability("desk", 1, 1, 0, 0, 1)


def test_a_domain_book_takes_one_login_per_user() -> None:
    domain = seats.DomainBook([book(2)], [])
    granted(domain.login(request("ann", device="d1"), "desk", NOW))
    with pytest.raises(ValueError):
        domain.login(request("ann", device="d2"), "desk", NOW)
    with pytest.raises(ValueError):
        domain.login(request("ann", device="d3"), None, NOW)
