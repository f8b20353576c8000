"""The core's decisions carried out in a store transaction.

Every change to leases and queues goes through :func:`commit`: it writes the
effects and events of a :class:`~presence.core.seats.Decisions`, and publishes
the notes that tell every node what changed (which pools to announce, which
sessions to end or to welcome).
"""

from __future__ import annotations

from .core import seats
from .core.model import Lease, Pool, User
from .core.seats import Decisions, Dequeued, Ended, Enqueued, Granted, PoolBook, Updated
from .metrics import METRICS
from .storage import StoredEvent, Tx
from .views import event_view


async def load_book(tx: Tx, pool: Pool) -> PoolBook:
    """A pool's seats as they are now; call inside the domain's transaction."""
    return PoolBook(
        pool,
        await tx.leases(pool.domain_id, pool=pool.id),
        await tx.waiters(pool.domain_id, pool.id),
        await tx.last_fencing_token(),
    )


async def commit(tx: Tx, domain_id: str, decisions: Decisions) -> list[StoredEvent]:
    """Write ``decisions`` in ``tx`` and publish what changed to every node."""
    pools: set[str] = set()  # whose availability changed
    named: set[str] = set()  # users whose named devices changed

    def touched(lease: Lease) -> None:
        if lease.pool is None:
            named.add(lease.user_id)
        else:
            pools.add(lease.pool)

    for effect in decisions.effects:
        if isinstance(effect, Granted):
            await tx.insert_lease(effect.lease)
            tx.notify({"kind": "granted", "session": effect.lease.session_id})
            touched(effect.lease)
        elif isinstance(effect, Ended):
            await tx.delete_lease(effect.lease.id)
            tx.notify({"kind": "end", "session": effect.lease.session_id, "reason": effect.reason})
            touched(effect.lease)
        elif isinstance(effect, Updated):
            await tx.update_lease(effect.lease)
            touched(effect.lease)
        elif isinstance(effect, Enqueued):
            await tx.insert_waiter(effect.waiter)
            pools.add(effect.waiter.pool)
        elif isinstance(effect, Dequeued):
            await tx.delete_waiter(effect.waiter.session_id)
            pools.add(effect.waiter.pool)
        else:
            tx.notify(
                {"kind": "refused", "session": effect.session_id, "code": effect.code,
                 "message": effect.message}
            )  # fmt: skip
    if isinstance(decisions, PoolBook):
        await tx.set_last_fencing_token(decisions.last_token)
    for pool in sorted(pools):
        pool_changed(tx, domain_id, pool)
    for user_id in sorted(named):
        tx.notify({"kind": "named", "domain": domain_id, "user": user_id})
    stored = await tx.add_events(decisions.events)
    for event in decisions.events:
        METRICS.events.inc(event.type)
    if stored:
        tx.notify({"kind": "events", "domain": domain_id, "events": [
            event_view(e) for e in stored]})  # fmt: skip
    return stored


async def used_pool(tx: Tx, domain_id: str, pool_id: str) -> Pool:
    """A pool that a user or a lease is in, which the admin rules keep from deletion."""
    pool = await tx.pool(domain_id, pool_id)
    if pool is None:
        raise LookupError(f"pool {domain_id}/{pool_id} is gone, yet in use")
    return pool


def pool_changed(tx: Tx, domain_id: str, pool_id: str) -> None:
    """Tell every node to announce a pool's state (or that it is gone)."""
    tx.notify({"kind": "pool", "domain": domain_id, "pool": pool_id})


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


async def free_orphans(tx: Tx, domain_id: str) -> None:
    """Expire a domain's leases, and drop its waiters, of nodes that died."""
    now = await tx.now()
    for lease in await tx.orphaned_leases():
        if lease.domain_id == domain_id:
            await release(tx, lease, seats.LEASE_EXPIRED, now)
    waiters = [w for w in await tx.orphaned_waiters() if w.domain_id == domain_id]
    for pool in await tx.pools(domain_id):
        if any(w.pool == pool.id for w in waiters):
            book = await load_book(tx, pool)
            for waiter in waiters:
                book.leave(waiter.session_id, now)
            book.fill(now)
            await commit(tx, domain_id, book)


async def end_user(tx: Tx, user: User, reason: str, now: float) -> None:
    """End every session of a user whose license changed or who was deleted."""
    for lease in await tx.leases(user.domain_id, user_id=user.id):
        await release(tx, lease, reason, now)
    if user.license.model == "seat" and user.license.pool is not None:
        book = await load_book(tx, await used_pool(tx, user.domain_id, user.license.pool))
        for waiter in list(book.waiters):
            if waiter.user_id == user.id:
                book.leave(waiter.session_id, now)
        await commit(tx, user.domain_id, book)
    tx.notify({"kind": "user", "user": user.id, "reason": reason})
