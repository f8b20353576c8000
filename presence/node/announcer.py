"""Pushes each pool's availability and queue positions to the sessions following it.

A change marks its pool (:meth:`Announcer.announce`); one task pushes what
changed to the pool's sessions and watchers. A change that knew the pool's
occupancy (a login's, a logout's: their transactions had every lease and
waiter of the pool) says it, and is pushed as it is; any other is read, once
for a burst of changes. What was last pushed of a pool that has followers
here is kept while no change comes, to answer a session that starts
following it without a read: notes come in the order of the commits, so it
is never older than the last change heard. Frames are pushed, never
awaited, and a session is sent a frame only when it differs from the last
it got.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from .. import leases, wire
from ..core.seats import Occupancy, PoolBook
from ..errors import StorageError
from ..notes import Note
from ..storage import Store
from .session import Phase, Session, Sessions

logger = logging.getLogger(__name__)

#: Seconds before reading again the pools the database could not give.
RETRY_AFTER = 1.0


class Watcher(Protocol):
    """Something on this node that follows domains' changes (the wallboards)."""

    def watching(self, domain_id: str) -> bool: ...
    async def pool_changed(self, domain_id: str, pool_id: str, book: PoolBook | None) -> None:
        """A pool's state after a change; ``None`` when it was deleted."""

    async def noted(self, note: Note) -> None:
        """Every note from every node."""


@dataclass(slots=True)
class _Mark:
    """A pool to announce: to some of its sessions, or (``None``) all of them;
    as ``told`` by the change, or (``None``) as read."""

    targets: set[Session] | None
    told: Occupancy | None = None


class Announcer:
    def __init__(self, store: Store, sessions: Sessions) -> None:
        self.store = store
        self.sessions = sessions
        self.watchers: list[Watcher] = []
        self._marked: dict[tuple[str, str], _Mark] = {}
        self._known: dict[tuple[str, str], Occupancy] = {}
        self._wake = asyncio.Event()

    def announce(self, key: tuple[str, str], told: Occupancy | None = None) -> None:
        """Push a pool's state to everyone following it: the occupancy the change
        ``told``, or (``None``) as read."""
        self._marked[key] = _Mark(None, told)
        self._known.pop(key, None)  # a follower meanwhile waits for this mark
        self._wake.set()

    def announce_to(self, session: Session) -> None:
        """Push its pool's state to one session (it just logged in or waits)."""
        key = session.pool_key
        if key is None:
            return
        known = self._known.get(key)
        if known is not None:  # a change after it is pushed to this session too
            self._push(known, {session})
            return
        mark = self._marked.setdefault(key, _Mark(set()))
        if mark.targets is not None:
            mark.targets.add(session)
        self._wake.set()

    def resync(self) -> None:
        """Changes may have gone unheard: read every pool followed here again."""
        self._known.clear()
        for key in self.sessions.pools():
            self.announce(key)

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            marked, self._marked = self._marked, {}
            domains: dict[str, dict[str, _Mark]] = {}
            for (domain_id, pool_id), mark in marked.items():
                domains.setdefault(domain_id, {})[pool_id] = mark
            unread: StorageError | None = None
            for domain_id, pools in domains.items():
                try:
                    await self._announce(domain_id, pools)
                except StorageError as exc:  # the database is away: announce it later
                    unread = exc
                    for pool_id, mark in pools.items():
                        self._remark((domain_id, pool_id), mark)
                except Exception:
                    logger.exception("announcing pools of %s failed", domain_id)
            if unread is not None:
                logger.warning("announcing %d pool(s) again later: %s", len(self._marked), unread)
                await asyncio.sleep(RETRY_AFTER)

    def _remark(self, key: tuple[str, str], mark: _Mark) -> None:
        """Mark again a pool that could not be announced, under any mark since."""
        newer = self._marked.setdefault(key, mark)
        if newer is not mark and newer.targets is not None:
            newer.targets = None if mark.targets is None else newer.targets | mark.targets
        self._wake.set()

    async def _announce(self, domain_id: str, marked: dict[str, _Mark]) -> None:
        """Announce a domain's marked pools, each to its sessions."""
        watchers = [w for w in self.watchers if w.watching(domain_id)]
        followers = {pool_id: self.sessions.of_pool((domain_id, pool_id)) for pool_id in marked}
        wanted = [pool_id for pool_id in marked if followers[pool_id] or watchers]
        # Wallboards show the holders: their pools are read whole.
        found = {
            pool_id: mark.told
            for pool_id, mark in marked.items()
            if mark.told is not None and not watchers
        }
        unread = [pool_id for pool_id in wanted if pool_id not in found]
        books: dict[str, PoolBook] = {}
        if unread:
            # A read that takes no domain lock: a change meanwhile announces
            # itself again. Without wallboards, leases are counted.
            async with self.store.transaction() as tx:
                if watchers:
                    books = await leases.load_books(tx, domain_id, unread)
                    read = {pool_id: book.occupancy() for pool_id, book in books.items()}
                else:
                    read = await leases.load_occupancy(tx, domain_id, unread)
            found.update(read)
        for pool_id, occupancy in found.items():
            key = (domain_id, pool_id)
            if key not in self._marked and self.sessions.of_pool(key):
                self._known[key] = occupancy  # no change heard since
        for pool_id in wanted:
            for watcher in watchers:
                await watcher.pool_changed(domain_id, pool_id, books.get(pool_id))
            if pool_id in found:
                targets, following = marked[pool_id].targets, followers[pool_id]
                self._push(found[pool_id], following if targets is None else targets & following)

    @staticmethod
    def _push(occupancy: Occupancy, sessions: set[Session]) -> None:
        frame = wire.availability_frame(occupancy.availability())
        for session in list(sessions):
            session.pool = occupancy.pool
            if session.sent_availability != frame:
                session.sent_availability = frame
                session.push(frame)
            if session.phase is Phase.WAITING:
                position = occupancy.position(session.id)
                if position is not None and position != session.sent_position:
                    session.sent_position = position
                    session.push(wire.queued_frame(occupancy.pool.id, position))
