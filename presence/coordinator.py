"""The node: live device sessions, their leases, and what is pushed to them.

The :class:`Coordinator` owns this node's sessions. Device endpoints hand it
parsed messages (:meth:`Coordinator.handle`); it decides through the core
inside store transactions, answers the device, and reacts to the notes every
node publishes: sessions to end, queue grants to welcome, pools whose
availability changed. Heartbeats only touch memory; a ticker expires silent
sessions, logs idle seats off, renews this node's leases in one write and
frees the leases of nodes that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from . import leases, wire
from .config import Config
from .core import seats
from .core.model import Lease, Pool
from .core.seats import Decisions, Enqueued, Granted, PoolBook, Refusal, Request
from .errors import StorageError
from .metrics import METRICS, gauge
from .session import CLOSE_CODES, Link, Session
from .storage import Note, Store
from .tokens import hash_token

logger = logging.getLogger(__name__)


class Watcher(Protocol):
    """Something on this node that follows domains' changes (the wallboards)."""

    def watching(self, domain_id: str) -> bool: ...
    async def pool_changed(self, domain_id: str, pool_id: str, book: PoolBook | None) -> None:
        """A pool's state after a change; ``None`` when it was deleted."""

    async def noted(self, note: Note) -> None:
        """Every note from every node."""


class Coordinator:
    """This node's sessions and their leases, over one store."""

    def __init__(
        self, store: Store, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self._pool_sessions: dict[tuple[str, str], set[Session]] = {}
        self._dirty: dict[tuple[str, str], set[Session] | None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._unreleased: list[Session] = []  # closed while the database was away
        self._revocations = 0  # token revocations heard; see _hello
        self.watchers: list[Watcher] = []
        store.subscribe(self._on_note)

    async def start(self) -> None:
        await self.store.open(self.config.lease_ttl)
        self._tasks = [
            asyncio.create_task(self._announce_loop(), name="presence-announce"),
            asyncio.create_task(self._tick_loop(), name="presence-tick"),
        ]

    async def end_sessions(self) -> None:
        """End every session with ``server_shutdown``.

        Leases are kept for their holders to reclaim; queues are left, since a
        seat handed to a closed session would only wait out its lease.
        """
        self._stopping = True
        reason = seats.SERVER_SHUTDOWN
        sessions = list(self.sessions.values())
        for session in sessions:
            if session.waiting:
                await self._leave(session, reason)
            session.end_for(reason)
        await asyncio.gather(*(session.link.drain() for session in sessions))

    async def stop(self) -> None:
        """End every session, stop, and keep the leases for ``lease_ttl``."""
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
        models: dict[str, int] = {"named": 0, "seat": 0, "waiting": 0, "refused": 0}
        for session in self.sessions.values():
            if session.lease is not None:
                models["named" if session.lease.pool is None else "seat"] += 1
            else:
                models["waiting" if session.waiting else "refused"] += 1
        sessions = [({"model": model}, n) for model, n in models.items()]
        occupied = [({"domain": d, "pool": p}, n) for d, p, _, n in counts]
        free = [({"domain": d, "pool": p}, max(0, size - n)) for d, p, size, n in counts]
        return METRICS.render(
            [
                *gauge("presence_sessions", "Device sessions on this node, by state.", sessions),
                *gauge("presence_seats_occupied", "Occupied seats per pool.", occupied),
                *gauge("presence_seats_free", "Free seats per pool.", free),
            ]
        )

    # The device protocol.

    def open_session(self, link: Link) -> Session:
        return Session(link, self.clock())

    async def hello(self, session: Session, message: wire.Hello) -> bool:
        """Authenticate a session and log it in; ``False`` if it was closed."""
        started = self.clock()
        try:
            return await self._hello(session, message)
        finally:
            METRICS.login_seconds.observe(self.clock() - started)

    async def _hello(self, session: Session, message: wire.Hello) -> bool:
        while True:
            heard = self._revocations
            async with self.store.transaction() as tx:
                grant = await tx.use_token(hash_token(message.token))
                user = None
                if grant is not None and grant.role == "user" and grant.domain_id and grant.user_id:
                    user = await tx.user(grant.domain_id, grant.user_id)
            # A revocation heard meanwhile may be of this token, and found no
            # session of it to end: check again.
            if self._revocations == heard:
                break
        if user is None:
            session.end(
                4401,
                wire.error_frame("unauthorized", "The token is missing or not valid."),
            )
            return False
        assert grant is not None
        session.user = user
        session.device = message.device
        session.token_id = grant.token_id
        self.sessions[session.id] = session
        return await self.acquire(session, message.takeover, message.queue)

    async def acquire(self, session: Session, takeover: bool, queue: bool) -> bool:
        """Log in (again) under the user's current license."""
        assert session.user is not None and session.device is not None
        if session.lease is not None:
            self._welcome(session, session.lease, session.pool)
            return True
        domain_id = session.user.domain_id
        async with self.store.transaction(domain_id) as tx:
            user = await tx.user(domain_id, session.user.id)
            if user is None or user.license.model == "none":
                outcome: Granted | Refusal | Enqueued | None = None
            else:
                session.user = user
                request = Request(
                    session.id, session.lease_id, self.store.node_id, domain_id, user.id,
                    user.name, session.device, takeover, queue,
                )  # fmt: skip
                now = await tx.now()
                decisions: Decisions
                if user.license.model == "named":
                    held = await tx.leases(domain_id, user_id=user.id)
                    decisions = seats.login_named(held, request, now)
                    outcome = next(e for e in decisions.effects if isinstance(e, Granted))
                else:
                    assert user.license.pool is not None
                    pool = await leases.used_pool(tx, domain_id, user.license.pool)
                    session.pool = pool
                    decisions = await leases.load_book(tx, pool)
                    outcome = decisions.acquire(request, now)
                await leases.commit(tx, domain_id, decisions)
                # Known before the commit ends, so that a session whose task is
                # cancelled meanwhile still frees what it was granted when it closes.
                session.lease = outcome.lease if isinstance(outcome, Granted) else None
                session.waiting = isinstance(outcome, Enqueued)
        if outcome is None:
            self.sessions.pop(session.id, None)
            session.end(
                4403,
                wire.error_frame("no_license", "Your user has no license to log in."),
            )
            return False
        if isinstance(outcome, Granted):
            self._welcome(session, outcome.lease, session.pool)
        elif isinstance(outcome, Refusal):
            await session.error(outcome.code, outcome.message)
        self._subscribe(session)
        return True

    async def handle(self, session: Session, message: wire.ClientMessage) -> None:
        """Act on one message of a session that said ``hello``; renews its lease.

        Raises :exc:`wire.BadMessage` for a second ``hello``.
        """
        session.last_seen = started = self.clock()
        if isinstance(message, wire.Heartbeat):
            await session.reply(wire.heartbeat_ack_frame(message.seq, self.config.lease_ttl))
            METRICS.heartbeat_seconds.observe(self.clock() - started)
        elif isinstance(message, wire.Acquire):
            await self.acquire(session, message.takeover, message.queue)
        elif isinstance(message, wire.CallStart | wire.CallEnd):
            await self.call(session, message)
        elif isinstance(message, wire.Logout):
            await self.logout(session)
        else:
            raise wire.BadMessage("This session already said hello.")

    async def call(self, session: Session, message: wire.CallStart | wire.CallEnd) -> None:
        held = session.lease  # it may be ended meanwhile, by another node's note
        if held is None:
            await session.error("not_logged_in", "Calls need a seat or a named login first.")
            return
        async with self.store.transaction(held.domain_id) as tx:
            lease = await tx.lease(held.id)
            if lease is None:
                result: Decisions | Refusal = Refusal(
                    session.id, "not_logged_in", "This session no longer holds its lease."
                )
            else:
                now = await tx.now()
                if isinstance(message, wire.CallStart):
                    result = seats.start_call(lease, message.call_id, now)
                else:
                    result = seats.end_call(lease, message.call_id, now)
                if isinstance(result, Decisions):
                    await leases.commit(tx, lease.domain_id, result)
        if isinstance(result, Refusal):
            await session.error(result.code, result.message)
            return
        (updated,) = result.effects
        assert isinstance(updated, seats.Updated) and lease is not None
        session.lease = updated.lease
        if isinstance(message, wire.CallStart):
            started = updated.lease.call_started_at or 0.0
            await session.reply(wire.call_started_frame(message.call_id, started))
        else:
            duration = updated.lease.idle_since - (lease.call_started_at or 0.0)
            await session.reply(wire.call_ended_frame(message.call_id, duration))

    async def logout(self, session: Session) -> None:
        await self._leave(session, seats.LOGGED_OUT)
        session.end(1000, wire.bye_frame())

    async def disconnected(self, session: Session) -> None:
        """The connection closed: free what the session held, unless shutting down."""
        session.ended = True
        self._forget(session)
        if not self._stopping:
            try:
                await self._leave(session, seats.DISCONNECTED)
            except StorageError:  # freed by the ticker once the database answers
                if session not in self._unreleased:
                    self._unreleased.append(session)

    # Internals.

    def _welcome(self, session: Session, lease: Lease, pool: Pool | None) -> None:
        # Pushed, not replied: a queue grant welcomes from a shared task.
        assert session.user is not None
        session.lease = lease
        session.waiting = False
        session.push(
            wire.welcome_frame(
                session.id,
                session.user,
                lease,
                pool,
                self.config.heartbeat_interval,
                self.config.lease_ttl,
            )  # fmt: skip
        )

    async def _leave(self, session: Session, reason: str) -> None:
        lease, waiting = session.lease, session.waiting
        session.lease, session.waiting = None, False
        if lease is None and not waiting:
            return
        assert session.user is not None
        domain_id = session.user.domain_id
        try:
            async with self.store.transaction(domain_id) as tx:
                now = await tx.now()
                if lease is not None:
                    current = await tx.lease(lease.id)
                    if current is not None:
                        await leases.release(tx, current, reason, now)
                elif session.pool is not None:
                    book = await leases.load_book(tx, session.pool)
                    book.leave(session.id, now)
                    await leases.commit(tx, domain_id, book)
        except StorageError:
            session.lease, session.waiting = lease, waiting  # to be left again later
            raise

    def _subscribe(self, session: Session) -> None:
        key = session.pool_key
        if key is not None:
            self._pool_sessions.setdefault(key, set()).add(session)
            self._announce(key, session)

    def _forget(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        key = session.pool_key
        if key is not None and key in self._pool_sessions:
            self._pool_sessions[key].discard(session)
            if not self._pool_sessions[key]:
                del self._pool_sessions[key]

    def _announce(self, key: tuple[str, str], only: Session | None = None) -> None:
        """Mark a pool's availability to be pushed (to one session, or all)."""
        if only is None:
            self._dirty[key] = None
        else:
            targets = self._dirty.setdefault(key, set())
            if targets is not None:
                targets.add(only)
        self._wake.set()

    async def _announce_loop(self) -> None:
        """Push availability and queue positions, one store read per dirty pool."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, {}
            for (domain_id, pool_id), targets in dirty.items():
                try:
                    await self._announce_pool(domain_id, pool_id, targets)
                except Exception:
                    logger.exception("announcing pool %s/%s failed", domain_id, pool_id)

    async def _announce_pool(
        self, domain_id: str, pool_id: str, targets: set[Session] | None
    ) -> None:
        subscribers = self._pool_sessions.get((domain_id, pool_id), set())
        watchers = [w for w in self.watchers if w.watching(domain_id)]
        if not subscribers and not watchers:
            return
        # A read that takes no domain lock: a change meanwhile announces itself again.
        async with self.store.transaction() as tx:
            pool = await tx.pool(domain_id, pool_id)
            book = await leases.load_book(tx, pool) if pool is not None else None
        for watcher in watchers:
            await watcher.pool_changed(domain_id, pool_id, book)
        if book is None:
            return
        frame = wire.availability_frame(book.availability())
        for session in list(subscribers if targets is None else targets & subscribers):
            session.pool = book.pool
            if session.sent_availability != frame:
                session.sent_availability = frame
                session.push(frame)
            position = book.position(session.id) if session.waiting else None
            if position is not None and position != session.sent_position:
                session.sent_position = position
                session.push(wire.queued_frame(pool_id, position))

    async def _on_note(self, note: Note) -> None:
        kind = note["kind"]
        if kind == "pool":
            self._announce((note["domain"], note["pool"]))
        elif kind == "resync":
            await self._resync()
        elif kind == "end":
            session = self.sessions.get(note["session"])
            if session is not None:
                await self._end(session, note["reason"])
        elif kind == "token_revoked":
            self._revocations += 1
            for session in [s for s in self.sessions.values() if s.token_id == note["token"]]:
                await self._expire(session, seats.TOKEN_REVOKED)
        elif kind == "user":
            for session in list(self.sessions.values()):
                if session.user is not None and session.user.id == note["user"]:
                    await self._end(session, note["reason"])
        elif kind == "granted":
            session = self.sessions.get(note["session"])
            if session is not None and session.waiting:
                await self._welcome_waiter(session)
        elif kind == "refused":
            session = self.sessions.get(note["session"])
            if session is not None and session.waiting:
                session.waiting = False
                session.push(wire.error_frame(note["code"], note["message"]))
        for watcher in self.watchers:
            await watcher.noted(note)

    async def _welcome_waiter(self, session: Session) -> None:
        async with self.store.transaction() as tx:
            lease = await tx.lease(session.lease_id)
        if lease is not None:
            self._welcome(session, lease, session.pool)

    async def _end(self, session: Session, reason: str) -> None:
        """End a session that something else ended (its lease is already gone)."""
        if session.ended or reason not in CLOSE_CODES:
            return
        session.lease = None
        await self._expire(session, reason)  # a waiting session leaves its queue

    async def _tick_loop(self) -> None:
        ttl = self.config.lease_ttl
        tick = min(1.0, ttl / 4)
        renewed = self.clock()
        while True:
            await asyncio.sleep(tick)
            try:
                now = self.clock()
                if now - renewed >= ttl / 3:
                    try:
                        await self.store.renew_node()
                    except StorageError:
                        # Other nodes free this node's leases once its last renewal
                        # is lease_ttl old: stop using them just before.
                        if now - renewed > ttl - tick:
                            self._end_all(seats.LEASE_EXPIRED)
                        raise
                    # Paused past the TTL: other nodes may have freed the leases.
                    if now - renewed > ttl:
                        await self._resync()
                    renewed = now
                while self._unreleased:
                    await self._leave(self._unreleased[0], seats.DISCONNECTED)
                    self._unreleased.pop(0)
                await self._expire_sessions(now)
                await self._free_orphans()
            except StorageError as exc:
                logger.warning("tick: %s", exc)
            except Exception:
                logger.exception("tick failed")

    async def _expire_sessions(self, now: float) -> None:
        idle: list[tuple[Session, float]] = []
        for session in list(self.sessions.values()):
            if session.ended:
                continue
            if now - session.last_seen > self.config.lease_ttl:
                await self._expire(session, seats.LEASE_EXPIRED)
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
                    await self._expire(session, seats.IDLE_LOGOFF)

    async def _resync(self) -> None:
        """Notes may have been missed: check every session against the store."""
        for key in list(self._pool_sessions):
            self._announce(key)
        for session in list(self.sessions.values()):
            if session.lease is None and not session.waiting:
                continue
            async with self.store.transaction() as tx:
                lease = await tx.lease(session.lease_id)
                waits_in = session.pool_key if session.waiting else None
                queue = await tx.waiters(*waits_in) if waits_in is not None else []
            if lease is not None and session.waiting:
                self._welcome(session, lease, session.pool)
            elif lease is None and all(w.session_id != session.id for w in queue):
                await self._end(session, seats.LEASE_EXPIRED)

    def _end_all(self, reason: str) -> None:
        """End every session holding or waiting for something, without the store.

        What they held is freed once the database answers again, if another
        node has not freed it meanwhile.
        """
        for session in list(self.sessions.values()):
            if session.lease is not None or session.waiting:
                self._forget(session)
                session.end_for(reason)
                if session not in self._unreleased:
                    self._unreleased.append(session)

    async def _expire(self, session: Session, reason: str) -> None:
        await self._leave(session, reason)
        self._forget(session)
        session.end_for(reason)

    async def _free_orphans(self) -> None:
        """Free the leases of nodes that stopped renewing (died or were cut off)."""
        async with self.store.transaction() as tx:
            domains = {x.domain_id for x in await tx.orphaned_leases()}
            domains.update(w.domain_id for w in await tx.orphaned_waiters())
        for domain_id in sorted(domains):
            async with self.store.transaction(domain_id) as tx:
                await leases.free_orphans(tx, domain_id)
