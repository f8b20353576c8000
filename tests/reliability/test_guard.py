"""Limits per client address: open WebSockets are capped, and token guessing is
braked.

Every test runs a server of its own with small limits, since all tests come
from 127.0.0.1 and would otherwise block each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.client import Device, Harness, Server, check_error, ok, refused
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from conftest import StartServer

CAP = 5
FAILURES = 3
WAIT = 5.0


@dataclass
class Answer:
    """What a WebSocket got before it closed (or `WAIT` ran out)."""

    messages: list[dict[str, object]]
    close_code: int | None


async def wallboard_hello(server: Server, token: str) -> Answer:
    return await wallboard_answer(server, json.dumps({"type": "hello", "token": token}))


async def wallboard_answer(server: Server, first: str) -> Answer:
    """What a wallboard stream answers to `first`, its first frame."""
    url = server.base_url.replace("http://", "ws://", 1) + "/ws/wallboard"
    messages: list[dict[str, object]] = []
    async with connect(url, proxy=None, compression=None, ping_interval=None) as board:
        # Refused over the cap, the board may be closed before it says hello.
        with contextlib.suppress(ConnectionClosed):
            await board.send(first)
        try:
            async with asyncio.timeout(WAIT):
                while True:
                    messages.append(json.loads(await board.recv(decode=True)))
                    if messages[-1].get("type") == "snapshot":
                        return Answer(messages, None)
        except ConnectionClosed as closed:
            return Answer(messages, None if closed.rcvd is None else closed.rcvd.code)


def assert_rate_limited(answer: Answer) -> None:
    errors = [m for m in answer.messages if m.get("type") == "error"]
    assert [e.get("code") for e in errors] == ["rate_limited"], answer
    check_error(errors[0])
    assert errors[0]["retryable"] is True, errors[0]
    assert answer.close_code == 4429, answer


async def assert_device_rate_limited(device: Device) -> None:
    error = await device.expect_error("rate_limited", timeout=WAIT)
    assert error["retryable"] is True, error
    await device.expect_closed(4429)


async def test_websockets_over_the_cap_are_refused(own_server: StartServer) -> None:
    server = own_server("--max-connections-per-address", str(CAP), lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        board_token = await domain.token("wallboard")
        members = [await domain.named_user() for _ in range(CAP)]
        # The cap, with devices (logged in or not) and a wallboard.
        devices = [await harness.login(member) for member in members[: CAP - 2]]
        devices.append(await harness.device(heartbeats=False))
        url = server.base_url.replace("http://", "ws://", 1) + "/ws/wallboard"
        async with connect(url, proxy=None, compression=None, ping_interval=None) as board:
            await board.send(json.dumps({"type": "hello", "token": board_token}))
            assert json.loads(await board.recv(decode=True))["type"] == "snapshot"

            # One more device, or one more wallboard: refused.
            extra = await harness.device(heartbeats=False)
            await assert_device_rate_limited(extra)
            assert_rate_limited(await wallboard_hello(server, board_token))
            # The HTTP API is not capped, and those inside the cap carry on.
            ok(await harness.api(None).get("/healthz"))
            ok(await harness.admin.get(domain.path("presence")))
            for seq, device in enumerate(devices[: CAP - 2]):
                await device.heartbeat(seq)

            # Closing one makes room for one.
            await devices[0].close()
            again = await connected_within_cap(harness)
            answer = await again.login(members[0].token)
            assert answer["type"] == "welcome", answer
            # And the cap holds again.
            await assert_device_rate_limited(await harness.device(heartbeats=False))


async def connected_within_cap(harness: Harness) -> Device:
    """A device accepted under the cap, once the server has counted a close."""
    deadline = time.monotonic() + WAIT
    while True:
        device = await harness.device(heartbeats=False)
        with contextlib.suppress(ConnectionClosed):  # refused at once, over the cap
            await device.send({"type": "heartbeat"})
        answer = await device.expect("error")
        if answer["code"] == "not_logged_in":
            return device
        assert answer["code"] == "rate_limited", answer
        assert time.monotonic() < deadline, "a closed connection still counts against the cap"
        await asyncio.sleep(0.1)  # the server has not seen the close yet


async def test_token_guessing_blocks_the_address(own_server: StartServer) -> None:
    server = own_server("--auth-failures-per-minute", str(FAILURES), lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()
        board_token = await domain.token("wallboard")
        admin_token = await domain.token("admin")
        already_in = await harness.login(member)

        for _ in range(FAILURES):
            guess = await harness.device(heartbeats=False)
            await guess.hello("prs_" + uuid.uuid4().hex)
            await guess.expect_error("unauthorized")
            await guess.expect_closed(4401)

        # Blocked: every authentication from this address, good tokens included.
        guess = await harness.device(heartbeats=False)
        await guess.hello("prs_" + uuid.uuid4().hex)
        await assert_device_rate_limited(guess)
        good = await harness.device(heartbeats=False)
        await good.hello(member.token)
        await assert_device_rate_limited(good)
        assert_rate_limited(await wallboard_hello(server, board_token))
        for token in (admin_token, server.admin_token, None, "prs_wrong"):
            answer = await harness.api(token).get(domain.path("presence"))
            refused(answer, 429, "rate_limited")
        # What needs no authentication still works, and so do open sessions.
        ok(await harness.api(None).get("/healthz"))
        await already_in.heartbeat(1)


async def test_failures_count_across_the_api_and_both_websockets(
    own_server: StartServer,
) -> None:
    server = own_server("--auth-failures-per-minute", str(FAILURES), lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()

        refused(await harness.api("prs_wrong").get(domain.path()), 401, "unauthorized")
        answer = await wallboard_hello(server, "prs_wrong")
        assert [m.get("code") for m in answer.messages] == ["unauthorized"], answer
        guess = await harness.device(heartbeats=False)
        await guess.hello("prs_wrong")
        await guess.expect_error("unauthorized")

        refused(await harness.admin.get(domain.path()), 429, "rate_limited")
        good = await harness.device(heartbeats=False)
        await good.hello(member.token)
        await assert_device_rate_limited(good)


async def test_successes_do_not_count(own_server: StartServer) -> None:
    server = own_server("--auth-failures-per-minute", str(FAILURES), lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()
        for _ in range(3 * FAILURES):
            ok(await harness.admin.get(domain.path()))
            device = await harness.login(member)
            await device.close()
        for _ in range(FAILURES - 1):
            refused(await harness.api("prs_wrong").get(domain.path()), 401, "unauthorized")
        ok(await harness.admin.get(domain.path()))


async def test_authentications_sent_at_once_are_judged_up_to_the_brake(
    own_server: StartServer,
) -> None:
    """Guesses sent at once cannot outrun the brake; logins sent at once wait
    their turn and all pass (tests/cluster/test_workers.py: the same with workers)."""
    server = own_server("--auth-failures-per-minute", str(FAILURES), lease_ttl=30).server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()

        office = await asyncio.gather(*(harness.device() for _ in range(10 * FAILURES)))
        answers = await asyncio.gather(*(device.login(member.token) for device in office))
        assert [answer["type"] for answer in answers] == ["welcome"] * len(office)

        guesses = await asyncio.gather(*(harness.device(heartbeats=False) for _ in range(20)))
        for guess in guesses:
            await guess.hello("prs_" + uuid.uuid4().hex)
        answers = await asyncio.gather(*(guess.outcome(WAIT) for guess in guesses))
        wrong = harness.api("prs_wrong")
        statuses = await asyncio.gather(*(wrong.get(domain.path()) for _ in range(20)))
        codes = [answer["code"] for answer in answers]
        codes += [status.json()["error"]["code"] for status in statuses]
        assert codes.count("unauthorized") == FAILURES, codes
        assert codes.count("rate_limited") == 40 - FAILURES, codes
