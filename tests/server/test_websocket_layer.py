"""The server's own WebSocket layer, as clients see it: the opening handshake
(raw HTTP), fragmented messages and the bounds on one message, pings, the
closing handshake, client addresses behind a local proxy, and the close at shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from reliability.test_guard import assert_device_rate_limited
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode
from websockets.protocol import State

from .client import WAIT, Device, Harness, Server, check_error, unique_id
from .raw import RawWebSocket, fragmented, frame, text

if TYPE_CHECKING:
    from conftest import OpenRaw, StartServer
    from servers import ServerProcess

#: RFC 6455, 1.3: appended to the client's key to compute Sec-WebSocket-Accept.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: How long a graceful shutdown may take, from SIGTERM to the process's exit.
SHUTDOWN_LIMIT = 10.0
#: The bounds on one message the README gives: frames, and bytes of text.
FRAGMENTS = 64
MAX_TEXT = 64 * 1024


@dataclass
class Response:
    status_line: str
    headers: dict[str, str]  # names in lower case
    body: bytes


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def upgrade_request(
    server: Server, method: str, path: str, changes: Mapping[str, str | None]
) -> bytes:
    """A hand-written upgrade request; `changes` replaces headers (None leaves one out)."""
    headers: dict[str, str | None] = {
        "Host": urlsplit(server.base_url).netloc,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": new_key(),
        "Sec-WebSocket-Version": "13",
        **changes,
    }
    lines = [f"{method} {path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in headers.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines if line)
    return status_line, {name.strip().lower(): value.strip() for name, value in fields}


async def raw_connection(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return await asyncio.open_connection(url.hostname, url.port)


async def refusal(server: Server, request: bytes) -> Response:
    """Send `request` on a fresh connection; read the answer until the server closes."""
    reader, writer = await raw_connection(server)
    try:
        writer.write(request)
        try:
            async with asyncio.timeout(WAIT):
                answer = await reader.read()  # to the end of the stream
        except TimeoutError:
            raise AssertionError("the server kept the connection open after a refusal") from None
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, headers = parse_head(head)
    return Response(status_line, headers, body)


OpenDevice = Callable[..., Awaitable[Device]]


@pytest.fixture
async def open_device() -> AsyncIterator[OpenDevice]:
    """Open device WebSockets with `connect` options the harness does not set
    (extra headers, a local address, a close timeout); all closed at the end."""
    opened: list[Device] = []

    async def open_(server: Server, **options: Any) -> Device:
        options.setdefault("close_timeout", 2)
        ws = await connect(
            server.ws_url,
            proxy=None,
            compression=None,
            ping_interval=None,
            open_timeout=10,
            **options,
        )
        device = Device(ws, device_id=unique_id("dev"), kind="desktop", name=None, heartbeats=True)
        opened.append(device)
        return device

    yield open_
    await asyncio.gather(*(device.close() for device in opened))


# The opening handshake

REFUSALS: dict[str, tuple[str, str, dict[str, str | None], int]] = {
    "no WebSocket at the path": ("GET", "/ws/nope", {}, 404),
    "a key not of 16 bytes": ("GET", "/ws/device", {"Sec-WebSocket-Key": "abc"}, 400),
    "no key": ("GET", "/ws/device", {"Sec-WebSocket-Key": None}, 400),
    "version 8": ("GET", "/ws/device", {"Sec-WebSocket-Version": "8"}, 426),
    "a POST": ("POST", "/ws/device", {}, 400),
}


@pytest.mark.parametrize(("method", "path", "changes", "status"), REFUSALS.values(), ids=REFUSALS)
async def test_a_bad_handshake_gets_a_plain_http_refusal_and_the_connection_closes(
    server: Server, method: str, path: str, changes: dict[str, str | None], status: int
) -> None:
    """A client that cannot have a WebSocket gets a short plain-text answer, then the end."""
    answer = await refusal(server, upgrade_request(server, method, path, changes))

    assert answer.status_line == f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", answer
    assert answer.headers.get("connection", "").lower() == "close", answer
    assert answer.headers.get("content-type", "").startswith("text/plain"), answer
    assert answer.body.strip() and len(answer.body) == int(answer.headers["content-length"])
    assert "sec-websocket-accept" not in answer.headers, answer
    if status == 426:
        assert answer.headers.get("sec-websocket-version") == "13", answer


async def test_an_http_1_0_upgrade_is_refused(server: Server) -> None:
    """RFC 6455 asks for HTTP/1.1 at least."""
    request = upgrade_request(server, "GET", "/ws/device", {})
    answer = await refusal(server, request.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1))

    assert answer.status_line.startswith("HTTP/1.1 400 "), answer
    assert "sec-websocket-accept" not in answer.headers, answer


async def test_a_valid_handshake_switches_protocols_with_the_rfc_accept(server: Server) -> None:
    """The 101 carries the accept RFC 6455 derives from the key, which clients check."""
    key = new_key()
    reader, writer = await raw_connection(server)
    try:
        writer.write(upgrade_request(server, "GET", "/ws/device", {"Sec-WebSocket-Key": key}))
        async with asyncio.timeout(WAIT):
            head = await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()

    status_line, headers = parse_head(head.removesuffix(b"\r\n\r\n"))
    assert status_line == "HTTP/1.1 101 Switching Protocols", head
    assert headers.get("upgrade", "").lower() == "websocket", head
    assert headers.get("connection", "").lower() == "upgrade", head
    assert headers.get("sec-websocket-accept") == accept_for(key), head


# Framing, pings and the closing handshake


async def test_a_fragmented_hello_is_read_as_one_message(harness: Harness) -> None:
    """Three fragments, one cut inside a two-byte UTF-8 character, make one hello."""
    domain = await harness.new_domain()
    member = await domain.named_user()
    device = await harness.device()
    described = {"id": device.id, "kind": "desktop", "name": "Zoë"}
    message = {"type": "hello", "token": member.token, "device": described}
    hello = json.dumps(message, ensure_ascii=False).encode()
    cut = hello.index("ë".encode()) + 1
    await device.ws.send([hello[:10], hello[10:cut], hello[cut:]], text=True)

    welcome = await device.outcome()
    assert welcome["type"] == "welcome", welcome
    assert welcome["user"]["id"] == member.id, welcome
    named = {entry["user"]["id"]: entry["devices"] for entry in (await domain.presence())["named"]}
    assert [(d["id"], d["name"]) for d in named[member.id]] == [(device.id, "Zoë")], named


async def test_a_ping_gets_a_pong(harness: Harness) -> None:
    """A logged-in device that pings gets its pong, and its session carries on."""
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user())

    pong = await device.ws.ping(b"are you there")
    latency = await asyncio.wait_for(pong, WAIT)

    assert latency >= 0
    await device.heartbeat(1)


async def test_a_client_close_is_answered_and_the_server_ends_the_connection(
    steady_harness: Harness, open_device: OpenDevice
) -> None:
    """The server echoes the close and ends TCP at once; the seat is freed at
    once (the lease TTL is a minute)."""
    domain = await steady_harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    # The client waits a minute for the server to end TCP before it would itself.
    device = await open_device(steady_harness.server, close_timeout=60)
    assert (await device.login(member.token))["type"] == "welcome"
    await device.stop_heartbeats()

    async with asyncio.timeout(WAIT):
        await device.ws.close(1000)
        await device.ws.wait_closed()

    protocol = device.ws.protocol
    assert protocol.close_rcvd is not None and protocol.close_rcvd.code == 1000
    assert protocol.close_rcvd_then_sent is False  # the server answered the client's close
    assert protocol.state is State.CLOSED
    await domain.wait_pool(pool, occupied=0, free=1)


# Bounds on one message (README, Protection)


async def logged_in(harness: Harness, open_raw: OpenRaw) -> RawWebSocket:
    """A named user's device on a raw connection, welcomed."""
    member = await (await harness.new_domain()).named_user()
    ws = await open_raw(harness.server)
    device = {"id": unique_id("raw"), "kind": "desktop"}
    await ws.login({"type": "hello", "token": member.token, "device": device}, "welcome")
    return ws


async def assert_too_large(ws: RawWebSocket) -> None:
    """The server says too_large, then closes 1009."""
    await ws.until_closed()
    assert ws.errors() == ["too_large"], ws.received
    check_error(ws.received[-1])
    assert ws.close_code == 1009, ws.close_code


async def test_a_message_may_take_64_frames_and_not_65_even_empty_ones(
    steady_harness: Harness, open_raw: OpenRaw
) -> None:
    """64 KiB of text in 64 frames is read; a text frame and 64 empty
    continuation frames (65 frames, a few bytes) are too large."""
    full = await logged_in(steady_harness, open_raw)
    head = b'{"type":"heartbeat","seq":"'
    seq = "s" * (MAX_TEXT - len(head) - 2)
    heartbeat = head + seq.encode() + b'"}'
    assert len(heartbeat) == MAX_TEXT
    await full.send(fragmented(heartbeat, FRAGMENTS))
    assert (await full.expect("heartbeat_ack"))["seq"] == seq

    empty = await logged_in(steady_harness, open_raw)
    await empty.send(frame(Opcode.TEXT, b'{"type":', fin=False))
    await empty.send(frame(Opcode.CONT, fin=False) * (FRAGMENTS - 1))
    await empty.send(frame(Opcode.CONT, b'"heartbeat"}'))
    await assert_too_large(empty)
    await full.send(text({"type": "heartbeat", "seq": 2}))
    assert (await full.expect("heartbeat_ack"))["seq"] == 2


async def test_an_unfinished_message_over_the_bound_is_refused_before_it_ends(
    steady_harness: Harness, open_raw: OpenRaw
) -> None:
    """Two fragments of 40 KB and no last one: refused at once, not buffered
    while the client takes its time."""
    ws = await logged_in(steady_harness, open_raw)
    await ws.send(frame(Opcode.TEXT, b'{"type":"heartbeat","x":"' + b"x" * 40_000, fin=False))
    await ws.send(frame(Opcode.CONT, b"x" * 40_000, fin=False))
    await assert_too_large(ws)


async def test_a_frame_announcing_16_mib_gets_too_large_before_the_close(
    steady_harness: Harness, open_raw: OpenRaw
) -> None:
    """The header alone says the frame is over the bound: the client hears why."""
    ws = await logged_in(steady_harness, open_raw)
    length = 1 << 24
    await ws.send(bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + os.urandom(4) + b"{")
    await assert_too_large(ws)


# Client addresses behind a proxy on 127.0.0.1


async def test_forwarded_clients_are_counted_apart(
    own_server: StartServer, open_device: OpenDevice
) -> None:
    """With one WebSocket per address, two clients behind the local proxy each
    keep theirs; a second from the same forwarded client is refused."""
    server = own_server("--max-connections-per-address", "1", lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        ada, grace = await domain.named_user(), await domain.named_user()

        def behind_proxy(client: str) -> Awaitable[Device]:
            return open_device(server, additional_headers={"X-Forwarded-For": client})

        first = await behind_proxy("203.0.113.7")
        second = await behind_proxy("203.0.113.8")
        assert (await first.login(ada.token))["type"] == "welcome"
        assert (await second.login(grace.token))["type"] == "welcome"

        await assert_device_rate_limited(await behind_proxy("203.0.113.7"))
        await first.heartbeat(1)
        await second.heartbeat(1)


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    own_server: StartServer, open_device: OpenDevice
) -> None:
    """From 127.0.0.2 (not a trusted proxy) the header is not believed: two
    connections claiming different clients count as the one peer."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        pytest.skip("127.0.0.2 is not a local address here")
    server = own_server("--max-connections-per-address", "1", lease_ttl=30).server

    def from_peer(client: str) -> Awaitable[Device]:
        return open_device(
            server,
            additional_headers={"X-Forwarded-For": client},
            local_addr=("127.0.0.2", 0),
        )

    first = await from_peer("203.0.113.7")
    await first.send({"type": "heartbeat"})
    await first.expect_error("not_logged_in")  # accepted, and open
    await assert_device_rate_limited(await from_peer("203.0.113.8"))


# Shutdown


async def test_a_wallboard_open_at_shutdown_is_closed_1012(server_process: ServerProcess) -> None:
    """A board open when the server stops is told to come back (1012, service restart)."""
    server = server_process.server
    async with Harness(server) as harness:
        token = await (await harness.new_domain()).token("wallboard")
    url = server.base_url.replace("http://", "ws://", 1) + "/ws/wallboard"
    async with connect(url, proxy=None, compression=None, ping_interval=None) as board:
        await board.send(json.dumps({"type": "hello", "token": token}))
        async with asyncio.timeout(WAIT):
            assert json.loads(await board.recv(decode=True))["type"] == "snapshot"

        exiting = asyncio.create_task(asyncio.to_thread(server_process.terminate))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(SHUTDOWN_LIMIT):
                while True:
                    await board.recv()
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert closed.value.rcvd.code == 1012, closed.value
        assert await exiting in (0, -signal.SIGTERM)
