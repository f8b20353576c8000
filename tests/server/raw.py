"""A WebSocket spoken by hand on a plain TCP connection: any frame, in any order.

For the tests of the server's bounds, which send what no client library will:
a message in dozens of fragments, a header announcing a megabyte, floods of
empty continuation frames or pings. Frames are written with websockets'
`Frame(...).serialize(mask=True)`; what the server sends is parsed with
websockets' sans-I/O `ClientProtocol`, whose own answers (the echo of a
close) are not sent: the test decides every byte that goes out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from .client import WAIT, Server

Message = dict[str, Any]


def frame(opcode: Opcode, data: bytes = b"", *, fin: bool = True) -> bytes:
    """One client frame, masked as RFC 6455 requires."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def text(message: Message) -> bytes:
    return frame(Opcode.TEXT, json.dumps(message).encode())


def fragmented(payload: bytes, count: int) -> bytes:
    """A text message of ``payload`` cut into ``count`` frames (some may be empty)."""
    size = -(-len(payload) // count)
    pieces = [payload[n * size : (n + 1) * size] for n in range(count)]
    return b"".join(
        frame(Opcode.TEXT if n == 0 else Opcode.CONT, piece, fin=n == count - 1)
        for n, piece in enumerate(pieces)
    )


class RawWebSocket:
    """One connection; `received` holds every JSON text the server sent, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = ClientProtocol(parse_uri("ws://server/"), state=State.OPEN, max_size=None)
        self.received: list[Message] = []
        self.pongs = 0
        self.ended = False

    @classmethod
    async def open(cls, server: Server, path: str = "/ws/device") -> RawWebSocket:
        """Connect and complete the opening handshake."""
        url = urlsplit(server.base_url)
        assert url.hostname is not None and url.port is not None
        key = base64.b64encode(os.urandom(16)).decode()
        async with asyncio.timeout(WAIT):
            reader, writer = await asyncio.open_connection(url.hostname, url.port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                    f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
                head = await reader.readuntil(b"\r\n\r\n")
            except BaseException:
                writer.close()
                raise
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame, once it came."""
        close = self.protocol.close_rcvd
        return None if close is None else close.code

    def errors(self) -> list[str]:
        return [str(m.get("code")) for m in self.received if m.get("type") == "error"]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def login(self, message: Message, answer: str) -> Message:
        """Send ``message`` (a hello) and wait for the message of type ``answer``."""
        await self.send(text(message))
        return await self.expect(answer)

    async def expect(self, kind: str, timeout: float = WAIT) -> Message:
        """The next message of type ``kind``, skipping pushes of other types."""
        async with asyncio.timeout(timeout):
            seen = len(self.received)
            while True:
                for message in self.received[seen:]:
                    if message.get("type") == kind:
                        return message
                seen = len(self.received)
                assert not self.ended, f"closed {self.close_code} before {kind}: {self.received}"
                await self._read()

    async def until_closed(self, timeout: float = WAIT) -> None:
        """Read until the server ends the connection; TimeoutError if it does not."""
        async with asyncio.timeout(timeout):
            while not self.ended:
                await self._read()

    async def flood(self, chunk: bytes) -> None:
        """Write ``chunk`` again and again, without reading, until the connection fails."""
        with contextlib.suppress(ConnectionError):
            while True:
                self.writer.write(chunk)
                await self.writer.drain()

    @contextlib.asynccontextmanager
    async def flooding(self, chunk: bytes) -> AsyncIterator[None]:
        """:meth:`flood` in a task for the time of the ``async with``."""
        task = asyncio.create_task(self.flood(chunk))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.wait([task])

    async def close(self) -> None:
        """End the TCP connection, whatever state it is in."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def _read(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionError:  # a reset after the server's last frames: they were read
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
            self.ended = True
        for event in self.protocol.events_received():
            if event.opcode is Opcode.TEXT:
                self.received.append(json.loads(bytes(event.data)))
            elif event.opcode is Opcode.PONG:
                self.pongs += 1
        self.protocol.data_to_send()  # its echo of a close: the test sends what it means to


def metric(text: str, name: str, labels: str) -> float:
    """A sample of the Prometheus text, 0 when absent."""
    found = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")
