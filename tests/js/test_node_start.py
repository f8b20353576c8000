"""The JavaScript client in Node against a real server: start(), calls, stop(),
refusals, and start() against what is no presence server (a clear error,
quickly, never a hang). As tests/client/test_start.py does for Python."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from client.garbage import ANSWERS, CLOSES, garbage_server
from server.client import Harness
from servers import free_port

from .driver import WAIT, JsError, Message, NodeClient, node_major, options_of

#: Seconds within which start() must fail on what is no presence server.
QUICK = 3.0


async def test_the_server_serves_the_module(harness: Harness) -> None:
    async with httpx.AsyncClient(base_url=harness.server.base_url, trust_env=False) as http:
        module = await http.get("/client/presence-client.js")
        assert module.status_code == 200
        assert module.headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        )
        assert "export class PresenceClient" in module.text
        declarations = await http.get("/client/presence-client.d.ts")
        assert declarations.status_code == 200 and "PresenceClient" in declarations.text
        assert declarations.headers["content-type"].startswith("application/typescript")
        # A device app's page on another origin may import it.
        imported = await http.get("/client/presence-client.js", headers={"Origin": "https://app"})
        assert imported.headers["access-control-allow-origin"] == "*"
        wallboard = await http.get("/wallboard.js", headers={"Origin": "https://app"})
        assert wallboard.status_code == 200
        assert "access-control-allow-origin" not in wallboard.headers


async def test_start_returns_the_license_and_stop_frees_the_seat(
    harness: Harness, js: NodeClient
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    options = options_of(member, harness.server.ws_url, device={"name": "Ann's phone"})
    assert (await js.create(**options))["state"] == "idle"
    license = await js.start()
    assert license["model"] == "seat" and license["pool"]["id"] == pool["id"]
    assert license["seat"] == 1 and license["fencing_token"] >= 1
    welcome = await js.expect("welcome")
    assert welcome["license"] == license and welcome["_state"] == "holding"
    availability = await js.expect("availability", occupied=1)
    assert availability["pool"] == pool["id"] and availability["free"] == 1
    state = await js.state()
    assert state["state"] == "holding" and state["license"] == license
    assert state["availability"]["occupied"] == 1 and state["position"] is None
    entry = await domain.wait_pool(pool, occupied=1)
    device = {"id": options["device"]["id"], "kind": "desktop", "name": "Ann's phone"}
    assert entry["holders"][0]["device"] == device

    # Availability is pushed: another user takes the second seat.
    await harness.login(await domain.seat_user(pool))
    assert (await js.expect("availability", occupied=2))["free"] == 0

    await js.stop()
    await js.expect("bye")
    stopped = await js.expect("stopped")
    assert stopped["final"] is None and stopped["_state"] == "stopped"
    state = await js.state()
    assert state["state"] == "stopped" and state["license"] is None
    await domain.wait_pool(pool, occupied=1)  # the seat was freed at once, by the logout
    # The freed seat goes to someone else.
    await harness.login(await domain.seat_user(pool))
    await js.stop()  # again: nothing happens
    with pytest.raises(JsError) as refused:
        await js.start()
    assert refused.value.code == "stopped"


async def test_heartbeats_keep_the_seat_past_the_lease_time(
    harness: Harness, js: NodeClient
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    await js.create(**options_of(await domain.seat_user(pool), harness.server.ws_url))
    await js.start()
    for seq in (1, 2, 3):  # three heartbeat intervals: past the lease TTL of 2 s
        await js.expect("heartbeat_ack", seq=seq)
    assert (await js.state())["state"] == "holding"
    assert (await domain.pool_presence(pool))["occupied"] == 1
    assert js.of("reconnecting") == []
    await js.stop()


async def test_calls(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    await js.create(**options_of(await domain.seat_user(pool), harness.server.ws_url))
    with pytest.raises(JsError) as refused:
        await js.call_start("c-0")
    assert refused.value.code == "not_logged_in"  # not started yet
    await js.start()
    started = await js.call_start("c-1")
    assert started["type"] == "call_started" and started["call_id"] == "c-1"
    assert isinstance(started["started_at"], str)
    await domain.wait_pool(pool, in_call=1)
    with pytest.raises(JsError) as refused:
        await js.call_start("c-2")
    assert refused.value.code == "call_in_progress" and refused.value.name == "PresenceError"
    with pytest.raises(JsError) as refused:
        await js.call_end("c-9")
    assert refused.value.code == "unknown_call"
    ended = await js.call_end("c-1")
    assert ended["type"] == "call_ended" and ended["duration"] >= 0
    await js.expect("call_started", call_id="c-1")
    await js.expect("call_ended", call_id="c-1")
    await domain.wait_pool(pool, in_call=0)
    # Requests sent together are asked one at a time, each with its own answer.
    together = [js.begin("callStart", callId="c-3"), js.begin("callEnd", callId="c-3")]
    async with asyncio.timeout(WAIT):
        first, second = await asyncio.gather(*together)
    assert (first["type"], second["type"]) == ("call_started", "call_ended")
    with pytest.raises(JsError) as refused:
        await js.call_start("")
    assert refused.value.name == "TypeError"
    await js.stop()
    with pytest.raises(JsError) as refused:
        await js.call_start("c-4")
    assert refused.value.code == "stopped"


async def test_listeners_that_throw_do_not_break_the_client(
    harness: Harness, js: NodeClient
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    await js.create(
        **options_of(await domain.seat_user(pool), harness.server.ws_url), throwing=True
    )
    await js.start()
    await js.expect("availability")
    await js.expect("heartbeat_ack", seq=2)
    assert (await js.call_start("c-1"))["call_id"] == "c-1"
    assert (await js.call_end("c-1"))["type"] == "call_ended"
    assert "a listener failed on purpose" in js.reported
    assert "an async listener failed on purpose" in js.reported
    assert (await js.state())["state"] == "holding"
    # The functions on() returned remove them: nothing is reported any more.
    await js.ask("quiet")
    reported = len(js.reported)
    await js.expect("heartbeat_ack", seq=4)
    assert len(js.reported) == reported
    await js.stop()
    await domain.wait_pool(pool, occupied=0)


async def test_named_license(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    await js.create(**options_of(member, harness.server.ws_url, device={"kind": "phone"}))
    assert await js.start() == {"model": "named"}
    assert (await domain.presence())["named"][0]["devices"][0]["kind"] == "phone"
    await js.stop()
    assert (await domain.presence())["named"] == []


async def test_seat_refusals_reject_start(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await domain.seat_user(pool)
    await harness.login(holder)
    await js.create(**options_of(await domain.seat_user(pool), harness.server.ws_url))
    with pytest.raises(JsError) as refused:
        await js.start()
    assert refused.value.code == "seat_occupied" and refused.value.retryable is True
    assert refused.value.message is not None and "occupied" in refused.value.message
    stopped = await js.expect("stopped")
    assert stopped["final"]["code"] == "seat_occupied"
    assert (await js.state())["state"] == "stopped"

    await js.create(**options_of(holder, harness.server.ws_url, device={"id": "second"}))
    with pytest.raises(JsError) as refused:
        await js.start()
    assert refused.value.code == "already_logged_in"
    # Refused clients closed their connections: only the holder is left.
    await domain.wait_pool(pool, occupied=1, queued=0)


async def test_unauthorized_and_no_license_reject_start(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    for token in ("prs_not-a-token", ""):
        await js.create(url=harness.server.ws_url, token=token, device={"id": "d", "kind": "other"})
        with pytest.raises(JsError) as refused:
            await js.start()
        assert refused.value.code == "unauthorized" and refused.value.retryable is False
    assert (await js.expect("stopped"))["final"]["code"] == "unauthorized"
    nobody = await domain.user({"model": "none"})
    await js.create(**options_of(nobody, harness.server.ws_url))
    with pytest.raises(JsError) as refused:
        await js.start()
    assert refused.value.code == "no_license"
    assert js.of("reconnecting") == []


async def test_queue_waits_until_the_holder_logs_out(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    member = await domain.seat_user(pool)
    await js.create(**options_of(member, harness.server.ws_url, queue=True))
    starting = js.begin("start")
    queued = await js.expect("queued", position=1)
    assert queued["_state"] == "queued"
    state = await js.state()
    assert state["position"] == 1 and state["license"] is None
    # Queued past the lease time, on heartbeats timed by the acks' lease time.
    await js.expect("heartbeat_ack", seq=3, timeout=WAIT + 2)
    assert not starting.done()
    await holder.logout()
    async with asyncio.timeout(WAIT):
        license = await starting
    assert license["seat"] == 1
    state = await js.state()
    assert state["state"] == "holding" and state["position"] is None
    await js.stop()


async def test_stop_during_a_queued_start_rejects_start(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    await harness.login(await domain.seat_user(pool))
    await js.create(**options_of(await domain.seat_user(pool), harness.server.ws_url, queue=True))
    starting = js.begin("start")
    await js.expect("queued")
    await js.stop()
    with pytest.raises(JsError) as stopped:
        async with asyncio.timeout(WAIT):
            await starting
    assert stopped.value.code == "stopped"
    await domain.wait_pool(pool, queued=0)


OPTIONS: Message = {
    "url": "ws://127.0.0.1:1/ws/device",
    "token": "t",
    "device": {"id": "d", "kind": "phone"},
}
BAD_OPTIONS: list[tuple[Message, str]] = [
    ({"token": None}, "TypeError"),  # neither token nor getToken
    ({"tokens": ["a"]}, "TypeError"),  # both token and getToken
    ({"device": {"id": "", "kind": "phone"}}, "RangeError"),
    ({"device": {"id": "x" * 65, "kind": "phone"}}, "RangeError"),
    ({"device": {"id": "a\nb", "kind": "phone"}}, "RangeError"),
    ({"device": {"id": "d", "kind": "toaster"}}, "RangeError"),
    ({"device": {"id": 7, "kind": "phone"}}, "TypeError"),
    ({"device": {"id": "d", "kind": "phone", "name": "n" * 129}}, "RangeError"),
    ({"firstDelay": 30}, "RangeError"),  # more than maxDelay
    ({"firstDelay": -1}, "RangeError"),
    ({"timeout": 0}, "RangeError"),
    ({"maxDelay": "20"}, "TypeError"),
    ({"queue": "yes"}, "TypeError"),
    ({"url": None}, "TypeError"),
    ({"domain": "acme"}, "TypeError"),  # a presence token names no domain
    ({"domain": "acme", "idToken": "eyJ"}, "TypeError"),  # both token and idToken
    ({"token": None, "idToken": "eyJ"}, "TypeError"),  # no domain
    ({"token": None, "domain": "", "idTokens": ["eyJ"]}, "TypeError"),
    ({"token": None, "domain": "acme", "idToken": "eyJ", "idTokens": ["eyJ"]}, "TypeError"),
    ({"token": None, "domain": "acme", "idToken": 7}, "TypeError"),
]


async def test_wrong_options_throw_from_the_constructor(js: NodeClient) -> None:
    for change, name in BAD_OPTIONS:
        with pytest.raises(JsError) as thrown:
            await js.create(**{**OPTIONS, **change})
        assert thrown.value.name == name, (change, thrown.value)
    # Printable ids as the server has them: spaces and any script are fine.
    await js.create(**{**OPTIONS, "device": {"id": "Ann's PC ☎ 電話", "kind": "phone"}})
    if node_major() < 22:  # no global WebSocket, and none given
        with pytest.raises(JsError) as thrown:
            await js.create(**OPTIONS, ws=False)
        assert thrown.value.name == "TypeError" and "WebSocket option" in str(thrown.value.message)


async def test_a_failing_token_callback_fails_start(js: NodeClient) -> None:
    # It is called before connecting: nothing need listen at the URL.
    url = f"ws://127.0.0.1:{free_port()}/ws/device"
    await js.create(**{**OPTIONS, "url": url, "token": None, "domain": "acme", "idTokens": [None]})
    with pytest.raises(JsError) as failed:
        await js.start(timeout=QUICK)
    assert failed.value.name == "Error" and "identity provider is away" in str(failed.value)
    assert (await js.expect("stopped"))["final"] is None
    assert await js.ask("fetched") == 1 and js.of("reconnecting") == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/ws/device", "not a url", "ws://127.0.0.1:notaport/ws/device"]
)
async def test_a_bad_url_fails_start_at_once(js: NodeClient, url: str) -> None:
    await js.create(**{**OPTIONS, "url": url})
    with pytest.raises(JsError) as failed:
        await js.start(timeout=QUICK)
    assert failed.value.code == "connection_failed", failed.value
    assert (await js.expect("stopped"))["final"] is None
    assert (await js.state())["state"] == "stopped"


async def test_a_refused_connection_fails_start(js: NodeClient) -> None:
    await js.create(**{**OPTIONS, "url": f"ws://127.0.0.1:{free_port()}/ws/device"})
    with pytest.raises(JsError) as failed:
        await js.start(timeout=QUICK)
    assert failed.value.code == "connection_failed" and "ECONNREFUSED" in str(failed.value)


async def test_an_http_answer_that_is_no_upgrade_fails_start(
    harness: Harness, js: NodeClient
) -> None:
    url = harness.server.ws_base + "/no-such-endpoint"
    await js.create(**{**OPTIONS, "url": url})
    with pytest.raises(JsError) as failed:
        await js.start(timeout=QUICK)
    assert failed.value.code == "connection_failed" and "404" in str(failed.value)


@pytest.mark.parametrize("answer", ANSWERS)
async def test_a_server_answering_garbage_fails_start(js: NodeClient, answer: str) -> None:
    async with garbage_server(answer) as url:
        await js.create(**{**OPTIONS, "url": url, "timeout": 1})
        with pytest.raises(JsError) as failed:
            await js.start(timeout=QUICK)
        expected = "connection_failed" if answer in CLOSES else "protocol_error"
        print(f"{answer}: {failed.value}")
        assert failed.value.code == expected, failed.value
        assert (await js.state())["state"] == "stopped"
        assert js.of("reconnecting") == []


async def test_a_tcp_server_that_never_upgrades_fails_start(js: NodeClient) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads the upgrade request, answers nothing
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        await js.create(**{**OPTIONS, "url": f"ws://127.0.0.1:{port}/ws/device", "timeout": 1})
        with pytest.raises(JsError) as failed:
            await js.start(timeout=QUICK)
        assert failed.value.code == "connection_failed" and "not open within 1 s" in str(
            failed.value
        )


async def test_without_the_ws_option_on_the_global_websocket(
    harness: Harness, js_global: NodeClient
) -> None:
    js = js_global
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    options = options_of(await domain.seat_user(pool), harness.server.ws_url)
    if not (await js.create(**options, ws=False))["globalWebSocket"]:
        pytest.skip("this Node has no global WebSocket")
    license = await js.start()
    assert license["seat"] == 1
    await js.expect("availability", occupied=1)
    assert (await js.call_start("c-1"))["call_id"] == "c-1"
    await js.call_end("c-1")
    await js.expect("heartbeat_ack", seq=1)
    await js.stop()
    await domain.wait_pool(pool, occupied=0)
