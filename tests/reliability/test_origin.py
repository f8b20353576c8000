"""WebSocket endpoints check the browser's `Origin` (cross-site WebSocket hijacking).

A page of another site may open a WebSocket to the server with the victim's
browser; only the `Origin` header tells. Connections without one (native
device apps) are always allowed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from server.client import Harness, Server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

if TYPE_CHECKING:
    from conftest import StartServer

ALLOWED = "https://board.example"
EVIL = "https://evil.example"
ENDPOINTS = ("/ws/device", "/ws/wallboard")


def ws_url(server: Server, endpoint: str) -> str:
    return server.base_url.replace("http://", "ws://", 1) + endpoint


async def opened(server: Server, endpoint: str, origin: str | None) -> ClientConnection:
    return await connect(
        ws_url(server, endpoint),
        origin=origin,
        proxy=None,
        compression=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=2,
    )


async def assert_serves(server: Server, endpoint: str, origin: str | None, token: str) -> None:
    """The handshake succeeds and the endpoint answers its first message."""
    async with await opened(server, endpoint, origin) as ws:
        if endpoint == "/ws/device":
            await ws.send(json.dumps({"type": "heartbeat"}))
            answer = json.loads(await ws.recv(decode=True))
            assert answer["type"] == "error" and answer["code"] == "not_logged_in", answer
        else:
            await ws.send(json.dumps({"type": "hello", "token": token}))
            answer = json.loads(await ws.recv(decode=True))
            assert answer["type"] == "snapshot", answer


async def assert_refused(server: Server, endpoint: str, origin: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await opened(server, endpoint, origin)
    assert refused.value.response.status_code == 403, refused.value.response


async def wallboard_token(server: Server) -> str:
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        return await domain.token("wallboard")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_listed_origin_is_allowed_and_others_refused(
    own_server: StartServer, endpoint: str
) -> None:
    server = own_server("--allowed-origins", ALLOWED).server
    token = await wallboard_token(server)
    await assert_serves(server, endpoint, ALLOWED, token)
    await assert_serves(server, endpoint, None, token)
    for origin in (EVIL, f"{ALLOWED}.evil.example", "null", server.base_url):
        await assert_refused(server, endpoint, origin)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_by_default_only_the_servers_own_origin_is_allowed(
    server: Server, endpoint: str
) -> None:
    token = await wallboard_token(server)
    await assert_serves(server, endpoint, server.base_url, token)
    await assert_serves(server, endpoint, None, token)
    port = server.base_url.rsplit(":", 1)[1]
    for origin in (EVIL, f"http://127.0.0.1:{port}.evil.example", f"http://evil.example:{port}"):
        await assert_refused(server, endpoint, origin)
