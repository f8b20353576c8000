"""Slow handshakes and silent connections are closed by deadlines.

A connection that holds a socket without ever becoming a session costs the
server a file descriptor and memory; enough of them deny service to everyone.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest
from server.client import Harness, Server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

#: The spec's deadline for hello.
HELLO_TIMEOUT = 5.0
#: How late after that the close may come.
HELLO_SLACK = 2.0
#: The longest a connection that never finishes its request headers may stay
#: open. The spec names no figure; 30 s is far beyond any real client's.
HEADERS_LIMIT = 30.0


async def test_a_silent_device_socket_is_closed_with_hello_timeout(harness: Harness) -> None:
    device = await harness.device(heartbeats=False)
    opened = time.monotonic()
    await device.expect_error("hello_timeout", timeout=HELLO_TIMEOUT + HELLO_SLACK)
    await device.expect_closed(4408, timeout=HELLO_SLACK)
    waited = time.monotonic() - opened
    assert HELLO_TIMEOUT - 0.5 <= waited <= HELLO_TIMEOUT + HELLO_SLACK, waited


async def test_a_silent_wallboard_socket_is_closed(server: Server) -> None:
    url = server.base_url.replace("http://", "ws://", 1) + "/ws/wallboard"
    async with connect(url, proxy=None, compression=None, ping_interval=None) as board:
        opened = time.monotonic()
        answers = []
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(HELLO_TIMEOUT + HELLO_SLACK):
                while True:
                    answers.append(json.loads(await board.recv(decode=True)))
    waited = time.monotonic() - opened
    assert HELLO_TIMEOUT - 0.5 <= waited <= HELLO_TIMEOUT + HELLO_SLACK, waited
    assert [a.get("code") for a in answers] == ["hello_timeout"], answers


async def held_open(host: str, port: int, request: bytes, drip: bool) -> float | None:
    """Send `request` (at once, or one byte a second) and never finish it;
    return after how long the server closed the connection, None if it did not
    within `HEADERS_LIMIT`."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        if not drip:
            writer.write(request)
        async with asyncio.timeout(HEADERS_LIMIT):
            for byte in request if drip else b"":
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    async with asyncio.timeout(1.0):  # the drip's pace
                        if await reader.read(4096) == b"":
                            return time.monotonic() - started
                except TimeoutError:
                    continue
            while await reader.read(4096) != b"":
                pass
            return time.monotonic() - started
    except TimeoutError:
        return None
    except ConnectionError:
        return time.monotonic() - started
    finally:
        writer.close()


async def test_unfinished_requests_are_closed_by_a_deadline(server: Server) -> None:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    host = f"Host: {url.hostname}:{url.port}\r\n".encode()
    upgrade = (
        b"GET /ws/device HTTP/1.1\r\n" + host + b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    )
    cases = {
        "nothing sent": (b"", False),
        "headers never finished": (b"GET /healthz HTTP/1.1\r\n" + host, False),
        "upgrade never finished": (upgrade, False),
        "headers dripped a byte a second": (b"GET /healthz HTTP/1.1\r\n" + host * 10, True),
    }
    closed_after = await asyncio.gather(
        *(held_open(url.hostname, url.port, request, drip) for request, drip in cases.values())
    )
    measured = {
        name: "still open" if after is None else f"closed after {after:.1f} s"
        for name, after in zip(cases, closed_after, strict=True)
    }
    assert all(after is not None for after in closed_after), (
        f"connections still open after {HEADERS_LIMIT:.0f} s: {measured}"
    )
