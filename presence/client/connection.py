"""One WebSocket connection of a device client: its frames, heartbeats and death.

A connection that stops answering is dead even when TCP does not say so (a
stalled proxy, a laptop waking up, a route gone): after each heartbeat the
server must say something within a heartbeat interval, or the connection is
aborted and its reader sees it closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from .. import wire
from .errors import ConnectionFailed, ProtocolViolation

Message = dict[str, Any]

#: Seconds a closing connection waits for the server's answer to its close.
CLOSE_TIMEOUT = 2.0
#: Until a welcome says the heartbeat interval: heartbeats per lease time (which
#: each ``heartbeat_ack`` says), as the server's defaults have it.
BEATS_PER_LEASE = 3

logger = logging.getLogger(__name__)


class Lost(Exception):
    """The connection is over; the client connects again."""


class Connection:
    """A device's connection: send and receive messages, and once it is
    authenticated, heartbeats (:meth:`keep_alive`).

    ``interval`` is the heartbeat interval once known (the welcome's, else a
    third of the lease time an ack gave); ``pending`` the future a call's
    message waits on for its answer.
    """

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name  # for the log
        self.heard_at = asyncio.get_running_loop().time()
        self.interval: float | None = None
        self.welcomed = False
        self.authenticated = False
        self.pending: asyncio.Future[Message] | None = None
        self._acked = asyncio.Event()
        self._beating: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, name: str, timeout: float, proxy: str | Literal[True] | None
    ) -> Connection:
        """Open a connection within ``timeout``; raise :exc:`ConnectionFailed`."""
        try:
            ws = await connect(
                url,
                open_timeout=timeout,
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,  # heartbeats are the protocol's own
                compression=None,
                max_size=wire.MAX_FRAME,
                proxy=proxy,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectionFailed(f"Cannot open a WebSocket to {url}: {exc}") from exc
        return cls(ws, name)

    async def send(self, message: Message) -> None:
        """Send a message; raises websockets' ``ConnectionClosed``."""
        await self.ws.send(json.dumps(message))

    async def receive(self) -> Message:
        """The next message; raises ``ConnectionClosed``, or
        :exc:`ProtocolViolation` for a frame that is not one."""
        frame = await self.ws.recv()
        try:
            message = wire.parse_object(frame)
        except wire.BadMessage as exc:
            raise ProtocolViolation(f"The server's frame is not a message: {exc.message}") from None
        if not isinstance(message.get("type"), str):
            raise ProtocolViolation(f"The server's frame has no type: {str(message)[:200]}")
        self.heard_at = asyncio.get_running_loop().time()
        if message["type"] == "heartbeat_ack":
            lease_ttl = seconds(message.get("expires_in"))
            if not self.welcomed and lease_ttl is not None:
                self.interval = lease_ttl / BEATS_PER_LEASE
            self._acked.set()
        elif message["type"] == "welcome":
            self.interval = seconds(message.get("heartbeat_interval"))
            if self.interval is None:
                raise ProtocolViolation(f"A welcome without heartbeat_interval: {message}")
            self.welcomed = True
        return message

    def answer(self, message: Message) -> None:
        """Hand ``message`` to the call waiting for an answer."""
        if self.pending is not None and not self.pending.done():
            self.pending.set_result(message)

    def keep_alive(self, timeout: float) -> None:
        """The server took the login (a welcome, a queue place or a refused seat):
        send heartbeats from now on. ``timeout``: for the first ack, when
        the interval is not known yet."""
        self.authenticated = True
        if self._beating is None:
            self._beating = asyncio.create_task(self._heartbeats(timeout))

    async def _heartbeats(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        seq = 0
        try:
            while True:
                seq += 1
                sent = loop.time()
                self._acked.clear()
                await self.send({"type": "heartbeat", "seq": seq})
                if self.interval is None:  # learnt from this heartbeat's answer
                    await asyncio.wait_for(self._acked.wait(), timeout)
                assert self.interval is not None
                await asyncio.sleep(sent + self.interval - loop.time())
                if self.heard_at < sent:
                    raise TimeoutError
        except TimeoutError:
            logger.info("%s: a heartbeat went unanswered; connecting again", self.name)
            self.ws.transport.abort()
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        """Close (a bounded wait), stop the heartbeats, and fail a waiting call with :exc:`Lost`."""
        if self._beating is not None:
            self._beating.cancel()
        if self.pending is not None and not self.pending.done():
            self.pending.set_exception(Lost())
        await self.ws.close()


def seconds(value: Any) -> float | None:
    """``value`` if it is a positive number, else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
