"""The device WebSocket endpoint, ``/ws/device``.

It keeps the connection's own rules (the ``hello`` deadline, frame size, rate
limit, bad message count) and hands every parsed message to the coordinator.
"""

from __future__ import annotations

import asyncio
import time

from .. import wire
from ..coordinator import Coordinator
from ..errors import RateLimited, StorageError, Unauthorized
from ..session import Session
from .guard import TOO_MANY_CONNECTIONS, Gate, authenticated, counted
from .link import Link

RATE_LIMIT = 50  # messages in one second
BAD_MESSAGES = 5  # in one minute closes the connection


class _Limits:
    """A token bucket for the rate limit and the times of recent bad messages."""

    __slots__ = ("tokens", "at", "bad")

    def __init__(self) -> None:
        self.tokens = float(RATE_LIMIT)
        self.at = time.monotonic()
        self.bad: list[float] = []

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(RATE_LIMIT, self.tokens + (now - self.at) * RATE_LIMIT)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def too_many_bad(self) -> bool:
        now = time.monotonic()
        self.bad = [at for at in self.bad if now - at < 60] + [now]
        return len(self.bad) >= BAD_MESSAGES


class DeviceEndpoint:
    """``/ws/device``: a device session for each connection."""

    def __init__(self, coordinator: Coordinator, gate: Gate) -> None:
        self.coordinator = coordinator
        self.gate = gate

    async def __call__(self, link: Link) -> None:
        coordinator = self.coordinator
        session = coordinator.open_session(link)
        address = link.address
        async with counted(self.gate, address) as allowed:
            try:
                if allowed:
                    await _serve(link, coordinator, session, self.gate, address)
                else:
                    session.end(4429, wire.error_frame("rate_limited", TOO_MANY_CONNECTIONS))
            except asyncio.CancelledError:
                if not link.cut_off:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            finally:
                await coordinator.disconnected(session)
                await link.drain()


async def _serve(
    link: Link, coordinator: Coordinator, session: Session, gate: Gate, address: str
) -> None:
    limits = _Limits()
    deadline = time.monotonic() + coordinator.config.hello_timeout
    while not session.ended:
        if session.user is not None:
            # Not through wait_for: it costs each held session a suspended frame.
            frame = await link.receive()
        else:
            try:
                frame = await asyncio.wait_for(link.receive(), deadline - time.monotonic())
            except TimeoutError:
                text = "No hello arrived in time; connect again."
                session.end(4408, wire.error_frame("hello_timeout", text))
                return
        if frame is None:
            return
        if not limits.take():
            text = f"More than {RATE_LIMIT} messages in one second."
            session.end(4429, wire.error_frame("rate_limited", text))
            return
        try:
            message = wire.parse(frame)
            if session.user is not None:
                await coordinator.handle(session, message)
            elif not isinstance(message, wire.Hello):
                await session.error("not_logged_in", "Say hello first.")
            else:
                await _hello(coordinator, session, message, gate, address)
        except StorageError as exc:
            # The database is out of reach: say so, and let the device come back.
            session.end(1011, wire.error_frame(exc.code, exc.message))
        except wire.BadMessage as exc:
            if exc.code == "too_large":
                session.end(1009, wire.error_frame(exc.code, exc.message))
            elif limits.too_many_bad():
                session.end(4400, wire.error_frame(exc.code, exc.message))
            else:
                await session.error(exc.code, exc.message)


async def _hello(
    coordinator: Coordinator, session: Session, hello: wire.Hello, gate: Gate, address: str
) -> None:
    """Log in, unless the address failed to authenticate too often."""

    async def login() -> None:
        if not await coordinator.hello(session, hello) and session.user is None:
            raise Unauthorized("The token was refused.")  # counted as a failure

    try:
        await authenticated(gate, address, login)
    except RateLimited as exc:
        session.end(4429, wire.error_frame(exc.code, exc.message))
    except Unauthorized:
        pass  # the session was told so, and closed, by the coordinator
