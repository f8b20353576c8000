"""uvicorn's HTTP protocol, with a deadline on request headers.

uvicorn waits without end for a request whose line and headers never finish
(a slow-headers attack holds a connection per byte it trickles). Here the
line and headers of each request must arrive within :data:`HEADERS_TIMEOUT`
of the connection or of the request's first byte; otherwise the connection
is closed. Idle keep-alive connections stay uvicorn's business.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADERS_TIMEOUT = 10.0


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

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(HEADERS_TIMEOUT, self.transport.close)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
