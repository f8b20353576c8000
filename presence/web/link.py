"""The server's WebSocket connections: websockets' sans-I/O protocol on an asyncio transport.

uvicorn parses the HTTP request; an upgrade to a WebSocket is handed here
(:mod:`.http`), and from then on a :class:`Link` is the connection's protocol.
Each connection runs its endpoint in a task, which reads messages with
:meth:`Link.receive` and answers with :meth:`Link.send`; shared tasks
(announcements, notes) use :meth:`Link.push`, which never waits.

Frames go straight to the transport, and a text pushed to many connections is
framed once. Once the transport's buffer is full, frames (pongs included) wait
in a bounded outbox. A device that lets the outbox fill has stopped reading:
it is cut off, its connection aborted and its endpoint's task cancelled,
which then frees what it held. Memory per connection stays bounded and no
shared task ever waits on one device.

What a client sends is bounded as it arrives, before any endpoint sees it: a
message takes at most :data:`MAX_FRAGMENTS` frames and :data:`MAX_MESSAGE`
bytes, headers included (so empty continuation frames are not free), and a
client sends at most :data:`MAX_FRAMES_PER_SECOND` frames of any kind a second
(a token bucket of as many, refilled at that rate). Past a bound the client
gets the protocol's ``error`` (``too_large`` then close 1009, or
``rate_limited`` then close 4429) and nothing more it sends is used. Its input
is fed to websockets a slice at a time, so a flood is caught within one
slice, and the pongs websockets owes it are dropped.

A connection's life is one :class:`Phase`, which moves only as
:data:`MOVES` allows.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from ..metrics import METRICS
from ..wire import MAX_FRAME, error_frame

MAX_OUTBOX = 64  # frames queued for a device that is not reading
DRAIN_TIMEOUT = 2.0  # seconds an ending endpoint waits for its last frames to go
CLOSE_TIMEOUT = 5.0  # seconds a closed connection waits for the peer's answer
#: Frames one message may take. Browsers and our clients send one.
MAX_FRAGMENTS = 64
#: Bytes one message may take on the wire, frame headers included: the largest
#: message (64 KiB of text) in MAX_FRAGMENTS frames of the longest header.
MAX_MESSAGE = MAX_FRAME + MAX_FRAGMENTS * 14
#: Frames of any kind (data, continuation, ping, pong) a client may send in a
#: second: four times what a device at its limit of 50 messages a second sends.
MAX_FRAMES_PER_SECOND = 200
_FULL = float(MAX_FRAMES_PER_SECOND)
#: Bytes of input fed to websockets at once: a flood is caught within one slice.
SLICE = 4096

TOO_LARGE = error_frame(
    "too_large", f"A message may take at most {MAX_FRAGMENTS} frames and {MAX_MESSAGE} bytes."
)
FLOODING = error_frame("rate_limited", f"More than {MAX_FRAMES_PER_SECOND} frames in one second.")

logger = logging.getLogger("uvicorn.error")  # the server log, as for HTTP

#: What serves a WebSocket path: a coroutine run for each connection.
Endpoint = Callable[["Link"], Awaitable[None]]


class Phase(enum.Enum):
    """Where a connection is in its life."""

    #: Messages come in and go out.
    OPEN = "open"
    #: Our close is queued or sent: what was queued before still goes; input
    #: is read only for the client's answer.
    CLOSING = "closing"
    #: The end of our stream is sent (after the close handshake, or on a
    #: failure): what the client still sends is dropped until it ends its own
    #: stream, or CLOSE_TIMEOUT passes. Closing at once would answer its
    #: unread input with a reset, which can destroy our last frames unread.
    ENDING = "ending"
    #: The transport is gone.
    CLOSED = "closed"
    #: Aborted for not reading, its endpoint's task cancelled.
    CUT_OFF = "cut off"


#: The moves a connection's phase may make; any other is a bug.
MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.OPEN: frozenset({Phase.CLOSING, Phase.ENDING, Phase.CLOSED, Phase.CUT_OFF}),
    Phase.CLOSING: frozenset({Phase.ENDING, Phase.CLOSED, Phase.CUT_OFF}),
    Phase.ENDING: frozenset({Phase.CLOSED}),
    Phase.CLOSED: frozenset(),
    Phase.CUT_OFF: frozenset(),
}


class InvalidMove(RuntimeError):
    """A phase change that :data:`MOVES` does not allow."""


def _frame(text: str) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


#: A text as a frame: a change pushed to every subscriber is framed once.
_framed = functools.lru_cache(maxsize=64)(_frame)


def _cost(payload: bytes) -> int:
    """A client frame's bytes on the wire: its payload, length and mask (RFC 6455, 5.2)."""
    size = len(payload)
    return size + (6 if size < 126 else 8 if size < 65536 else 14)


class Link(asyncio.Protocol):
    """One accepted WebSocket; ``address`` is its client's (the forwarded one behind a proxy)."""

    __slots__ = (
        "transport", "conn", "address", "connections", "owner", "phase", "inbox", "waiter",
        "fragments", "text", "size", "allowance", "counted", "outbox", "flushed", "paused",
        "reading", "timer",
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
        self.phase = Phase.OPEN
        # Lists, not deques: a held connection's queues are empty nearly always,
        # and an empty deque takes 760 bytes against a list's 56; both stay short.
        self.inbox: list[str | bytes] = []
        self.waiter: asyncio.Future[str | bytes | None] | None = None
        self.fragments: list[bytes] = []  # of a message still coming
        self.text = True
        self.size = 0  # its bytes on the wire so far
        self.allowance = _FULL  # frames it may send now
        self.counted = time.monotonic()  # when the allowance was last counted
        self.outbox: list[bytes | int] = []  # frames, and a close code
        self.flushed: asyncio.Future[None] | None = None
        self.paused = False  # the transport's buffer is full
        self.reading = True
        self.timer: asyncio.TimerHandle | None = None
        connections.add(self)

    @property
    def gone(self) -> bool:
        """Whether nothing more can be sent or received: closing, ending, lost or cut off."""
        return self.phase is not Phase.OPEN

    @property
    def cut_off(self) -> bool:
        """Whether the server aborted the connection and cancelled its endpoint's task."""
        return self.phase is Phase.CUT_OFF

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
        """The next message, or ``None`` once no more can come."""
        if self.inbox:
            message = self.inbox.pop(0)
            if not self.inbox and not self.reading and self.phase is Phase.OPEN:
                self.reading = True
                self.transport.resume_reading()
            return message
        if self.phase is not Phase.OPEN:
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
        """Close once everything queued before is sent; no message is received after."""
        if self.phase is Phase.OPEN:
            self._move(Phase.CLOSING)
            if self.paused or self.outbox:
                self._queue(code)
            else:
                self._send_close(code)

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
        if self.phase is Phase.ENDING:
            return  # dropped: see Phase.ENDING
        if len(data) <= SLICE:
            self._receive(data)
            return
        for start in range(0, len(data), SLICE):
            if not self._receive(data[start : start + SLICE]):
                return

    def eof_received(self) -> None:
        self.conn.receive_eof()
        self._flush_conn()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        while self.outbox and not self.paused:
            item = self.outbox.pop(0)
            if isinstance(item, int):
                self._send_close(item)
            else:
                self.transport.write(item)
        if not self.outbox:
            self._flushed()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self.phase is not Phase.CUT_OFF:
            self._move(Phase.CLOSED)
        self.outbox.clear()
        self._flushed()
        if self.timer is not None:
            self.timer.cancel()

    # Inside.

    def _move(self, to: Phase) -> None:
        if to not in MOVES[self.phase]:
            raise InvalidMove(f"a connection cannot go from {self.phase.value} to {to.value}")
        self.phase = to
        # No message comes in any more.
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
        self.waiter = None

    def _receive(self, data: bytes) -> bool:
        """Feed ``data`` to websockets and act on its frames; whether to feed more."""
        conn = self.conn
        conn.receive_data(data)
        events = cast(list[Frame], conn.events_received())
        for event in events:
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self.text = opcode is Opcode.TEXT
                payload = bytes(event.data)
                self.fragments = [payload]
                self.size = _cost(payload)
            elif opcode is Opcode.CONT:
                payload = bytes(event.data)
                self.fragments.append(payload)
                self.size += _cost(payload)
            else:
                continue  # websockets answers pings and closes itself
            if self.size > MAX_MESSAGE or len(self.fragments) > MAX_FRAGMENTS:
                self._refuse(1009, TOO_LARGE)
                return False
            if event.fin:
                self._message()
                if self.phase is Phase.ENDING:
                    return False  # refused: not UTF-8
        if self._flooding(len(events)):
            METRICS.cut_off.inc("flooding")
            self._refuse(4429, FLOODING)
            return False
        if isinstance(conn.parser_exc, PayloadTooBig) and self.phase is Phase.OPEN:
            # websockets refused a frame on its header and queued the close: say why first.
            self.outbox.clear()
            self.transport.write(_frame(TOO_LARGE))
        self._flush_conn()
        return self.phase is Phase.OPEN or self.phase is Phase.CLOSING

    def _flooding(self, frames: int) -> bool:
        """Take ``frames`` just received from the allowance; whether it ran out."""
        now = time.monotonic()
        refilled = self.allowance + (now - self.counted) * MAX_FRAMES_PER_SECOND
        self.allowance = min(_FULL, refilled) - frames
        self.counted = now
        return self.allowance < 0

    def _message(self) -> None:
        fragments = self.fragments
        data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
        self.fragments = []
        if self.phase is not Phase.OPEN:
            return
        message: str | bytes = data
        if self.text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                logger.info("%s sent invalid UTF-8; closed 1007", self.address)
                self._refuse(1007)
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

    def _refuse(self, code: int, error: str | None = None) -> None:
        """Fail the connection with ``code``, after ``error`` if it is open.

        It misbehaved: its messages not yet received, what waits for it and the
        pongs websockets owes it are dropped. If its close came with the misdeed,
        the closing handshake just ends.
        """
        self.inbox.clear()
        if self.conn.close_rcvd is not None:
            self._flush_conn()
            return
        self.conn.data_to_send()
        if error is not None and self.phase is Phase.OPEN:
            self.outbox.clear()
            self.transport.write(_frame(error))
        self.conn.fail(code)
        self._flush_conn()

    def _write(self, data: bytes) -> None:
        if self.phase is not Phase.OPEN:
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
        self._move(Phase.CUT_OFF)
        self.inbox.clear()
        self.outbox.clear()
        self._flushed()
        self.transport.abort()
        if self.owner is not None:
            self.owner.cancel()

    def _send_close(self, code: int) -> None:
        if self.conn.state is State.OPEN:
            self.conn.send_close(code)
            self._flush_conn()
            if not self.reading:  # to read the peer's answer
                self.reading = True
                self.transport.resume_reading()
            self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def _flush_conn(self) -> None:
        """Send what websockets has to say: pongs, close frames, and the end of the stream.

        Behind a full buffer they wait in the outbox like any frame, so a client
        that pings without reading is cut off, not buffered for. With the end of
        the stream they go at once, since nothing follows them, and what still
        waits in the outbox is dropped.
        """
        writes = self.conn.data_to_send()
        if not writes or self.phase is Phase.CUT_OFF:
            return
        if writes[-1]:
            for data in writes:
                if self.paused or self.outbox:
                    self._queue(data)
                    if self.cut_off:
                        return
                else:
                    self.transport.write(data)
            return
        self.outbox.clear()
        self._flushed()
        self.transport.writelines(writes[:-1])
        self.transport.write_eof()
        self._move(Phase.ENDING)
        if not self.reading:  # to see the end of the client's stream
            self.reading = True
            self.transport.resume_reading()
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.transport.abort)

    def _flushed(self) -> None:
        if self.flushed is not None and not self.flushed.done():
            self.flushed.set_result(None)
        self.flushed = None
