"""`Client.start()` and `call()` against a real server, and start() against
what is no presence server: a clear error, quickly, never a hang."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from server.client import Harness
from servers import free_port

from presence.client import (
    CallRefused,
    Client,
    ClientStopped,
    ConnectionFailed,
    LoginRefused,
    ProtocolViolation,
    State,
)

from .garbage import ANSWERS, CLOSES, garbage_server
from .watch import WAIT, Watcher, client_of

#: Seconds within which start() must fail on what is no presence server.
QUICK = 3.0


async def test_start_returns_the_license_and_stop_frees_the_seat(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    client = client_of(member, harness.server.ws_url, name="Ann's PC")
    watcher = Watcher(client)
    license = await client.start()
    assert license["model"] == "seat" and license["pool"]["id"] == pool["id"]
    assert license["seat"] == 1 and client.license == license
    assert client.state is State.HOLDING
    await watcher.expect("welcome")
    entry = await domain.wait_pool(pool, occupied=1)
    device = {"id": client.device["id"], "kind": "desktop", "name": "Ann's PC"}
    assert entry["holders"][0]["device"] == device
    await client.stop()
    await watcher.expect("bye")
    assert await watcher.ended_with() is None
    assert client.state is State.STOPPED and client.license is None
    await domain.wait_pool(pool, occupied=0)
    await client.stop()  # again: nothing happens


async def test_context_manager_and_named_license(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    async with client_of(member, harness.server.ws_url, kind="phone") as client:
        assert client.license == {"model": "named"}
        assert (await domain.presence())["named"][0]["devices"][0]["kind"] == "phone"
    assert client.state is State.STOPPED
    assert (await domain.presence())["named"] == []


async def test_heartbeats_keep_the_seat_past_the_lease_time(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    async with client_of(await domain.seat_user(pool), harness.server.ws_url) as client:
        watcher = Watcher(client)
        for seq in (1, 2, 3):  # three heartbeat intervals: past the lease TTL of 2 s
            await watcher.expect("heartbeat_ack", seq=seq)
        assert client.state is State.HOLDING
        assert (await domain.pool_presence(pool))["occupied"] == 1


async def test_seat_occupied_and_already_logged_in_refuse_start(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await domain.seat_user(pool)
    async with client_of(holder, harness.server.ws_url):
        other = client_of(await domain.seat_user(pool), harness.server.ws_url)
        with pytest.raises(LoginRefused) as refused:
            await other.start()
        assert refused.value.code == "seat_occupied" and refused.value.retryable is True
        assert "occupied" in refused.value.message
        assert other.state is State.STOPPED
        final = await other.wait_stopped()
        assert final is not None and final["code"] == "seat_occupied"

        second = client_of(holder, harness.server.ws_url, device_id="second-device")
        with pytest.raises(LoginRefused) as refused:
            await second.start()
        assert refused.value.code == "already_logged_in"
        # Refused clients closed their connections: only the holder is left.
        await domain.wait_pool(pool, occupied=1)


async def test_unauthorized_and_no_license_refuse_start(harness: Harness) -> None:
    domain = await harness.new_domain()
    for token in ("prs_not-a-token", ""):
        client = Client(harness.server.ws_url, token=token, device_id="d1", kind="desktop")
        with pytest.raises(LoginRefused) as refused:
            await client.start()
        assert refused.value.code == "unauthorized" and refused.value.retryable is False
    nobody = await domain.user({"model": "none"})
    with pytest.raises(LoginRefused) as refused:
        await client_of(nobody, harness.server.ws_url).start()
    assert refused.value.code == "no_license"


async def test_queue_waits_until_the_holder_logs_out(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = client_of(await domain.seat_user(pool), harness.server.ws_url)
    await holder.start()
    waiting = client_of(await domain.seat_user(pool), harness.server.ws_url, queue=True)
    watcher = Watcher(waiting)
    starting = asyncio.create_task(waiting.start())
    await watcher.expect("queued", position=1)
    assert waiting.state is State.QUEUED and waiting.license is None
    # Queued past the lease time, on heartbeats timed by the acks' lease time.
    await watcher.expect("heartbeat_ack", seq=3, timeout=WAIT + 2)
    assert not starting.done()
    await holder.stop()
    async with asyncio.timeout(WAIT):
        license = await starting
    assert license["seat"] == 1 and waiting.state is State.HOLDING
    await waiting.stop()


async def test_stop_during_a_queued_start_ends_start(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    async with client_of(await domain.seat_user(pool), harness.server.ws_url):
        waiting = client_of(await domain.seat_user(pool), harness.server.ws_url, queue=True)
        watcher = Watcher(waiting)
        starting = asyncio.create_task(waiting.start())
        await watcher.expect("queued")
        await waiting.stop()
        with pytest.raises(ClientStopped):
            await starting
        await domain.wait_pool(pool, queued=0)


async def test_calls(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    async with client_of(await domain.seat_user(pool), harness.server.ws_url) as client:
        watcher = Watcher(client)
        async with client.call("c-1") as started:
            assert started["type"] == "call_started" and started["call_id"] == "c-1"
            await domain.wait_pool(pool, in_call=1)
            with pytest.raises(CallRefused) as refused:
                async with client.call("c-2"):
                    raise AssertionError("a second call started")
            assert refused.value.code == "call_in_progress"
        ended = await watcher.expect("call_ended", call_id="c-1")
        assert ended["duration"] >= 0
        await domain.wait_pool(pool, in_call=0)
        # A call whose body fails is ended all the same.
        with pytest.raises(KeyError):
            async with client.call("c-3"):
                raise KeyError("the app failed")
        await watcher.expect("call_ended", call_id="c-3")
    with pytest.raises(ClientStopped):
        async with client.call("c-4"):
            pass


def test_a_device_the_server_would_refuse_is_a_value_error() -> None:
    url = "ws://127.0.0.1:1/ws/device"
    bad = [("", "desktop"), ("d", "toaster"), ("x" * 65, "phone"), ("a\nb", "phone")]
    for device_id, kind in bad:
        with pytest.raises(ValueError):
            Client(url, token="t", device_id=device_id, kind=kind)
    with pytest.raises(ValueError):
        Client(url, device_id="d", kind="phone")  # no token


async def fetch() -> str:
    return "t"


@pytest.mark.parametrize(
    "ways",
    [
        {"token": "t", "get_token": fetch},
        {"token": "t", "domain": "acme", "id_token": "eyJ"},
        {"get_token": fetch, "domain": "acme", "get_id_token": fetch},
        {"domain": "acme", "id_token": "eyJ", "get_id_token": fetch},
        {"id_token": "eyJ"},  # no domain
        {"domain": "", "get_id_token": fetch},
        {"domain": "acme", "token": "t"},  # a presence token names no domain
        {"domain": "acme"},
    ],
)
def test_one_way_of_signing_in_exactly(ways: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="token"):
        Client("ws://127.0.0.1:1/ws/device", device_id="d", kind="phone", **ways)


async def test_a_failing_token_callable_fails_start() -> None:
    # It is awaited before connecting: nothing need listen at the URL.
    url = f"ws://127.0.0.1:{free_port()}/ws/device"

    async def unreachable() -> str:
        raise OSError("the identity provider cannot be reached")

    async def no_token() -> Any:
        return None

    client = Client(url, domain="acme", get_id_token=unreachable, device_id="d", kind="phone")
    with pytest.raises(OSError, match="cannot be reached"):
        await client.start()
    assert client.state is State.STOPPED and await client.wait_stopped() is None
    client = Client(url, get_token=no_token, device_id="d", kind="phone")
    with pytest.raises(TypeError, match="returned NoneType, not str"):
        await client.start()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/ws/device", "not a url", "ws://127.0.0.1:notaport/ws/device"]
)
async def test_a_bad_url_fails_start_at_once(url: str) -> None:
    client = Client(url, token="t", device_id="d", kind="desktop")
    async with asyncio.timeout(QUICK):
        with pytest.raises(ConnectionFailed, match="not a ws:// or wss:// URL"):
            await client.start()
    assert client.state is State.STOPPED and await client.wait_stopped() is None


async def test_a_refused_connection_fails_start() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/device"
    client = Client(url, token="t", device_id="d", kind="desktop")
    async with asyncio.timeout(QUICK):
        with pytest.raises(ConnectionFailed, match="Cannot open"):
            await client.start()


async def test_an_http_answer_that_is_no_upgrade_fails_start(harness: Harness) -> None:
    url = harness.server.base_url.replace("http", "ws") + "/no-such-endpoint"
    async with asyncio.timeout(QUICK):
        with pytest.raises(ConnectionFailed, match="HTTP 404"):
            await Client(url, token="t", device_id="d", kind="desktop").start()


@pytest.mark.parametrize("answer", ANSWERS)
async def test_a_server_answering_garbage_fails_start(answer: str) -> None:
    async with garbage_server(answer) as url:
        client = Client(url, token="t", device_id="d", kind="desktop", timeout=1)
        expected = ConnectionFailed if answer in CLOSES else ProtocolViolation
        async with asyncio.timeout(QUICK):
            with pytest.raises(expected) as failed:
                await client.start()
        print(f"{answer}: {failed.value}")
        assert client.state is State.STOPPED
