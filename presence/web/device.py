"""The device WebSocket endpoint, ``/ws/device``.

It keeps the connection's own rules (the ``hello`` deadline, frame size, rate
limit, bad message count) and hands every parsed message to the node's
device protocol.
"""

from __future__ import annotations

import asyncio
import time

from .. import wire
from ..errors import StorageError
from ..node.protocol import DeviceProtocol
from ..node.session import Session
from .guard import TOO_MANY_CONNECTIONS, TOO_MANY_FAILURES, Gate, counted
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

    def __init__(self, protocol: DeviceProtocol, gate: Gate) -> None:
        self.protocol = protocol
        self.gate = gate

    async def __call__(self, link: Link) -> None:
        protocol = self.protocol
        session = protocol.open_session(link)
        address = link.address
        async with counted(self.gate, address) as allowed:
            try:
                if allowed:
                    await _serve(link, protocol, session, self.gate, address)
                else:
                    _close(link, 4429, "rate_limited", TOO_MANY_CONNECTIONS)
            except asyncio.CancelledError:
                if not link.cut_off:
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
            finally:
                await protocol.disconnected(session)
                await link.drain()


def _close(link: Link, close_code: int, code: str, text: str) -> None:
    """Close the connection with an error; the session ends as its connection does."""
    link.push(wire.error_frame(code, text))
    link.close(close_code)


async def _serve(
    link: Link, protocol: DeviceProtocol, session: Session, gate: Gate, address: str
) -> None:
    limits = _Limits()
    deadline = time.monotonic() + protocol.config.hello_timeout
    while not link.gone:
        if session.user is not None:
            # Not through wait_for: it costs each held session a suspended frame.
            frame = await link.receive()
        else:
            try:
                frame = await asyncio.wait_for(link.receive(), deadline - time.monotonic())
            except TimeoutError:
                _close(link, 4408, "hello_timeout", "No hello arrived in time; connect again.")
                return
        if frame is None:
            return
        if not limits.take():
            _close(link, 4429, "rate_limited", f"More than {RATE_LIMIT} messages in one second.")
            return
        try:
            message = wire.parse(frame)
            if session.user is not None:
                await protocol.handle(session, message)
            elif not isinstance(message, wire.Hello):
                await session.error("not_logged_in", "Say hello first.")
            else:
                await _hello(link, protocol, session, message, gate, address)
        except StorageError as exc:
            # The database is out of reach: say so, and let the device come back.
            _close(link, 1011, exc.code, exc.message)
        except wire.BadMessage as exc:
            if exc.code == "too_large":
                _close(link, 1009, exc.code, exc.message)
            elif limits.too_many_bad():
                _close(link, 4400, exc.code, exc.message)
            else:
                await session.error(exc.code, exc.message)


async def _hello(
    link: Link,
    protocol: DeviceProtocol,
    session: Session,
    hello: wire.Hello,
    gate: Gate,
    address: str,
) -> None:
    """Log in, unless the address failed to authenticate too often.

    The address's turn is held while the token is judged, not while the login
    is decided, nor while an identity provider's keys are fetched.
    """
    if hello.id_token is not None:
        await protocol.fetch_keys(hello)
    if not await gate.admit(address):
        _close(link, 4429, "rate_limited", TOO_MANY_FAILURES)
        return
    judged = False

    def judge(failed: bool) -> None:
        nonlocal judged
        judged = True
        gate.judged(address, failed)

    try:
        await protocol.hello(session, hello, judge)
    finally:
        if not judged:  # the token was never looked up: nothing to hold against it
            gate.judged(address, failed=False)
