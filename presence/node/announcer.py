"""Pushes each pool's availability and queue positions to the sessions following it.

A change marks its pool (:meth:`Announcer.announce`); one task reads each
marked pool once and pushes what changed to its sessions and watchers, so a
burst of changes to a pool costs one read. Frames are pushed, never awaited,
and a session is sent a frame only when it differs from the last it got.
"""

from __future__ import annotations

import asyncio
import logging
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


class Announcer:
    def __init__(self, store: Store, sessions: Sessions) -> None:
        self.store = store
        self.sessions = sessions
        self.watchers: list[Watcher] = []
        self._marked: dict[tuple[str, str], set[Session] | None] = {}
        self._wake = asyncio.Event()

    def announce(self, key: tuple[str, str]) -> None:
        """Push a pool's state to everyone following it."""
        self._mark(key, None)

    def announce_to(self, session: Session) -> None:
        """Push its pool's state to one session (it just logged in or waits)."""
        key = session.pool_key
        if key is not None:
            self._mark(key, {session})

    def _mark(self, key: tuple[str, str], targets: set[Session] | None) -> None:
        """Mark a pool for some of its sessions, or (``None``) all of them."""
        if targets is None:
            self._marked[key] = None
        else:
            marked = self._marked.setdefault(key, set())
            if marked is not None:
                marked.update(targets)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            marked, self._marked = self._marked, {}
            domains: dict[str, dict[str, set[Session] | None]] = {}
            for (domain_id, pool_id), targets in marked.items():
                domains.setdefault(domain_id, {})[pool_id] = targets
            unread: StorageError | None = None
            for domain_id, pools in domains.items():
                try:
                    await self._announce(domain_id, pools)
                except StorageError as exc:  # the database is away: announce it later
                    unread = exc
                    for pool_id, targets in pools.items():
                        self._mark((domain_id, pool_id), targets)
                except Exception:
                    logger.exception("announcing pools of %s failed", domain_id)
            if unread is not None:
                logger.warning("announcing %d pool(s) again later: %s", len(self._marked), unread)
                await asyncio.sleep(RETRY_AFTER)

    async def _announce(self, domain_id: str, marked: dict[str, set[Session] | None]) -> None:
        """Announce a domain's marked pools, each to its sessions (``None``: all)."""
        watchers = [w for w in self.watchers if w.watching(domain_id)]
        followers = {pool_id: self.sessions.of_pool((domain_id, pool_id)) for pool_id in marked}
        wanted = [pool_id for pool_id in marked if followers[pool_id] or watchers]
        if not wanted:
            return
        # A read that takes no domain lock: a change meanwhile announces itself
        # again. Without wallboards to show the holders, leases are counted.
        books: dict[str, PoolBook] = {}
        async with self.store.transaction() as tx:
            if watchers:
                books = await leases.load_books(tx, domain_id, wanted)
                found = {pool_id: book.occupancy() for pool_id, book in books.items()}
            else:
                found = await leases.load_occupancy(tx, domain_id, wanted)
        for pool_id in wanted:
            for watcher in watchers:
                await watcher.pool_changed(domain_id, pool_id, books.get(pool_id))
            if pool_id in found:
                targets, following = marked[pool_id], followers[pool_id]
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
