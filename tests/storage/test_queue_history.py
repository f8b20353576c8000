"""Queue lengths recorded as decisions are committed (`presence.leases`), on every backend."""

from __future__ import annotations

import asyncio
import time

from presence import leases
from presence.core import seats
from presence.core.model import Device, Domain, Pool, QueueSample
from presence.core.seats import Decisions, Dequeued, Enqueued, PoolBook, Request
from presence.storage import Store

from .conftest import Nodes

DESK = Pool("acme", "desk", "Help desk", 1)
WAIT = 5.0
SHORT_TTL = 0.5


def ask(user_id: str, *, queue: bool = True) -> Request:
    return Request(
        f"s-{user_id}", f"l-{user_id}", "acme", user_id, user_id.title(),
        Device(f"pc-{user_id}", "desktop"), queue=queue,
    )  # fmt: skip


async def decide(store: Store, now: float, decide: str, *users: str) -> PoolBook:
    """Load the desk's book, let each user ``acquire`` or ``release`` in it, commit once."""
    async with store.transaction("acme") as tx:
        book = await leases.load_book(tx, DESK)
        for user_id in users:
            if decide == "acquire":
                book.acquire(ask(user_id), now)
            else:
                held = next(x for x in book.leases.values() if x.user_id == user_id)
                book.release(held.id, seats.LOGGED_OUT, now)
        await leases.commit(tx, "acme", book)
    return book


async def history(store: Store) -> list[tuple[float, int]]:
    async with store.transaction("acme") as tx:
        samples = (await tx.usage_history("acme", 0.0, time.time() + 60)).samples
    return [(at, queued) for at, _, queued in samples]


async def test_each_commit_records_the_queue_length_after_it(store: Store) -> None:
    async with store.transaction("acme") as tx:
        await tx.insert_domain(Domain("acme", "Acme", "enterprise", 0, 5))
        await tx.insert_pool(DESK)
    await decide(store, 10.0, "acquire", "ann")  # granted: the queue did not change
    assert await history(store) == []
    await decide(store, 11.0, "acquire", "bob")
    await decide(store, 12.0, "acquire", "cat", "dan")  # one row for both
    assert await history(store) == [(11.0, 1), (12.0, 3)]
    await decide(store, 13.0, "release", "ann")  # bob is served
    assert (await history(store))[-1] == (13.0, 2)
    # Queued and served in one commit: the longest the queue was is kept, then its end.
    await decide(store, 14.0, "acquire", "eve")
    async with store.transaction("acme") as tx:
        book = await leases.load_book(tx, DESK)
        book.acquire(ask("fay"), 15.0)  # 4 waiting
        (bob,) = book.leases.values()
        book.release(bob.id, seats.LOGGED_OUT, 15.0)  # cat is served: 3
        book.leave("s-dan", 15.0)  # 2
        await leases.commit(tx, "acme", book)
    assert (await history(store))[-3:] == [(14.0, 3), (15.0, 4), (15.0, 2)]


async def test_expired_queue_places_are_recorded_when_dropped(nodes: Nodes) -> None:
    store = await nodes.open(lease_ttl=SHORT_TTL)
    async with store.transaction("acme") as tx:
        await tx.insert_domain(Domain("acme", "Acme", "enterprise", 0, 5))
        await tx.insert_pool(DESK)
    now = time.time()
    await decide(store, now, "acquire", "ann", "bob", "cat")
    assert [queued for _, queued in await history(store)] == [2]
    async with store.transaction() as tx:
        (ann,) = await tx.leases("acme")
    deadline = time.monotonic() + WAIT
    while True:  # ann's seat is kept, the queue places are not renewed
        await store.renew([ann.session_id])
        async with store.transaction() as tx:
            if len(await tx.expired_waiters()) == 2:
                break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with store.transaction("acme") as tx:
        await leases.free_expired(tx, "acme")
        assert await tx.expired_waiters() == []
    samples = await history(store)
    assert [queued for _, queued in samples] == [2, 0]
    assert samples[-1][0] > now


def test_queue_lengths_of_decisions() -> None:
    book = PoolBook(DESK, [], [])
    assert leases.queue_lengths("acme", book) == []
    book.acquire(ask("ann"), 1.0)
    book.acquire(ask("bob"), 1.0)
    book.acquire(ask("cat"), 1.0)
    assert leases.queue_lengths("acme", book) == [QueueSample("acme", "desk", 1.0, 2)]
    (ann,) = book.leases.values()
    book.release(ann.id, seats.LOGGED_OUT, 2.0)
    assert leases.queue_lengths("acme", book) == [
        QueueSample("acme", "desk", 1.0, 2),
        QueueSample("acme", "desk", 2.0, 1),
    ]
    other = Pool("acme", "field", "Field", 0)
    waiter = PoolBook(other, [], []).acquire(ask("dan"), 3.0)
    assert isinstance(waiter, Enqueued)
    both = Decisions([*book.effects, waiter, Dequeued(waiter.waiter, 0, 4.0)])
    assert leases.queue_lengths("acme", both) == [
        QueueSample("acme", "desk", 1.0, 2),
        QueueSample("acme", "desk", 2.0, 1),
        QueueSample("acme", "field", 3.0, 1),
        QueueSample("acme", "field", 4.0, 0),
    ]
