"""The application: routes, WebSocket endpoints, error responses, and the node's lifespan.

Starlette serves HTTP; the WebSocket endpoints run on our own WebSocket layer
(:mod:`.link`), which the HTTP protocol (:mod:`.http`) hands upgrades to.
Admin API request bodies are bounded on their way in (:class:`BodyLimit`).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..admin import Admin
from ..config import Config
from ..errors import BadRequest, Forbidden, PresenceError, TooLarge
from ..node import Node
from ..storage import store_for_url
from ..views import ErrorDetail, ErrorView
from ..wallboard import Wallboards
from . import api
from .device import DeviceEndpoint
from .guard import Gate, Guard, LocalGate
from .link import Endpoint
from .wallboard import WallboardEndpoint

STATIC = Path(__file__).resolve().parent.parent.parent / "static"
# The JavaScript client's TypeScript declarations, whatever the system's table
# of types says of .ts (MPEG streams, or Qt translations).
mimetypes.add_type("application/typescript", ".ts")
#: Bytes an admin API request body may have; the largest valid one is a few hundred.
MAX_BODY = 64 * 1024
_TOO_LARGE = f"Request bodies are limited to {MAX_BODY} bytes."


class ClientFiles(StaticFiles):
    """The JavaScript client and its playground: public files, which a device
    app's page on any origin may import (``Access-Control-Allow-Origin: *``;
    no credentials are involved)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response


class App:
    """The server: Starlette's ASGI application, and the WebSocket endpoints by path."""

    def __init__(self, starlette: Starlette, websockets: dict[str, Endpoint], node: Node) -> None:
        self.starlette = starlette
        self.websockets = websockets
        self.node = node
        self.config = node.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.starlette(scope, receive, send)


def create_app(config: Config, gate: Gate | None = None) -> App:
    """The server for ``config``; its lifespan opens the store and the node.

    ``gate``: the per-address limits, if kept elsewhere (``--workers``);
    by default the app keeps its own."""
    store = store_for_url(config.database, uuid.uuid4().hex)
    node = Node(store, config)
    admin = Admin(store, config.admin_token, config.webhook_allow_private, config.oidc_allow_http)
    wallboards = Wallboards(store)
    node.watchers.append(wallboards)

    if gate is None:
        guard = Guard(config.max_connections_per_address, config.auth_failures_per_minute)
        gate = LocalGate(guard)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gate.start()
        await node.start()
        try:
            token = await admin.ensure_server_token()
            if token is not None:
                print(f"Server admin token (shown once, keep it): {token}", flush=True)
            yield
        finally:
            await node.stop()
            await gate.stop()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Mount(api.PREFIX, routes=api.routes),
            Route("/admin", admin_console),
            Mount("/client", ClientFiles(directory=STATIC / "client", html=True)),
            Mount("/", StaticFiles(directory=STATIC, html=True)),
        ],
        middleware=[Middleware(BodyLimit)],
        exception_handlers={PresenceError: presence_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.node = node
    app.state.admin = admin
    app.state.gate = gate
    endpoints: dict[str, Endpoint] = {
        "/ws/device": DeviceEndpoint(node.protocol, gate),
        "/ws/wallboard": WallboardEndpoint(admin, wallboards, gate, config.hello_timeout),
    }
    return App(app, endpoints, node)


async def healthz(request: Request) -> Response:
    node: Node = request.app.state.node
    if not node.store.healthy():
        return JSONResponse({"status": "unavailable"}, 503)
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Open to all, unless configured to need the server admin token."""
    if request.app.state.config.metrics_need_token:
        admin: Admin = request.app.state.admin
        token = api.bearer(request)
        who = await api.authenticated_request(request, lambda: admin.authenticate(token))
        if who.role != "server":
            raise Forbidden("Only the server administrator may read the metrics.")
    node: Node = request.app.state.node
    return PlainTextResponse(await node.metrics(), media_type="text/plain; version=0.0.4")


async def admin_console(request: Request) -> Response:
    """The admin console's page; its files are under ``/admin/``."""
    return FileResponse(STATIC / "admin" / "index.html")


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    detail: ErrorDetail = {"code": code, "message": message}  # type: ignore[typeddict-item]
    if field is not None:
        detail["field"] = field
    view: ErrorView = {"error": detail}
    return JSONResponse(view, status)


async def presence_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PresenceError)
    field = exc.field if isinstance(exc, BadRequest) else None
    return _error(exc.status, exc.code, exc.message, field)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    response = _error(exc.status_code, codes.get(exc.status_code, "bad_request"), exc.detail)
    response.headers.update(exc.headers or {})  # Allow, for 405
    return response


class BodyLimit:
    """Refuses admin API request bodies over :data:`MAX_BODY` with 413 ``too_large``.

    A ``Content-Length`` over the limit is answered before the app runs and
    before any byte of the body is read; a chunked body is read only up to the
    limit, then the handler reading it gets :exc:`~presence.errors.TooLarge`.
    An answer given before the body was read to its end closes the connection,
    so that the rest of it is never read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/v1/"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and int(length) > MAX_BODY:
            response = _error(413, TooLarge.code, _TOO_LARGE)
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        # A body of known length within the limit is left to uvicorn, which
        # skips what a handler does not read; one of unknown length is not.
        unread = length is None and "chunked" in headers.get("transfer-encoding", "").lower()
        received = 0

        async def bounded_receive() -> Message:
            nonlocal unread, received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY:
                    raise TooLarge(_TOO_LARGE)
                unread = message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, bounded_receive, closing_send)
