"""The receiver itself (`receiver.py`), without a presence server: what the other tests rely on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from .hooks import ReceiverProcess


async def post(url: str, body: bytes = b"{}", timeout: float = 5.0) -> httpx.Response:
    headers = {"webhook-id": "7", "webhook-timestamp": "1", "webhook-signature": "v1,x"}
    async with httpx.AsyncClient(trust_env=False, timeout=timeout) as http:
        return await http.post(url, content=body, headers=headers)


async def test_modes_answer_and_are_logged(receiver: ReceiverProcess) -> None:
    assert (await post(receiver.url("a"), b'{"n": 1}')).status_code == 200
    await receiver.set_mode("fail", "a")
    assert (await post(receiver.url("a"))).status_code == 500
    assert (await post(receiver.url("b"))).status_code == 200
    await receiver.set_mode("redirect")
    moved = await post(receiver.url("b"))
    assert moved.status_code == 302
    assert moved.headers["location"].endswith("/redirected")

    logged = receiver.requests()
    assert [(r.path, r.status) for r in logged] == [
        (receiver.path("a"), 200),
        (receiver.path("a"), 500),
        (receiver.path("b"), 200),
        (receiver.path("b"), 302),
    ]
    assert logged[0].body == '{"n": 1}'
    assert (logged[0].webhook_id, logged[0].timestamp, logged[0].signature) == ("7", "1", "v1,x")
    assert receiver.connections() == 4


async def test_hang_never_answers(receiver: ReceiverProcess) -> None:
    await receiver.set_mode("hang")
    with pytest.raises(httpx.ReadTimeout):
        await post(receiver.url(), timeout=0.5)
    [hung] = await receiver.wait_requests("hook", 1)
    assert hung.status is None


async def test_stopped_refuses_and_restarts_on_the_same_port(receiver: ReceiverProcess) -> None:
    await post(receiver.url())
    receiver.stop()
    with pytest.raises(httpx.ConnectError):
        await post(receiver.url())
    receiver.start(mode="fail")
    assert (await post(receiver.url())).status_code == 500
    assert [r.status for r in receiver.requests("hook")] == [200, 500]


async def test_a_killed_receiver_keeps_what_it_logged(receiver: ReceiverProcess) -> None:
    await asyncio.gather(*(post(receiver.url(str(n))) for n in range(5)))
    receiver.kill()
    assert len(receiver.requests()) == 5
