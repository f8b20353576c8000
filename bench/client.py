"""A lean WebSocket client for the load generator.

Each :class:`Socket` is an :class:`asyncio.Protocol` around the sans-I/O
:class:`websockets.client.ClientProtocol`: no task and no queue per
connection, so one process holds thousands of sessions and the client's own
cost stays small beside the server's. Text frames, the bulk of what servers
send, are read without the protocol's parser. Every frame is stamped with
``time.monotonic()`` the moment it is read: on Linux that is the system-wide
``CLOCK_MONOTONIC``, so stamps of different processes compare.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

Message = dict[str, Any]
#: Called with (socket, stamp, message) for every frame that no waiter took.
Listener = Callable[["Socket", float, Message], None]


class Closed(Exception):
    """The connection closed while a frame was awaited."""


class Socket(asyncio.Protocol):
    """One client connection; :meth:`request` sends a frame and awaits the answer.
    ``ended`` is done once the connection is gone, whoever closed it."""

    def __init__(self, url: str, listener: Listener | None = None) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed = False
        self._types: frozenset[str] = frozenset()
        self._buffer = bytearray()  # frames read after the handshake, not yet whole
        self._waiter: asyncio.Future[tuple[float, Message]] | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, path: str, listener: Listener | None, local_host: str
    ) -> Socket:
        """Connect from ``local_host`` (any 127.x.y.z: devices come from many addresses)."""
        loop = asyncio.get_running_loop()
        _, socket = await loop.create_connection(
            lambda: cls(f"ws://{host}:{port}{path}", listener),
            host,
            port,
            local_addr=(local_host, 0),
        )
        await socket.opened
        return socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        stamp = time.monotonic()
        if self.protocol.state is State.OPEN:
            self._buffer += data
            self._read_frames(stamp)
        else:  # the handshake (the server speaks only after hello), or the closing
            self._feed(stamp, data)

    def _read_frames(self, stamp: float) -> None:
        """Take whole frames from the buffer: unfragmented text frames are parsed here,
        which costs a fraction of the protocol's parser; every other frame goes to the
        protocol, whole, so that it answers closes and pings."""
        buffer, start = self._buffer, 0
        while len(buffer) - start >= 2:
            length, head = buffer[start + 1], 2
            if length >= 126:  # servers never mask: only the extended lengths
                head = 4 if length == 126 else 10
                if len(buffer) - start < head:
                    break
                length = int.from_bytes(buffer[start + 2 : start + head], "big")
            end = start + head + length
            if end > len(buffer):
                break
            if buffer[start] == 0x81:  # FIN and text
                self._deliver(stamp, json.loads(buffer[start + head : end]))
            else:
                self._feed(stamp, bytes(buffer[start:end]))
            start = end
        del buffer[:start]

    def _feed(self, stamp: float, data: bytes) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if self.opened.cancelled():  # whoever opened it stopped waiting
                    self.close()
                elif self.protocol.handshake_exc is not None:
                    self.opened.set_exception(self.protocol.handshake_exc)
                else:
                    self.opened.set_result(None)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                self._deliver(stamp, json.loads(bytes(event.data)))
        self._flush()  # a close or pong the protocol answers by itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ended.set_result(None)
        if not self.opened.done():
            self.opened.set_exception(exc or Closed("the handshake did not complete"))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(Closed(f"closed while awaiting {sorted(self._types)}"))

    def _deliver(self, stamp: float, message: Message) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and message.get("type") in self._types:
            self._waiter = None
            waiter.set_result((stamp, message))
        elif self.listener is not None:
            self.listener(self, stamp, message)

    def send(self, message: Message) -> float:
        """Send a frame now; return the moment it was written."""
        if self.closed or self.protocol.state is not State.OPEN:
            raise Closed("send on a closed connection")
        self.protocol.send_text(json.dumps(message, separators=(",", ":")).encode())
        stamp = time.monotonic()
        self._flush()
        return stamp

    def request(
        self, message: Message, *types: str
    ) -> tuple[float, asyncio.Future[tuple[float, Message]]]:
        """Send a frame; return when it was written and a future of the next frame of
        one of ``types`` with its stamp. (No reply can be read before this returns:
        frames are read by a later callback of the event loop.)"""
        sent = self.send(message)
        self._types = frozenset(types)
        self._waiter = asyncio.get_running_loop().create_future()
        return sent, self._waiter

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                self._flush()
            self.transport.close()

    def _flush(self) -> None:
        assert self.transport is not None
        data = self.protocol.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(b"".join(data))
