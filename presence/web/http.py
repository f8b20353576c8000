"""uvicorn's HTTP protocol, with a deadline on request headers, upgrading to our WebSockets.

uvicorn waits without end for a request whose line and headers never finish
(a slow-headers attack holds a connection per byte it trickles). Here the
line and headers of each request must arrive within :data:`HEADERS_TIMEOUT`
of the connection or of the request's first byte; otherwise the connection
is closed. Idle keep-alive connections stay uvicorn's business.

A request to upgrade to a WebSocket is answered here, on the headers uvicorn
parsed, and the connection is handed to a :class:`~.link.Link` serving the
app's endpoint for the path (uvicorn runs with ``ws="none"``). No extension
or subprotocol is offered. Refused handshakes are logged; accepted ones are not,
since a node takes a thousand a second (``/metrics`` counts sessions).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
from http import HTTPStatus
from urllib.parse import unquote

import httptools
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol

from .app import App
from .link import MAX_MESSAGE, Link

HEADERS_TIMEOUT = 10.0

WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "
)
VERSION_13 = ("Sec-WebSocket-Version", "13")

logger = logging.getLogger("uvicorn.error")  # the server log, as for HTTP
frames_logger = logging.getLogger("websockets.server")  # its debug log of every frame


class HeadersDeadline(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _should_upgrade_to_ws(self) -> bool:
        return True  # to our own WebSockets, below

    def handle_websocket_upgrade(self) -> None:
        """Answer the opening handshake (RFC 6455, 4.2) and hand the connection to its endpoint."""
        self.connections.discard(self)
        app = self.config.app
        assert isinstance(app, App)
        headers = {name: value.decode("latin-1") for name, value in self.headers}
        path = unquote(httptools.parse_url(self.url).path.decode("ascii"))
        endpoint = app.websockets.get(path)
        key = headers.get(b"sec-websocket-key", "")
        refusal: tuple[int, str, list[tuple[str, str]]]
        if endpoint is None:
            refusal = 404, "No WebSocket here.", []
        elif not origin_allowed(
            headers.get(b"origin"), headers.get(b"host", ""), app.config.allowed_origins
        ):
            refusal = 403, "This origin may not open WebSockets here.", []
        elif (
            self.scope["method"] != "GET" or self.scope["http_version"] != "1.1" or not _is_key(key)
        ):
            refusal = 400, "A WebSocket handshake is an HTTP/1.1 GET with a Sec-WebSocket-Key.", []
        elif headers.get(b"sec-websocket-version") != "13":
            refusal = 426, "Only WebSocket version 13 is spoken here.", [VERSION_13]
        else:
            accept = base64.b64encode(hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest())
            self.transport.write(SWITCHING + accept + b"\r\n\r\n")
            conn = ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE, logger=frames_logger)
            link = Link(self.transport, conn, self._client_address(), self.connections)
            self.transport.set_protocol(link)
            task = link.serve(endpoint)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        status, text, extra = refusal
        logger.info('%s - "WebSocket %s" %d', self._peer(), path, status)
        self.transport.write(_plain_response(status, text, extra))
        self.transport.close()

    def _peer(self) -> str:
        return self.client[0] if self.client else "unknown"

    def _client_address(self) -> str:
        """The client's address, by the proxy rules uvicorn applies to HTTP requests."""
        peer = self._peer()
        proxy = self.config.loaded_app
        if not isinstance(proxy, ProxyHeadersMiddleware) or peer not in proxy.trusted_hosts:
            return peer
        forwarded = b", ".join(v for n, v in self.headers if n == b"x-forwarded-for")
        if not forwarded:
            return peer
        host, _ = proxy.trusted_hosts.get_trusted_client_address(forwarded.decode("latin-1"))
        return host or peer

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(HEADERS_TIMEOUT, self.transport.close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """Native apps send no Origin; browsers must come from an allowed origin."""
    if origin is None:
        return True
    if allowed:
        return origin in allowed or "*" in allowed
    return origin.split("://", 1)[-1] == host


def _is_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def _plain_response(status: int, text: str, headers: list[tuple[str, str]]) -> bytes:
    body = f"{text}\n".encode()
    head = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body
