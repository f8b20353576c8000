"""The wallboard WebSocket endpoint, ``/ws/wallboard`` (see :mod:`presence.wallboard`)."""

from __future__ import annotations

import asyncio

from .. import wire
from ..admin import Admin
from ..errors import PresenceError
from ..wallboard import Board, Wallboards
from .guard import TOO_MANY_CONNECTIONS, Gate, authenticated, counted
from .link import Link

CLOSE_CODES = {401: 4401, 403: 4403, 404: 4404, 429: 4429}


class WallboardEndpoint:
    """``/ws/wallboard``: a board for each connection, once its ``hello`` authenticates."""

    def __init__(self, admin: Admin, boards: Wallboards, gate: Gate, hello_timeout: float) -> None:
        self.admin = admin
        self.boards = boards
        self.gate = gate
        self.hello_timeout = hello_timeout

    async def __call__(self, link: Link) -> None:
        async with counted(self.gate, link.address) as allowed:
            try:
                if not allowed:
                    raise _Refused("rate_limited", TOO_MANY_CONNECTIONS, 4429)
                await self._serve(link)
            except _Refused as refused:
                link.push(wire.error_frame(refused.code, refused.message))
                link.close(refused.close_code)
                await link.drain()

    async def _serve(self, link: Link) -> None:
        admin = self.admin
        board: Board | None = None
        try:
            try:
                frame = await asyncio.wait_for(link.receive(), self.hello_timeout)
                if frame is None:
                    return
                hello = wire.parse_object(frame)
                if hello.get("type") != "hello":
                    raise wire.BadMessage("Send hello {token} first.")
                token = str(hello.get("token") or "")
                while True:
                    heard = self.boards.revocations
                    who = await authenticated(
                        self.gate, link.address, lambda: admin.authenticate(token)
                    )
                    # A revocation heard meanwhile may be of this token, and
                    # found no board of it to close: check again.
                    if self.boards.revocations == heard:
                        break
                domain_id = str(hello.get("domain") or who.domain_id or "")
                board = Board(link, domain_id, who.token_id)
                # Changes from here until the snapshot is sent wait in the board's backlog.
                self.boards.add(board)
                snapshot = await admin.presence(who, board.domain_id, events=50)
            except TimeoutError:
                raise _Refused("hello_timeout", "Send hello {token} first.", 4408) from None
            except wire.BadMessage as exc:
                close_code = 1009 if exc.code == "too_large" else 4400
                raise _Refused(exc.code, exc.message, close_code) from None
            except PresenceError as exc:
                raise _Refused(exc.code, exc.message, CLOSE_CODES.get(exc.status, 4400)) from None
            self.boards.start(board, snapshot)
            while (frame := await link.receive()) is not None:
                try:
                    if wire.parse_object(frame).get("type") == "ping":
                        await link.send(wire.encode({"type": "pong"}))
                except wire.BadMessage:
                    pass  # a board has nothing else to say; ignore what it cannot
        finally:
            if board is not None:
                self.boards.remove(board)


class _Refused(Exception):
    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code
