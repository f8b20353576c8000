"""The wallboard WebSocket endpoint, ``/ws/wallboard`` (see :mod:`presence.wallboard`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.websockets import WebSocket

from .. import wire
from ..admin import Admin
from ..errors import PresenceError
from ..wallboard import Board, Wallboards
from .device import origin_allowed
from .link import Link

CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404}


async def wallboard_endpoint(websocket: WebSocket) -> None:
    admin: Admin = websocket.app.state.admin
    boards: Wallboards = websocket.app.state.wallboards
    config = websocket.app.state.config
    if not origin_allowed(websocket, config.allowed_origins):
        await websocket.close(4403)
        return
    await websocket.accept()
    link = Link(websocket)
    try:
        frame = await asyncio.wait_for(link.receive(), config.hello_timeout)
        hello = _object(frame)
        if hello.get("type") != "hello":
            raise wire.BadMessage("Send hello {token} first.")
        who = await admin.authenticate(str(hello.get("token") or ""))
        domain_id = str(hello.get("domain") or who.domain_id or "")
    except (TimeoutError, ValueError, wire.BadMessage, PresenceError) as exc:
        code = exc.code if isinstance(exc, PresenceError | wire.BadMessage) else "hello_timeout"
        status = exc.status if isinstance(exc, PresenceError) else 400
        text = exc.message if isinstance(exc, PresenceError | wire.BadMessage) else str(exc)
        link.push(wire.error_frame(code, text or "Send hello {token} first.", False))
        link.close(CLOSE_CODES.get(status, 4400))
        await link.drain()
        return
    board = Board(link, domain_id)
    boards.add(board)
    try:
        try:
            snapshot = await admin.presence(who, domain_id, events=50)
        except PresenceError as exc:
            link.push(wire.error_frame(exc.code, exc.message, False))
            link.close(CLOSE_CODES.get(exc.status, 4400))
            await link.drain()
            return
        boards.start(board, snapshot)
        while (frame := await link.receive()) is not None:
            with contextlib.suppress(ValueError, wire.BadMessage):
                if _type(frame) == "ping":
                    await link.send(wire.encode({"type": "pong"}))
    finally:
        boards.remove(board)


def _object(frame: str | bytes | None) -> dict[str, Any]:
    data = json.loads(frame) if isinstance(frame, str) else None
    if not isinstance(data, dict):
        raise wire.BadMessage("Frames are JSON objects.")
    return data


def _type(frame: str | bytes) -> Any:
    return _object(frame).get("type")
