"""A WebSocket server that is no presence server: it answers `hello` with
garbage, or not at all, for the clients' tests of `start()` (Python and
JavaScript) to fail on clearly and quickly, never hang."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from websockets.asyncio.server import ServerConnection, serve

GARBAGE = {
    "not JSON": "welcome!",
    "a JSON array": '["welcome"]',
    "an object without type": '{"license": {"model": "named"}}',
    "a type that is no string": '{"type": 7}',
    "a welcome without heartbeat_interval": '{"type": "welcome", "license": {"model": "named"}}',
}
#: Answers after which the client hears of no presence server (else: no protocol).
CLOSES = ("a close", "a TCP reset")
ANSWERS = [*GARBAGE, "silence", "binary", *CLOSES]


@asynccontextmanager
async def garbage_server(answer: str) -> AsyncIterator[str]:
    """A server answering each `hello` with `answer`, one of ANSWERS; its device URL."""

    async def handler(ws: ServerConnection) -> None:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["device"]["id"] == "d", hello
        if answer in GARBAGE:
            await ws.send(GARBAGE[answer])
        elif answer == "binary":
            await ws.send(b'{"type": "welcome"}')
        elif answer == "a close":
            return
        elif answer == "a TCP reset":
            ws.transport.abort()
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/device"
