"""Keeps the leases of this node's live sessions, and ends what outlived its time.

Every ``lease_ttl / 3`` the keeper renews the leases and queue places of the
sessions the node serves live, and only those: whatever the store holds for
a session the node no longer serves (forgotten, cut off, or its node dead)
expires by itself within ``lease_ttl``. Every tick it ends sessions whose
device fell silent or sat idle too long, frees the expired leases of every
node, and retries what could not be freed while the database was away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .. import leases
from ..config import Config
from ..core import seats
from ..errors import StorageError
from ..storage import Store
from .announcer import Announcer
from .protocol import DeviceProtocol
from .session import Phase, Session, Sessions

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        config: Config,
        sessions: Sessions,
        protocol: DeviceProtocol,
        announcer: Announcer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.config = config
        self.sessions = sessions
        self.protocol = protocol
        self.announcer = announcer
        self.clock = clock
        #: Seconds between looks at silent sessions and expired leases.
        self.tick = min(1.0, config.lease_ttl / 4)

    async def renew(self) -> None:
        """Renew what the live sessions hold, whose connections are still there."""
        await self.store.renew([s.id for s in self.sessions if not s.link.gone])

    async def run(self) -> None:
        ttl, tick = self.config.lease_ttl, self.tick
        renewed = self.clock()
        while True:
            await asyncio.sleep(tick)
            try:
                now = self.clock()
                if now - renewed >= ttl / 3:
                    try:
                        await self.renew()
                    except StorageError:
                        # Once unrenewed for lease_ttl, the leases are any node's
                        # to free: stop serving their sessions just before.
                        if now - renewed > ttl - tick:
                            self._abandon_all()
                        raise
                    if now - renewed > ttl:  # paused past the TTL: notes were missed
                        await self.resync()
                    renewed = now
                await self._retry_releases()
                await self._end_silent_and_idle(now)
                await self._free_expired()
            except StorageError as exc:
                logger.warning("lease keeper: %s", exc)
            except Exception:
                logger.exception("lease keeper failed")

    def _abandon_all(self) -> None:
        """End every session without the database; free what they held once it answers."""
        for session in self.sessions:
            if session.ending(seats.LEASE_EXPIRED) is not None:
                self.protocol.unreleased[session] = seats.LEASE_EXPIRED

    async def _retry_releases(self) -> None:
        for session, reason in list(self.protocol.unreleased.items()):
            if not await self.protocol.release(session, reason):
                return  # still away: try again next tick

    async def _end_silent_and_idle(self, now: float) -> None:
        idle: list[tuple[Session, float]] = []
        for session in self.sessions:
            if now - session.last_seen > self.config.lease_ttl:
                self.protocol.end_soon(session, seats.LEASE_EXPIRED)
                continue
            lease, pool = session.lease, session.pool
            if lease is not None and pool is not None:
                deadline = seats.idle_deadline(lease, pool.idle_logoff_s)
                if deadline is not None:
                    idle.append((session, deadline))
        if idle:
            async with self.store.transaction() as tx:
                store_now = await tx.now()  # the clock idle_since was taken from
            for session, deadline in idle:
                if store_now >= deadline:
                    self.protocol.end_soon(session, seats.IDLE_LOGOFF)

    async def _free_expired(self) -> None:
        """Free the leases and queue places nobody renewed, of any node."""
        async with self.store.transaction() as tx:
            domains = {x.domain_id for x in await tx.expired_leases()}
            domains.update(w.domain_id for w in await tx.expired_waiters())
        for domain_id in sorted(domains):
            async with self.store.transaction(domain_id) as tx:
                await leases.free_expired(tx, domain_id)

    async def resync(self) -> None:
        """Notes may have been missed: check every session against the store."""
        self.announcer.resync()
        for session in self.sessions:
            waiting = session.phase is Phase.WAITING
            if not waiting and session.lease is None:
                continue
            async with self.store.transaction() as tx:
                lease = await tx.lease(session.lease_id)
                waiter = await tx.waiter(session.id) if waiting else None
            if lease is not None and waiting:
                await self.protocol.welcome_waiter(session)
            elif lease is None and waiter is None:
                self.protocol.end_soon(session, seats.LEASE_EXPIRED)
