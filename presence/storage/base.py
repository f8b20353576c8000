"""The storage interface: one small set of operations every backend provides.

A :class:`Store` is the record of domains, pools, users, tokens, leases, the
queue, the event log and the history of queue lengths, and the bus between
nodes. All reads and writes go through a :class:`Tx`; a transaction opened
for a domain serialises with every other transaction of that domain, so a
decision read and written inside one is atomic on every node. Notes
(:mod:`presence.notes`) given to :meth:`Tx.notify` reach the subscribers of
every node after the transaction commits, and never if it rolls back.

Leases and queue places live while the node that serves their session renews
them (:meth:`Store.renew`); one that is not renewed for ``lease_ttl`` has
expired, whatever became of its node, and any node frees it.

Backends translate their driver's errors into :exc:`presence.errors` types.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from ..core.alerts import AlertState
from ..core.model import Domain, Event, Identity, Lease, Pool, User, Waiter
from ..core.usage import EventRow, History, PoolState, SampleRow
from ..core.webhooks import Progress, Webhook
from ..errors import Overloaded
from ..notes import Note

logger = logging.getLogger(__name__)


#: ``last_used_at`` of a token is written when it is older than this (seconds),
#: not on every use: a login storm does not become a storm of writes.
LAST_USED_RESOLUTION = 60.0


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a bearer token allows: ``role`` in a domain (``None``: server).

    ``token_id`` is the stored token's id (``None`` for the configured server
    admin token): sessions opened with the token keep it, to end when the
    token is revoked.
    """

    role: str
    domain_id: str | None = None
    user_id: str | None = None
    token_id: str | None = None


@dataclass(frozen=True, slots=True)
class Token:
    """A stored token as its admins see it; its secret is stored only as a hash.

    Times are seconds since the epoch: ``expires_at`` is ``None`` for a token
    that never expires, ``created_at`` for a token made before tokens had ids,
    ``last_used_at`` for a token never used (it is kept to within
    :data:`LAST_USED_RESOLUTION`). ``domain_id`` is ``None`` for a server
    admin token generated at first start.
    """

    id: str
    role: str
    domain_id: str | None
    user_id: str | None
    label: str | None
    created_at: float | None
    expires_at: float | None = None
    last_used_at: float | None = None

    @property
    def grant(self) -> TokenGrant:
        return TokenGrant(self.role, self.domain_id, self.user_id, self.id)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    event: Event


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to deliver an event to a webhook endpoint: ``status`` is the
    HTTP status answered (``None``: no answer), ``error`` why it failed
    (``None``: delivered)."""

    webhook_id: str
    event_id: int
    attempt: int
    at: float
    status: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events of a domain :meth:`Tx.events` reads.

    Without ``before``: the first ``limit`` matching events with an id greater
    than ``after``. With ``before``: the last ``limit`` matching events with an
    id less than ``before`` (and greater than ``after``), so that a reader can
    page backwards from the newest. Either way oldest first.

    The filters that are set must all match: ``types`` (any of them; empty:
    every type), ``user_id``, ``pool``, and the time ``at`` within
    ``[start, end)``.
    """

    after: int = 0
    before: int | None = None
    limit: int = 100
    types: frozenset[str] = frozenset()
    user_id: str | None = None
    pool: str | None = None
    start: float | None = None
    end: float | None = None


class Tx(abc.ABC):
    """One transaction. Every method must be awaited inside it.

    A method that raises (a :exc:`RuleViolation` from an insert included)
    may leave the transaction unusable: let the error end it.
    """

    @abc.abstractmethod
    async def now(self) -> float:
        """The time of the transaction, from the clock that leases expire by."""

    # Domains, pools and users.
    @abc.abstractmethod
    async def domains(self) -> list[Domain]:
        """Every domain, by id."""

    @abc.abstractmethod
    async def domain(self, domain_id: str) -> Domain | None: ...
    @abc.abstractmethod
    async def insert_domain(self, domain: Domain) -> None: ...
    @abc.abstractmethod
    async def update_domain(self, domain: Domain) -> None: ...
    @abc.abstractmethod
    async def pools(self, domain_id: str) -> list[Pool]: ...
    @abc.abstractmethod
    async def pool(self, domain_id: str, pool_id: str) -> Pool | None: ...
    @abc.abstractmethod
    async def insert_pool(self, pool: Pool) -> None: ...
    @abc.abstractmethod
    async def update_pool(self, pool: Pool) -> None: ...
    @abc.abstractmethod
    async def delete_pool(self, domain_id: str, pool_id: str) -> None: ...
    @abc.abstractmethod
    async def users(self, domain_id: str, ids: Collection[str] | None = None) -> list[User]:
        """A domain's users (those of ``ids`` only, if given), oldest first."""

    @abc.abstractmethod
    async def user(self, domain_id: str, user_id: str) -> User | None: ...
    @abc.abstractmethod
    async def email_taken(self, domain_id: str, email: str) -> bool:
        """Whether a user of the domain has this e-mail address, compared
        without case (as the database's ``lower()`` folds it)."""

    @abc.abstractmethod
    async def user_by_email(self, domain_id: str, email: str) -> User | None:
        """The user with this e-mail address, compared as :meth:`email_taken` does."""

    @abc.abstractmethod
    async def named_users(self, domain_id: str) -> int:
        """How many users of the domain hold a named license."""

    @abc.abstractmethod
    async def insert_user(self, user: User) -> None: ...
    @abc.abstractmethod
    async def update_user(self, user: User) -> None: ...
    @abc.abstractmethod
    async def delete_user(self, domain_id: str, user_id: str) -> None:
        """Delete a user; its tokens are the caller's to revoke first."""

    # Tokens, stored by their hash only.
    @abc.abstractmethod
    async def insert_token(self, token_hash: str, token: Token) -> None: ...
    @abc.abstractmethod
    async def use_tokens(self, token_hashes: Collection[str]) -> dict[str, TokenGrant]:
        """What the tokens with these hashes allow, by hash, for those that have
        not expired (by the clock of :meth:`now`); their ``last_used_at`` is
        brought up to date where it is older than :data:`LAST_USED_RESOLUTION`."""

    async def use_token(self, token_hash: str) -> TokenGrant | None:
        return (await self.use_tokens([token_hash])).get(token_hash)

    @abc.abstractmethod
    async def tokens(self, domain_id: str | None) -> list[Token]:
        """A domain's tokens, user tokens and expired ones included, oldest
        first (those of unknown age before the others); ``None``: the
        generated server admin tokens."""

    @abc.abstractmethod
    async def delete_token(self, domain_id: str | None, token_id: str) -> Token | None:
        """Delete a token of a domain (``None``: a server admin token); return
        it as it was, or ``None`` (nothing deleted) if the domain has no such
        token."""

    # Leases and the queue. Each expires ``lease_ttl`` after it was inserted or
    # last renewed (:meth:`Store.renew`).
    @abc.abstractmethod
    async def leases(
        self,
        domain_id: str,
        *,
        pools: Collection[str] | None = None,
        users: Collection[str] | None = None,
    ) -> list[Lease]:
        """Leases of a domain, of some pools and of some users if given, oldest first."""

    @abc.abstractmethod
    async def lease(self, lease_id: str) -> Lease | None: ...
    @abc.abstractmethod
    async def insert_leases(self, leases: Sequence[Lease]) -> list[Lease]:
        """Store new leases, in one go; seat leases get their fencing tokens here.

        Fencing tokens come from one counter of the whole database: each is
        greater than every token handed out before it, on any node.
        """

    async def insert_lease(self, lease: Lease) -> Lease:
        (inserted,) = await self.insert_leases([lease])
        return inserted

    @abc.abstractmethod
    async def update_lease(self, lease: Lease) -> None:
        """Store a lease's call state (nothing else of a lease changes)."""

    @abc.abstractmethod
    async def delete_leases(self, lease_ids: Collection[str]) -> None:
        """End some leases (one statement whatever their number)."""

    @abc.abstractmethod
    async def waiters(self, domain_id: str, pools: Collection[str]) -> list[Waiter]:
        """The queues of some pools, in the order the sessions asked; expired
        places are not in them."""

    @abc.abstractmethod
    async def waiter(self, session_id: str) -> Waiter | None:
        """The queue place of a session, if it waits."""

    @abc.abstractmethod
    async def insert_waiter(self, waiter: Waiter) -> None: ...
    @abc.abstractmethod
    async def delete_waiter(self, session_id: str) -> None: ...
    @abc.abstractmethod
    async def expired_leases(self) -> list[Lease]:
        """Leases of every domain that nobody renewed within ``lease_ttl``, oldest first."""

    @abc.abstractmethod
    async def expired_waiters(self) -> list[Waiter]:
        """Queue places of every domain that nobody renewed within ``lease_ttl``."""

    @abc.abstractmethod
    async def pool_usage(
        self, domain_id: str, pools: Collection[str]
    ) -> dict[str, tuple[int, int]]:
        """(leases, leases in a call) of some pools of a domain, by pool; a pool
        without leases is left out."""

    @abc.abstractmethod
    async def seat_counts(self) -> list[tuple[str, str, int, int]]:
        """(domain, pool, seats, occupied) of every pool of every domain."""

    # The event log.
    @abc.abstractmethod
    async def add_events(self, events: list[Event]) -> list[StoredEvent]: ...
    @abc.abstractmethod
    async def events(self, domain_id: str, query: EventQuery) -> list[StoredEvent]:
        """The domain's events that ``query`` asks for, oldest first."""

    @abc.abstractmethod
    async def latest_events(self, domain_id: str, limit: int) -> list[StoredEvent]:
        """The ``limit`` newest events, oldest first."""

    # The history of queue lengths, and usage.
    @abc.abstractmethod
    async def record_queue(self, domain_id: str, pool: str, at: float, queued: int) -> None:
        """Record that the pool's queue is ``queued`` long from ``at`` on."""

    @abc.abstractmethod
    async def usage_period(self, domain_id: str, start: float, end: float) -> UsagePeriod:
        """The start of reading the usage history of ``[start, end)`` (see
        :func:`read_history`): each pool's state at ``start``, read by index,
        and the bounds of the period's events and samples."""

    @abc.abstractmethod
    async def usage_events(self, domain_id: str, first: int, after: int) -> list[EventRow]:
        """The domain's pool events with ``first <= id < after``, by id."""

    @abc.abstractmethod
    async def usage_samples(
        self, period: UsagePeriod, since: tuple[float, int], limit: int
    ) -> list[tuple[float, str, int, int]]:
        """Up to ``limit`` of the period's queue samples recorded by
        ``period.last_sample``, after ``since`` in (time, id) order: each as a
        :data:`~presence.core.usage.SampleRow` and its id."""

    async def usage_history(self, domain_id: str, start: float, end: float) -> History:
        """What the usage of the domain's pools in ``[start, end)`` is computed
        from, read by index in this transaction: each pool's state at
        ``start``, the period's pool events (by id) and its queue samples (by
        time, then in the order recorded), as
        :func:`presence.core.usage.history_of` takes them from the whole log."""
        period = await self.usage_period(domain_id, start, end)
        return await read_history(period, lambda: contextlib.nullcontext(self))

    # A domain's identity provider.
    @abc.abstractmethod
    async def identity(self, domain_id: str) -> Identity | None: ...
    @abc.abstractmethod
    async def set_identity(self, identity: Identity) -> None: ...
    @abc.abstractmethod
    async def delete_identity(self, domain_id: str) -> bool:
        """Remove the domain's identity provider; whether it had one."""

    # Webhook endpoints. A node delivers an endpoint's events while it holds
    # the endpoint's claim, which it renews like a lease; one that is not
    # renewed for ``lease_ttl`` is any node's to claim.
    @abc.abstractmethod
    async def webhooks(self, domain_id: str | None) -> list[tuple[Webhook, Progress]]:
        """A domain's endpoints (``None``: every domain's), oldest first."""

    @abc.abstractmethod
    async def webhook(self, domain_id: str, webhook_id: str) -> tuple[Webhook, Progress] | None: ...
    @abc.abstractmethod
    async def insert_webhook(self, webhook: Webhook, progress: Progress) -> None: ...
    @abc.abstractmethod
    async def update_webhook(self, webhook: Webhook, progress: Progress) -> None: ...
    @abc.abstractmethod
    async def delete_webhook(self, domain_id: str, webhook_id: str) -> None:
        """Delete an endpoint and its delivery log."""

    @abc.abstractmethod
    async def claim_webhooks(
        self, node_id: str, now: float, ttl: float
    ) -> list[tuple[str, str, float]]:
        """Claim for ``node_id`` the enabled endpoints whose claim ran out, renew
        its own claims once a third of ``ttl`` has passed, and return the
        endpoints it holds: (domain, endpoint, seconds the claim has left)."""

    @abc.abstractmethod
    async def advance_webhook(self, webhook_id: str, node_id: str, progress: Progress) -> bool:
        """Store an endpoint's progress if it is enabled and ``node_id`` holds
        it; whether it did."""

    @abc.abstractmethod
    async def add_delivery(self, delivery: Delivery) -> None:
        """Log an attempt; an endpoint's log keeps its latest attempts only."""

    @abc.abstractmethod
    async def deliveries(self, webhook_id: str, limit: int) -> list[Delivery]:
        """An endpoint's latest ``limit`` attempts, newest first."""

    # Capacity alerts.
    @abc.abstractmethod
    async def watched_pools(self) -> list[tuple[Pool, int, AlertState]]:
        """The pools of every domain whose occupancy the alerts watch (with a
        threshold, or an alert not yet recovered): each with its seats held
        and its alert state."""

    @abc.abstractmethod
    async def alert_state(self, domain_id: str, pool_id: str) -> AlertState: ...
    @abc.abstractmethod
    async def set_alert_state(self, domain_id: str, pool_id: str, state: AlertState) -> None: ...

    @abc.abstractmethod
    def notify(self, note: Note) -> None:
        """Publish ``note`` to every node once this transaction commits."""


#: Events (by id) or queue samples read per transaction of :func:`read_history`.
USAGE_CHUNK = 20_000


@dataclass(frozen=True)
class UsagePeriod:
    """Where a period's usage history starts, fixed in one transaction: each
    pool's state at ``start``; the period's events are those with
    ``first <= id < after``, its samples those timed in ``[start, end)`` with
    ``id <= last_sample``. The log and the samples only grow, so later
    transactions read the same rows within these bounds."""

    domain_id: str
    start: float
    end: float
    state: dict[str, PoolState]
    first: int
    after: int
    last_sample: int


async def read_history(
    period: UsagePeriod,
    transaction: Callable[[], AbstractAsyncContextManager[Tx]],
    chunk: int = USAGE_CHUNK,
) -> History:
    """The :class:`~presence.core.usage.History` of ``period`` (see
    :meth:`Tx.usage_history`), read ``chunk`` event ids or samples at a time,
    each chunk in a transaction of its own from ``transaction()`` (such as
    :meth:`Store.transaction`): between chunks, the node serves everything else
    (a SQLite transaction runs on the event loop and holds the file's lock)."""
    events: list[EventRow] = []
    for low in range(period.first, period.after, chunk):
        async with transaction() as tx:
            events += await tx.usage_events(period.domain_id, low, min(low + chunk, period.after))
        await asyncio.sleep(0)  # a transaction need not wait, nor let others run
    samples: list[SampleRow] = []
    since = (period.start, -1)
    while True:
        async with transaction() as tx:
            found = await tx.usage_samples(period, since, chunk)
        samples += [(at, pool, queued) for at, pool, queued, _ in found]
        await asyncio.sleep(0)
        if len(found) < chunk:
            return History(period.state, events, samples)
        since = (found[-1][0], found[-1][3])


class Store(abc.ABC):
    """A database of one or many nodes. Open it before use, close it after."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.bus = Bus()

    def subscribe(self, callback: Callable[[Note], Awaitable[None]]) -> None:
        """Call ``callback`` with every note from every node, in order."""
        self.bus.subscribe(callback)

    @abc.abstractmethod
    async def open(self, lease_ttl: float) -> None:
        """Connect, create the schema if needed and register this node."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Disconnect; leases stay until they expire, for their holders to reclaim."""

    @abc.abstractmethod
    def transaction(
        self, domain_id: str | None = None, *, deadline: float | None = None
    ) -> AbstractAsyncContextManager[Tx]:
        """A transaction; with ``domain_id`` it holds that domain's lock.

        With ``deadline`` (a :func:`time.monotonic` time), a transaction that
        cannot begin by then (its turn came too late) raises
        :exc:`~presence.errors.Overloaded` and does nothing.
        """

    @abc.abstractmethod
    async def renew(self, session_ids: Collection[str]) -> None:
        """Keep the leases and queue places of these sessions for another ``lease_ttl``.

        A node renews the sessions it serves, and only those: whatever it
        holds for a session it no longer serves expires by itself.
        """

    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether the database answers."""


def passed(deadline: float | None) -> bool:
    """Whether ``deadline`` (of :func:`time.monotonic`) passed."""
    return deadline is not None and time.monotonic() > deadline


def check_deadline(deadline: float | None) -> None:
    """Raise :exc:`Overloaded` once ``deadline`` passed."""
    if passed(deadline):
        raise Overloaded


class DomainTurns:
    """Lets a node's transactions of one domain run one at a time, in order of arrival."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def turn(self, domain_id: str) -> AsyncIterator[None]:
        """Wait for the domain's turn and hold it until the block ends."""
        entry = self._locks.get(domain_id)
        if entry is None:
            entry = self._locks[domain_id] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[domain_id]


class Bus:
    """Delivers notes to this node's subscribers, one at a time, in order.

    Backends feed it what their transactions published (and, for several
    nodes, what other nodes published); a subscriber that fails is logged and
    does not stop delivery to the others.
    """

    def __init__(self) -> None:
        self._subscribers: list[Callable[[Note], Awaitable[None]]] = []
        self._queue: asyncio.Queue[Note] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, callback: Callable[[Note], Awaitable[None]]) -> None:
        self._subscribers.append(callback)

    def deliver(self, notes: list[Note]) -> None:
        for note in notes:
            self._queue.put_nowait(note)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence-bus")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            note = await self._queue.get()
            for callback in self._subscribers:
                try:
                    await callback(note)
                except Exception:
                    logger.exception("subscriber failed on %s", note)
