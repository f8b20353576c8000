"""The core's decisions carried out in a store transaction.

Every change to leases and queues goes through :func:`commit`: it writes the
effects and events of a :class:`~presence.core.seats.Decisions`, records the
length of each queue that changed (:meth:`Tx.record_queue`, for usage over
time), logs a ``pool_full`` alert with a denied seat, and publishes the notes
that tell every node what changed (which pools to announce, which sessions to
end or to welcome).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from . import notes
from .core import alerts, rules, seats
from .core.model import Domain, Event, Identity, Lease, Pool, QueueSample, User, Waiter
from .core.seats import Decisions, Dequeued, Ended, Enqueued, Granted, PoolBook, Refusal, Updated
from .metrics import METRICS
from .storage import StoredEvent, Tx
from .views import event_view


async def load_book(tx: Tx, pool: Pool) -> PoolBook:
    """A pool's seats as they are now; call inside the domain's transaction."""
    return PoolBook(
        pool,
        await tx.leases(pool.domain_id, pools=[pool.id]),
        await tx.waiters(pool.domain_id, [pool.id]),
    )


async def load_books(tx: Tx, domain_id: str, pool_ids: Collection[str]) -> dict[str, PoolBook]:
    """The books of some pools of a domain, by id (a pool that is gone has none),
    in three statements whatever their number."""
    pools, waiting = await _pools_and_queues(tx, domain_id, pool_ids)
    held: dict[str, list[Lease]] = {pool_id: [] for pool_id in pools}
    if pools:
        for lease in await tx.leases(domain_id, pools=pools):
            held[lease.pool or ""].append(lease)
    return {id_: PoolBook(pool, held[id_], waiting[id_]) for id_, pool in pools.items()}


async def load_occupancy(
    tx: Tx, domain_id: str, pool_ids: Collection[str]
) -> dict[str, seats.Occupancy]:
    """What the sessions following some pools of a domain are told, by pool (a
    pool that is gone has none): their leases counted, not read."""
    pools, waiting = await _pools_and_queues(tx, domain_id, pool_ids)
    usage = await tx.pool_usage(domain_id, pools) if pools else {}
    return {
        id_: seats.Occupancy(
            pool, *usage.get(id_, (0, 0)), tuple(waiter.session_id for waiter in waiting[id_])
        )
        for id_, pool in pools.items()
    }


async def _pools_and_queues(
    tx: Tx, domain_id: str, pool_ids: Collection[str]
) -> tuple[dict[str, Pool], dict[str, list[Waiter]]]:
    pools = {pool.id: pool for pool in await tx.pools(domain_id) if pool.id in pool_ids}
    waiting: dict[str, list[Waiter]] = {pool_id: [] for pool_id in pools}
    for waiter in await tx.waiters(domain_id, pools) if pools else []:
        waiting[waiter.pool].append(waiter)
    return pools, waiting


async def load_domain_book(
    tx: Tx, domain_id: str, pool_ids: Collection[str], named: Collection[str]
) -> seats.DomainBook:
    """The books of some pools of a domain, which users are in, and the leases of
    some named users; call inside the domain's transaction."""
    books = await load_books(tx, domain_id, pool_ids)
    for pool_id in pool_ids:
        if pool_id not in books:
            raise LookupError(f"pool {domain_id}/{pool_id} is gone, yet in use")
    named_leases = await tx.leases(domain_id, users=named) if named else []
    return seats.DomainBook(books.values(), named_leases)


@dataclass(frozen=True, slots=True)
class Committed:
    """What :func:`commit` wrote: the leases granted (with their fencing tokens), by
    session, and the events as logged."""

    granted: dict[str, Lease]
    events: list[StoredEvent]


# Effects are written in this order: a seat a lease gives up is free for the
# grant that takes it over, and a seat granted from the queue is written while
# its queue place still says how long the session has (Tx.insert_leases).
_ORDER = {Ended: 0, Updated: 1, Granted: 2, Enqueued: 3, Dequeued: 4, Refusal: 5}


async def commit(tx: Tx, domain_id: str, decisions: Decisions) -> Committed:
    """Write ``decisions`` in ``tx`` and publish what changed to every node."""
    pools: set[str] = set()  # whose availability changed
    named: set[str] = set()  # users whose named devices changed
    granted: dict[str, Lease] = {}

    def touched(lease: Lease) -> None:
        if lease.pool is None:
            named.add(lease.user_id)
        else:
            pools.add(lease.pool)

    ordered = sorted(decisions.effects, key=lambda e: _ORDER[type(e)])
    for kind, same in itertools.groupby(ordered, key=type):
        effects = list(same)
        if kind is Ended:  # every lease ended in one statement, first
            ended = [effect for effect in effects if isinstance(effect, Ended)]
            await tx.delete_leases([end.lease.id for end in ended])
            for end in ended:
                tx.notify(notes.LeaseEnded(end.lease.session_id, end.reason))
                touched(end.lease)
            continue
        if kind is Granted:  # every grant in one statement, in its turn
            grants = [effect for effect in effects if isinstance(effect, Granted)]
            leases = await tx.insert_leases([grant.lease for grant in grants])
            for grant, lease in zip(grants, leases, strict=True):
                granted[lease.session_id] = lease
                if grant.queued:  # the others are answered by their own requests
                    tx.notify(notes.QueueGranted(lease.session_id))
                touched(lease)
            continue
        for effect in effects:
            if isinstance(effect, Updated):
                await tx.update_lease(effect.lease)
                touched(effect.lease)
            elif isinstance(effect, Enqueued):
                await tx.insert_waiter(effect.waiter)
                pools.add(effect.waiter.pool)
            elif isinstance(effect, Dequeued):
                await tx.delete_waiter(effect.waiter.session_id)
                pools.add(effect.waiter.pool)
            elif isinstance(effect, Refusal):
                tx.notify(notes.QueueRefused(effect.session_id, effect.code, effect.message))
    for sample in queue_lengths(domain_id, decisions):
        await tx.record_queue(sample.domain_id, sample.pool, sample.at, sample.queued)
    known = decisions.occupancies()  # its followers are told without a read
    for pool in sorted(pools):
        tx.notify(notes.PoolChanged(domain_id, pool, known.get(pool)))
    for user_id in sorted(named):
        tx.notify(notes.NamedChanged(domain_id, user_id))
    events = decisions.events + await pool_full(
        tx, domain_id, decisions.events, decisions.pools_read()
    )
    stored = await tx.add_events(events)
    for event in events:
        METRICS.events.inc(event.type)
    if stored:
        tx.notify(notes.EventsLogged(domain_id, tuple(dict(event_view(e)) for e in stored)))
    return Committed(granted, stored)


async def pool_full(
    tx: Tx, domain_id: str, events: list[Event], known: Mapping[str, Pool]
) -> list[Event]:
    """The ``pool_full`` alerts of the seats denied among ``events``, due
    at most once per pool per ``alert_interval_s`` (:mod:`presence.core.alerts`);
    ``known``: the pools decided on that the caller has read, by id."""
    found: list[Event] = []
    for refused in events:
        if refused.type != "seat_denied" or refused.pool is None:
            continue
        pool = known.get(refused.pool) or await used_pool(tx, domain_id, refused.pool)
        state = await tx.alert_state(domain_id, pool.id)
        after, logged = alerts.denied(pool, state, refused)
        if after != state:
            await tx.set_alert_state(domain_id, pool.id, after)
        found += logged
    return found


def queue_lengths(domain_id: str, decisions: Decisions) -> list[QueueSample]:
    """The queue lengths to record for ``decisions``: per pool whose queue
    changed, its length after them, preceded by the longest it was meanwhile
    when that was longer (a session queued and then served in one decision).
    """
    longest: dict[str, QueueSample] = {}
    last: dict[str, QueueSample] = {}
    for effect in decisions.effects:
        if isinstance(effect, Enqueued | Dequeued):
            pool = effect.waiter.pool
            sample = last[pool] = QueueSample(domain_id, pool, effect.at, effect.queued)
            if pool not in longest or sample.queued > longest[pool].queued:
                longest[pool] = sample
    samples = []
    for pool in sorted(last):
        if longest[pool].queued > last[pool].queued:
            samples.append(longest[pool])
        samples.append(last[pool])
    return samples


async def check_license(tx: Tx, domain: Domain, before: User | None, after: User) -> None:
    """Check a user's new license (``before``: ``None`` for a new user) against
    the domain's rules (:mod:`presence.core.rules`); :exc:`RuleViolation` if it breaks one."""
    pools = await tx.pools(domain.id)
    rules.check_license(domain, after.license, pools)
    named = await tx.named_users(domain.id)
    if before is not None and before.license.model == "named":
        named -= 1
    if after.license.model == "named":
        named += 1
    rules.check_domain(domain, pools, named)


async def provision(tx: Tx, identity: Identity, email: str, name: str) -> User:
    """The domain's user with this e-mail address, created with the identity's
    ``provision`` license if there is none (:exc:`RuleViolation` if the rules
    refuse it); call in the domain's transaction, so that it is created once."""
    assert identity.provision is not None
    user = await tx.user_by_email(identity.domain_id, email)
    if user is not None:
        return user
    domain = await tx.domain(identity.domain_id)
    assert domain is not None  # domains are never deleted
    user = User(identity.domain_id, uuid.uuid4().hex, email, name, identity.provision)
    await check_license(tx, domain, None, user)
    await tx.insert_user(user)
    return user


async def used_pool(tx: Tx, domain_id: str, pool_id: str) -> Pool:
    """A pool that a user or a lease is in, which the admin rules keep from deletion."""
    pool = await tx.pool(domain_id, pool_id)
    if pool is None:
        raise LookupError(f"pool {domain_id}/{pool_id} is gone, yet in use")
    return pool


async def release(tx: Tx, lease: Lease, reason: str, now: float) -> None:
    """End one lease for ``reason``, handing a freed seat to the queue."""
    if lease.pool is None:
        decisions = Decisions()
        decisions.end(lease, reason, now)
        await commit(tx, lease.domain_id, decisions)
        return
    book = await load_book(tx, await used_pool(tx, lease.domain_id, lease.pool))
    book.release(lease.id, reason, now)
    await commit(tx, lease.domain_id, book)


async def leave(tx: Tx, session_id: str, lease_id: str, reason: str) -> None:
    """Free whatever a session holds in the store: its lease, or its queue place.

    Read from the store, not from what the session believes it holds: a grant
    from the queue or a login cut short may have committed unseen.
    """
    now = await tx.now()
    lease = await tx.lease(lease_id)
    if lease is not None:
        await release(tx, lease, reason, now)
        return
    waiter = await tx.waiter(session_id)
    if waiter is not None:
        book = await load_book(tx, await used_pool(tx, waiter.domain_id, waiter.pool))
        book.leave(session_id, now)
        await commit(tx, waiter.domain_id, book)


async def free_expired(tx: Tx, domain_id: str) -> None:
    """End a domain's expired leases and drop its expired queue places."""
    now = await tx.now()
    for lease in await tx.expired_leases():
        if lease.domain_id == domain_id:
            await release(tx, lease, seats.LEASE_EXPIRED, now)
    # Expired places are out of the queue already (Tx.waiters): remove them, and
    # let a seat they kept from others go to the head of the queue.
    pools = set()
    for waiter in await tx.expired_waiters():
        if waiter.domain_id == domain_id:
            await tx.delete_waiter(waiter.session_id)
            pools.add(waiter.pool)
    for pool_id in sorted(pools):
        tx.notify(notes.PoolChanged(domain_id, pool_id))
        pool = await tx.pool(domain_id, pool_id)
        if pool is not None:  # a pool is deleted only without users, so without waiters
            book = await load_book(tx, pool)
            await tx.record_queue(domain_id, pool_id, now, len(book.waiters))
            book.fill(now)
            await commit(tx, domain_id, book)


async def end_user(tx: Tx, user: User, reason: str, now: float) -> list[Lease]:
    """End every session of a user whose license changed or who was deleted;
    return the leases ended."""
    held = await tx.leases(user.domain_id, users=[user.id])
    for lease in held:
        await release(tx, lease, reason, now)
    if user.license.model == "seat" and user.license.pool is not None:
        book = await load_book(tx, await used_pool(tx, user.domain_id, user.license.pool))
        for waiter in list(book.waiters):
            if waiter.user_id == user.id:
                book.leave(waiter.session_id, now)
        await commit(tx, user.domain_id, book)
    tx.notify(notes.UserEnded(user.id, reason))
    return held
