"""The server's WebSocket connections: websockets' sans-I/O protocol on an asyncio transport.

uvicorn parses the HTTP request; an upgrade to a WebSocket is handed here
(:mod:`.http`), and from then on a :class:`Link` is the connection's protocol.
Each connection runs its endpoint in a task, which reads messages with
:meth:`Link.receive` and answers with :meth:`Link.send`; shared tasks
(announcements, notes) use :meth:`Link.push`, which never waits.

Frames go straight to the transport, and a text pushed to many connections is
framed once. Once the transport's buffer is full, frames wait in a bounded
outbox. A device that lets the outbox fill has stopped reading: it is cut off,
its connection aborted and its endpoint's task cancelled, which then frees
what it held. Memory per connection stays bounded and no shared task ever
waits on one device.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast

from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from ..metrics import METRICS

MAX_OUTBOX = 64  # frames queued for a device that is not reading
DRAIN_TIMEOUT = 2.0  # seconds an ending endpoint waits for its last frames to go
CLOSE_TIMEOUT = 5.0  # seconds a closed connection waits for the peer's answer

logger = logging.getLogger("uvicorn.error")  # the server log, as for HTTP

#: What serves a WebSocket path: a coroutine run for each connection.
Endpoint = Callable[["Link"], Awaitable[None]]


def _frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


#: A text as a frame: a change pushed to every subscriber is framed once.
_framed = functools.lru_cache(maxsize=64)(_frame)


class Link(asyncio.Protocol):
    """One accepted WebSocket; ``address`` is its client's (the forwarded one behind a proxy)."""

    __slots__ = (
        "transport", "conn", "address", "connections", "owner", "inbox", "waiter", "fragments",
        "text", "outbox", "flushed", "paused", "reading", "done", "closing", "cut_off", "timer",
    )  # fmt: skip

    def __init__(
        self,
        transport: asyncio.Transport,
        conn: ServerProtocol,
        address: str,
        connections: set[Any],
    ) -> None:
        self.transport = transport
        self.conn = conn
        self.address = address
        self.connections = connections  # uvicorn's, which it closes on shutdown
        self.owner: asyncio.Task[None] | None = None
        self.inbox: deque[str | bytes] = deque()
        self.waiter: asyncio.Future[str | bytes | None] | None = None
        self.fragments: list[bytes] = []
        self.text = True
        self.outbox: deque[bytes | int] = deque()  # frames, and a close code last
        self.flushed: asyncio.Future[None] | None = None
        self.paused = False  # the transport's buffer is full
        self.reading = True
        self.done = False  # no message comes any more
        self.closing = False  # nothing is sent any more, but what is queued
        self.cut_off = False
        self.timer: asyncio.TimerHandle | None = None
        connections.add(self)

    @property
    def gone(self) -> bool:
        """Whether the connection is closing or closed: nothing more comes or goes."""
        return self.closing or self.done

    def serve(self, endpoint: Endpoint) -> asyncio.Task[None]:
        """Run ``endpoint`` on this connection in its own task, the link's owner."""
        self.owner = asyncio.get_running_loop().create_task(self._run(endpoint))
        return self.owner

    async def _run(self, endpoint: Endpoint) -> None:
        try:
            await endpoint(self)
        except Exception:
            logger.exception("WebSocket endpoint failed")
            self.close(1011)
        else:
            self.close(1000)

    # What endpoints and sessions use.

    async def receive(self) -> str | bytes | None:
        """The next message, or ``None`` once the connection closed."""
        if self.inbox:
            message = self.inbox.popleft()
            if not self.inbox and not self.reading and not self.done:
                self.reading = True
                self.transport.resume_reading()
            return message
        if self.done:
            return None
        self.waiter = asyncio.get_running_loop().create_future()
        return await self.waiter

    async def send(self, frame: str) -> None:
        """Send from the connection's own task; wait while frames queue behind a full buffer."""
        self._write(_frame(frame))
        if self.outbox:
            await self.drain()

    def push(self, frame: str) -> None:
        """Queue a frame without waiting; a device that reads nothing is cut off."""
        self._write(_framed(frame))

    def close(self, code: int) -> None:
        """Close once everything queued before is sent."""
        if not self.closing:
            if self.paused or self.outbox:
                self._queue(code)
            else:
                self._send_close(code)
            self.closing = True

    async def drain(self) -> None:
        """Wait, a bounded time, until queued frames and the close are handed to the transport."""
        if self.outbox:
            if self.flushed is None:
                self.flushed = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await asyncio.shield(self.flushed)
            except TimeoutError:
                pass

    def shutdown(self) -> None:
        """uvicorn's call on every connection once the server stops."""
        self.close(1012)

    # The asyncio protocol.

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        for event in cast(list[Frame], conn.events_received()):
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self.text = opcode is Opcode.TEXT
                self.fragments = [bytes(event.data)]
            elif opcode is Opcode.CONT:
                self.fragments.append(bytes(event.data))
            else:
                continue  # websockets answers pings and closes itself
            if event.fin:
                self._message()
        self._flush_conn()
        if conn.state is not State.OPEN:
            # A close came in, ours was answered, or the connection failed.
            self.closing = True
            self.outbox.clear()
            self._flushed()
            self._end_input()

    def eof_received(self) -> None:
        self.conn.receive_eof()
        self._flush_conn()
        self._end_input()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        while self.outbox and not self.paused:
            item = self.outbox.popleft()
            if isinstance(item, int):
                self._send_close(item)
            else:
                self.transport.write(item)
        if not self.outbox:
            self._flushed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True
        self.outbox.clear()
        self._flushed()
        self._end_input()
        if self.timer is not None:
            self.timer.cancel()

    # Inside.

    def _message(self) -> None:
        data = self.fragments[0] if len(self.fragments) == 1 else b"".join(self.fragments)
        self.fragments = []
        if self.done:
            return
        message: str | bytes = data
        if self.text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                logger.info("%s sent invalid UTF-8; closed 1007", self.address)
                self.conn.fail(1007, "invalid UTF-8")
                self._end_input()
                return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(message)
            return
        self.inbox.append(message)
        if self.reading:
            self.reading = False
            self.transport.pause_reading()

    def _end_input(self) -> None:
        self.done = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.waiter = None

    def _write(self, data: bytes) -> None:
        if self.closing:
            return
        if self.paused or self.outbox:
            self._queue(data)
        else:
            self.transport.write(data)

    def _queue(self, item: bytes | int) -> None:
        if len(self.outbox) < MAX_OUTBOX:
            self.outbox.append(item)
            return
        METRICS.cut_off.inc("not_reading")
        self.cut_off = True
        self.closing = True
        self.outbox.clear()
        self._flushed()
        self.transport.abort()
        if self.owner is not None:
            self.owner.cancel()

    def _send_close(self, code: int) -> None:
        if self.conn.state is State.OPEN:
            self.conn.send_close(code)
            self._flush_conn()
            self._end_input()
            if not self.reading:  # to read the peer's answer
                self.reading = True
                self.transport.resume_reading()
            self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def _flush_conn(self) -> None:
        """Send what websockets has to say: pongs, close frames, and the end of the stream."""
        for data in self.conn.data_to_send():
            if data:
                self.transport.write(data)
            else:
                self.transport.close()

    def _flushed(self) -> None:
        if self.flushed is not None and not self.flushed.done():
            self.flushed.set_result(None)
        self.flushed = None
