"""Per client address: a cap on open connections, and a brake on token guessing.

Addresses are the peer's, or behind a trusted proxy the forwarded client's,
by uvicorn's rules. Failed authentications are remembered for one minute; an
address with too many of them is refused any authentication, valid tokens
included, until they age out.

An authentication under way counts as a failure until it is judged, so that
guesses sent at once are not judged past the limit: those beyond it wait
their turn. Honest clients behind one address (an office behind a NAT) that
log in at once are delayed while others are judged, never refused.

:class:`Guard` is the rule, without I/O or waiting. Endpoints pass through a
:class:`Gate`: :class:`LocalGate` keeps a guard in this process; with
``--workers``, the supervisor keeps one for all its workers
(:mod:`presence.workers`), so the limits hold for the node as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

from ..errors import RateLimited, Unauthorized

T = TypeVar("T")

WINDOW = 60.0  # seconds a failed authentication counts against its address
_PRUNE_AT = 10_000  # remembered addresses before the expired ones are dropped

TOO_MANY_CONNECTIONS = "Too many connections from your address; close some first."
TOO_MANY_FAILURES = "Too many failed authentications from your address; wait a minute."


class Guard:
    """The limits of one node, over addresses; ``clock`` gives seconds."""

    def __init__(
        self,
        max_connections: int,
        max_failures: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_connections = max_connections
        self.max_failures = max_failures
        self.clock = clock
        self._open: dict[str, int] = {}
        self._failures: dict[str, deque[float]] = {}
        self._judging: dict[str, int] = {}

    def connect(self, address: str) -> bool:
        """Count a new connection; ``False`` (and not counted) if over the cap."""
        count = self._open.get(address, 0)
        if count >= self.max_connections:
            return False
        self._open[address] = count + 1
        return True

    def disconnect(self, address: str) -> None:
        _take(self._open, address)

    def admit(self, address: str) -> bool | None:
        """Whether an authentication from ``address`` may be judged now.

        ``True``: it is counted as under way; call :meth:`judged` once it is.
        ``False``: refused, the address failed too often lately. ``None``: not
        yet, as those under way could still fail; ask again after one is judged.
        """
        failures = self._recent_failures(address)
        if failures >= self.max_failures:
            return False
        judging = self._judging.get(address, 0)
        if failures + judging >= self.max_failures:
            return None
        self._judging[address] = judging + 1
        return True

    def judged(self, address: str, failed: bool) -> None:
        """An admitted authentication is over; ``failed``: its token was refused."""
        _take(self._judging, address)
        if failed:
            if len(self._failures) >= _PRUNE_AT:
                for key in list(self._failures):
                    self._recent_failures(key)
            self._failures.setdefault(address, deque()).append(self.clock())

    def _recent_failures(self, address: str) -> int:
        """The failures of the last :data:`WINDOW`; forgets older ones."""
        failures = self._failures.get(address)
        if failures is None:
            return 0
        horizon = self.clock() - WINDOW
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return len(failures)


def _take(counts: dict[str, int], address: str) -> None:
    count = counts.get(address, 0) - 1
    if count > 0:
        counts[address] = count
    else:
        counts.pop(address, None)


class Gate(Protocol):
    """A node's limits as endpoints use them; ``start`` and ``stop`` bracket
    the node's lifespan."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def connect(self, address: str) -> bool:
        """Count a new connection; ``False`` (and not counted) if over the cap."""
        ...

    def disconnect(self, address: str) -> None: ...

    async def admit(self, address: str) -> bool:
        """Wait until an authentication from ``address`` may be judged: ``True``,
        and then :meth:`judged` must follow once; ``False``: refused."""
        ...

    def judged(self, address: str, failed: bool) -> None: ...


class LocalGate:
    """:class:`Gate` kept in this process: a :class:`Guard`, and the
    authentications waiting for their turn, first come first judged."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._waiting: dict[str, deque[asyncio.Future[bool]]] = {}

    async def start(self) -> None:
        pass  # nothing to open

    async def stop(self) -> None:
        pass

    async def connect(self, address: str) -> bool:
        return self.guard.connect(address)

    def disconnect(self, address: str) -> None:
        self.guard.disconnect(address)

    async def admit(self, address: str) -> bool:
        if address not in self._waiting:
            verdict = self.guard.admit(address)
            if verdict is not None:
                return verdict
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(address, deque()).append(turn)
        try:
            return await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.judged(address, failed=False)  # admitted, but gone before its turn
            raise

    def judged(self, address: str, failed: bool) -> None:
        self.guard.judged(address, failed)
        # While some wait, one is under way: each judgement lets the next ones in.
        waiting = self._waiting.get(address)
        while waiting:
            if waiting[0].done():  # cancelled while waiting
                waiting.popleft()
                continue
            verdict = self.guard.admit(address)
            if verdict is None:
                return
            waiting.popleft().set_result(verdict)
        self._waiting.pop(address, None)


async def authenticated(gate: Gate, address: str, authenticate: Callable[[], Awaitable[T]]) -> T:
    """Run ``authenticate`` once the client's address may be judged (else raise
    :exc:`RateLimited`); its :exc:`Unauthorized` counts as a failure."""
    if not await gate.admit(address):
        raise RateLimited(TOO_MANY_FAILURES)
    failed = False
    try:
        return await authenticate()
    except Unauthorized:
        failed = True
        raise
    finally:
        gate.judged(address, failed)


@contextlib.asynccontextmanager
async def counted(gate: Gate, address: str) -> AsyncIterator[bool]:
    """Count a WebSocket against its address while open; yields whether it may stay."""
    allowed = await gate.connect(address)
    try:
        yield allowed
    finally:
        if allowed:
            gate.disconnect(address)
