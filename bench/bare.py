"""The bare servers that mark the limit of our stack.

Each answers ``hello`` with a fixed ``welcome`` and ``heartbeat`` with a fixed
``heartbeat_ack`` at ``/ws/device``, and does nothing else: whatever they cost
per session and per message is the floor under ours.

- ``starlette``: a Starlette WebSocket endpoint on uvicorn's WebSockets, with
  the uvicorn settings of ``presence serve`` (``presence/cli.py``).
- ``websockets``: a plain ``websockets`` asyncio server.

Both run on uvloop, as ``presence serve`` does.

    python -m bench.bare starlette|websockets --port PORT
"""

from __future__ import annotations

import argparse
import json

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.server import ServerConnection, serve

from presence.cli import UVICORN_SETTINGS
from presence.wire import MAX_FRAME

from .worker import raise_open_files

WELCOME = json.dumps(
    {
        "type": "welcome",
        "session_id": "0" * 32,
        "user": {"id": "0" * 32, "name": "Bare"},
        "license": {"model": "named"},
        "heartbeat_interval": 10.0,
        "lease_ttl": 30.0,
    }
)
ACK = json.dumps({"type": "heartbeat_ack", "seq": None, "expires_in": 30.0})
REPLIES = {"hello": WELCOME, "heartbeat": ACK}


def reply(frame: str | bytes) -> str | None:
    """The fixed answer to a client frame, if it has one."""
    return REPLIES.get(json.loads(frame).get("type"))


async def starlette_endpoint(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            answer = reply(await websocket.receive_text())
            if answer is not None:
                await websocket.send_text(answer)
    except WebSocketDisconnect:
        pass


def run_starlette(port: int) -> None:
    app = Starlette(routes=[WebSocketRoute("/ws/device", starlette_endpoint)])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=16 * MAX_FRAME,
        ws_ping_interval=None,
        lifespan="off",
        **UVICORN_SETTINGS,
    )


async def websockets_handler(connection: ServerConnection) -> None:
    async for frame in connection:
        answer = reply(frame)
        if answer is not None:
            await connection.send(answer)


async def run_websockets(port: int) -> None:
    async with serve(
        websockets_handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=None,
        max_size=16 * MAX_FRAME,
    ) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["starlette", "websockets"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_open_files()
    if args.kind == "starlette":
        run_starlette(args.port)
    else:
        uvloop.run(run_websockets(args.port))


if __name__ == "__main__":
    main()
