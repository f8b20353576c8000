"""Per client address: a cap on open connections, and a brake on token guessing.

Addresses are the peer's, or behind a trusted proxy the forwarded client's,
by uvicorn's rules. Failed authentications are remembered for one minute; an
address with too many of them is refused any authentication, valid tokens
included, until they age out.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from ..errors import RateLimited, Unauthorized

T = TypeVar("T")

WINDOW = 60.0  # seconds a failed authentication counts against its address
_PRUNE_AT = 10_000  # remembered addresses before the expired ones are dropped


class Guard:
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

    def connect(self, address: str) -> bool:
        """Count a new connection; ``False`` (and not counted) if over the cap."""
        count = self._open.get(address, 0)
        if count >= self.max_connections:
            return False
        self._open[address] = count + 1
        return True

    def disconnect(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def blocked(self, address: str) -> bool:
        """Whether the address failed to authenticate too often lately."""
        failures = self._failures.get(address)
        if failures is None:
            return False
        self._forget_old(failures)
        if not failures:
            del self._failures[address]
        return len(failures) >= self.max_failures

    def failed(self, address: str) -> None:
        if len(self._failures) >= _PRUNE_AT:
            for key in list(self._failures):
                self._forget_old(self._failures[key])
                if not self._failures[key]:
                    del self._failures[key]
        self._failures.setdefault(address, deque()).append(self.clock())

    def _forget_old(self, failures: deque[float]) -> None:
        horizon = self.clock() - WINDOW
        while failures and failures[0] < horizon:
            failures.popleft()


async def authenticated(guard: Guard, address: str, authenticate: Callable[[], Awaitable[T]]) -> T:
    """Run ``authenticate`` unless the client's address is blocked; count its failure."""
    if guard.blocked(address):
        raise RateLimited("Too many failed authentications from your address; wait a minute.")
    try:
        return await authenticate()
    except Unauthorized:
        guard.failed(address)
        raise


@contextlib.contextmanager
def counted(guard: Guard, address: str) -> Iterator[bool]:
    """Count a WebSocket against its address while open; yields whether it may stay."""
    allowed = guard.connect(address)
    try:
        yield allowed
    finally:
        if allowed:
            guard.disconnect(address)


TOO_MANY_CONNECTIONS = "Too many connections from your address; close some first."
