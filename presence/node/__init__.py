"""The node: its live device sessions, their leases, and what every node tells it.

A :class:`Node` puts four parts together over one store:

- :class:`~.protocol.DeviceProtocol`: what each device message does, and how
  a session ends and frees what it held;
- :class:`~.announcer.Announcer`: pools' availability pushed to the sessions
  (and wallboards) following them;
- :class:`~.keeper.LeaseKeeper`: leases renewed for live sessions only, silent
  and idle sessions ended, expired leases of any node freed;
- note dispatch (:meth:`Node.noted`): what other transactions, on any node,
  tell this one to do;
- beside them, :class:`~presence.webhooks.Deliverer` (the domains' events
  POSTed to their webhook endpoints) and :func:`~presence.alerts.watch`
  (capacity alerts that come due with time).

Sessions and their one lifecycle are :mod:`.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import assert_never

from .. import alerts, notes
from ..config import Config
from ..core import seats
from ..errors import StorageError
from ..metrics import METRICS, gauge
from ..notes import Note
from ..storage import Store
from ..webhooks import Deliverer
from .announcer import Announcer, Watcher
from .keeper import LeaseKeeper
from .protocol import DeviceProtocol
from .session import CLOSE_CODES, Phase, Sessions

__all__ = ["Node", "Watcher"]


class Node:
    """This node's sessions and their leases, over one store."""

    def __init__(
        self, store: Store, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.config = config
        self.sessions = Sessions()
        self.announcer = Announcer(store, self.sessions)
        self.protocol = DeviceProtocol(store, config, self.sessions, self.announcer, clock)
        self.keeper = LeaseKeeper(
            store, config, self.sessions, self.protocol, self.announcer, clock
        )
        self.deliverer = Deliverer(store, config)
        self._tasks: list[asyncio.Task[None]] = []
        store.subscribe(self.noted)

    @property
    def watchers(self) -> list[Watcher]:
        return self.announcer.watchers

    async def start(self) -> None:
        await self.store.open(self.config.lease_ttl)
        self._tasks = [
            asyncio.create_task(self.announcer.run(), name="presence-announce"),
            asyncio.create_task(self.keeper.run(), name="presence-keep"),
            asyncio.create_task(self.deliverer.run(), name="presence-webhooks"),
            asyncio.create_task(alerts.watch(self.store, self.keeper.tick), name="presence-alerts"),
        ]

    async def end_sessions(self) -> None:
        """End every session with ``server_shutdown``.

        Leases are renewed once more and kept for their holders to reclaim
        within ``lease_ttl``; queue places are left.
        """
        self.protocol.stopping = True
        with contextlib.suppress(StorageError):
            await self.keeper.renew()
        ended = await self.protocol.end_all(seats.SERVER_SHUTDOWN)
        await asyncio.gather(*(session.link.drain() for session in ended))

    async def stop(self) -> None:
        """End every session, stop, and close the store."""
        await self.end_sessions()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.close()

    async def metrics(self) -> str:
        """``/metrics``: this node's figures, and the seats of every pool."""
        async with self.store.transaction() as tx:
            counts = await tx.seat_counts()
            backlog = await self.deliverer.backlog(tx)
        phases = {"named": 0, "seat": 0, "waiting": 0, "refused": 0}
        for session in self.sessions:
            if session.lease is not None:
                phases["named" if session.lease.pool is None else "seat"] += 1
            else:
                phases["waiting" if session.phase is Phase.WAITING else "refused"] += 1
        by_state = [({"model": phase}, n) for phase, n in phases.items()]
        occupied = [({"domain": d, "pool": p}, n) for d, p, _, n in counts]
        free = [({"domain": d, "pool": p}, max(0, size - n)) for d, p, size, n in counts]
        return METRICS.render(
            [
                *gauge("presence_sessions", "Device sessions on this node, by state.", by_state),
                *gauge("presence_seats_occupied", "Occupied seats per pool.", occupied),
                *gauge("presence_seats_free", "Free seats per pool.", free),
                *gauge(
                    "presence_webhook_oldest_undelivered_seconds",
                    "Age of the oldest event not yet delivered to each enabled webhook endpoint.",
                    backlog,
                ),
            ]
        )

    async def noted(self, note: Note) -> None:
        """Act on a note from any node (this one included), then pass it to the watchers."""
        protocol, sessions = self.protocol, self.sessions
        match note:
            case notes.PoolChanged(domain, pool, occupancy):
                self.announcer.announce((domain, pool), occupancy)
            case notes.LeaseEnded(session_id, reason):
                session = sessions.get(session_id)
                if session is not None and reason in CLOSE_CODES:
                    protocol.end_soon(session, reason)
            case notes.UserEnded(user_id, reason):
                for session in sessions:
                    if session.user is not None and session.user.id == user_id:
                        protocol.end_soon(session, reason)
            case notes.QueueGranted(session_id):
                session = sessions.get(session_id)
                if session is not None and session.phase is Phase.WAITING:
                    await protocol.welcome_waiter(session)
            case notes.QueueRefused(session_id, code, message):
                session = sessions.get(session_id)
                if session is not None:
                    protocol.refuse_waiter(session, code, message)
            case notes.TokenRevoked(_, token_id):
                protocol.revoked(token_id)
            case notes.Resync():
                await self.keeper.resync()
            case notes.NamedChanged() | notes.EventsLogged() | notes.WebhooksChanged():
                pass  # for the watchers
            case _:
                assert_never(note)
        for watcher in self.watchers:
            await watcher.noted(note)
