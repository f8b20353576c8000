"""Admin API request bodies are bounded (README, Protection): past 64 KiB the
answer is 413 `too_large`, given without reading the rest of the body, and the
connection is closed so that the rest is never read.

The uploads over the limit are written by hand on a raw connection, while the
answer is read, as a client streaming a large file would. Their server is the
test's own, whose memory (VmRSS) is sampled meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .client import API, WAIT, Harness, Server, ok, refused, unique_id
from .raw import rss_kib

if TYPE_CHECKING:
    from conftest import StartServer
    from servers import ServerProcess

MAX_BODY = 64 * 1024
#: What the hostile uploads claim or send: far more than the node should hold.
HUGE = 256 * 1024 * 1024
#: Growth of the server's memory allowed while it refuses an upload.
MEMORY_LIMIT_KIB = 10 * 1024
PIECE = b"x" * 65536


def head(server: Server, framing: str) -> bytes:
    host = urlsplit(server.base_url).netloc
    return (
        f"POST {API}/domains HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {server.admin_token}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@dataclass
class Refusal:
    """What a hostile upload got: the answer, whether the connection was closed
    after it, how long the answer took, and the server's growth meanwhile (peak
    VmRSS less before, in KiB)."""

    status: int
    body: Any
    connection: str | None  # the answer's Connection header
    closed: bool
    seconds: float = 0.0
    growth: int = 0


def send_until_refused(address: tuple[str, int], first: bytes, piece: bytes) -> Refusal:
    """Send ``first``, then ``piece`` again and again (up to HUGE bytes) from a
    thread, while reading the answer here. A plain socket, since asyncio's
    streams drop what was received once a write fails."""
    with socket.create_connection(address, timeout=WAIT) as sock:

        def stream() -> None:
            with contextlib.suppress(OSError):  # the server closed the connection
                sock.sendall(first)
                for _ in range(HUGE // len(piece)):
                    sock.sendall(piece)

        writer = threading.Thread(target=stream)
        writer.start()
        try:
            answer = http.client.HTTPResponse(sock)
            answer.begin()
            body = json.loads(answer.read())
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True  # with the rest of the upload unread, as it should be
            except TimeoutError:
                closed = False
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # ends the writer's sendall
            writer.join()
    return Refusal(answer.status, body, answer.getheader("connection"), closed)


async def upload(process: ServerProcess, framing: str, piece: bytes) -> Refusal:
    assert process.process is not None
    pid = process.process.pid
    before = peak = rss_kib(pid)
    url = urlsplit(process.server.base_url)
    assert url.hostname is not None and url.port is not None
    started = time.monotonic()
    sending = asyncio.create_task(
        asyncio.to_thread(
            send_until_refused, (url.hostname, url.port), head(process.server, framing), piece
        )
    )
    while not sending.done():
        peak = max(peak, rss_kib(pid))
        await asyncio.wait([sending], timeout=0.05)  # the sampling period
    refusal = await sending
    refusal.seconds = time.monotonic() - started
    refusal.growth = peak - before
    return refusal


def assert_too_large(refusal: Refusal) -> None:
    print(
        f"\n{refusal.status} after {refusal.seconds * 1000:.1f} ms, server grew by "
        f"{refusal.growth} KiB, connection {'closed' if refusal.closed else 'left open'}"
    )
    assert refusal.status == 413, refusal
    assert refusal.body["error"]["code"] == "too_large", refusal
    assert refusal.body["error"]["message"].strip(), refusal
    assert refusal.growth < MEMORY_LIMIT_KIB, refusal
    assert refusal.seconds < WAIT, refusal
    assert refusal.connection == "close" and refusal.closed, refusal


async def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read(
    own_server: StartServer,
) -> None:
    """A client announcing 256 MiB and sending it as fast as it can."""
    assert_too_large(await upload(own_server(), f"Content-Length: {HUGE}", PIECE))


async def test_a_chunked_body_is_read_only_up_to_the_limit(own_server: StartServer) -> None:
    """A chunked upload without end."""
    assert_too_large(await upload(own_server(), "Transfer-Encoding: chunked", chunk(PIECE)))


def padded(size: int) -> bytes:
    """A valid new domain, padded with spaces to ``size`` bytes of JSON."""
    body = {
        "id": unique_id("big"),
        "name": "Big",
        "plan": "standard",
        "named_licenses": 1,
        "seat_licenses": 0,
    }
    text = json.dumps(body).encode()
    return text[:-1] + b" " * (size - len(text)) + b"}"


async def chunked(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 1000):
        yield body[start : start + 1000]


async def test_a_body_of_the_limit_is_read_and_one_byte_more_is_refused(server: Server) -> None:
    """At the limit a body is read, whether its length is given or chunked; one
    byte over, it is refused either way."""
    uploads: dict[str, Callable[[bytes], Any]] = {"length": lambda body: body, "chunked": chunked}
    async with Harness(server) as harness:
        api = harness.api(server.admin_token)
        for framing, content in uploads.items():
            at_limit = padded(MAX_BODY)
            answer = await api.request("POST", f"{API}/domains", content=content(at_limit))
            assert ok(answer, 201)["id"] == json.loads(at_limit)["id"], framing
            over = content(padded(MAX_BODY + 1))
            refused(await api.request("POST", f"{API}/domains", content=over), 413, "too_large")
