"""The JavaScript client in Node keeps its seat by itself: through a server
killed and restarted, a graceful restart, a connection cut or stalled, and a
seat taken meanwhile; final ends stop it for good. As tests/client/test_reconnect.py
and test_final.py do for Python. No test code tells the client anything after
start(): it only watches."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
from client.proxy import Proxy
from client.restarts import HEARTBEAT, LEASE_TTL, MAX_DELAY, expired_devices, seat_taken_meanwhile
from server.client import API, Domain, Harness, Message, ok
from servers import ServerProcess

from .driver import WAIT, NodeClient, options_of

if TYPE_CHECKING:
    from conftest import StartServer


@dataclass
class Seated:
    """The client on a seat of a pool whose other seats are held."""

    domain: Domain
    pool: Message
    device_id: str
    license: Message


async def seated(
    harness: Harness, js: NodeClient, url: str, seats: int = 3, *, ws: bool = True
) -> Seated:
    domain = await harness.new_domain()
    pool = await domain.pool(seats)
    for _ in range(seats - 1):
        await harness.login(await domain.seat_user(pool))
    options = options_of(await domain.seat_user(pool), url, maxDelay=MAX_DELAY)
    if not (await js.create(**options, ws=ws))["globalWebSocket"] and not ws:
        pytest.skip("this Node has no global WebSocket")
    return Seated(domain, pool, options["device"]["id"], await js.start())


async def back_on(js: NodeClient, seat: Seated) -> None:
    """The client says it is back on the seat it held, with a higher fencing token."""
    reconnected = await js.expect("reconnected", timeout=LEASE_TTL)
    assert reconnected["recovered"] is True and reconnected["_state"] == "holding"
    state = await js.state()
    now, before = state["license"], seat.license
    assert state["state"] == "holding" and now is not None
    assert (now["pool"]["id"], now["seat"]) == (before["pool"]["id"], before["seat"])
    assert now["fencing_token"] > before["fencing_token"]
    entry = await seat.domain.pool_presence(seat.pool)
    assert (before["seat"], seat.device_id) in [
        (holder["seat"], holder["device"]["id"]) for holder in entry["holders"]
    ]
    seat.license = now


async def killed_and_restarted(process: ServerProcess, js: NodeClient, seat: Seated) -> None:
    """SIGKILL the server and start it again: the client gets its seat back."""
    js.forget()
    await asyncio.to_thread(process.kill)
    reconnecting = await js.expect("reconnecting", attempt=1)
    assert reconnecting["_state"] == "reconnecting"
    state = await js.state()
    assert state["license"] is None and state["state"] in ("reconnecting", "connecting")
    await asyncio.to_thread(process.start)
    restarted = time.monotonic()
    await back_on(js, seat)
    print(f"back {time.monotonic() - restarted:.2f} s after the restart")
    waits = js.of("reconnecting")
    assert [wait["attempt"] for wait in waits] == list(range(1, len(waits) + 1))
    for wait in waits:
        assert 0 <= wait["delay"] <= min(MAX_DELAY, 0.5 * 2 ** (wait["attempt"] - 1))


async def test_sigkill_and_restart(restartable: ServerProcess, js: NodeClient) -> None:
    async with Harness(restartable.server) as harness:
        seat = await seated(harness, js, restartable.ws_url, seats=5)
        for _ in range(2):  # the second time, the client counts its attempts from 1 again
            await killed_and_restarted(restartable, js, seat)
        assert await expired_devices(seat.domain) == []
        await js.stop()
        await seat.domain.wait_pool(seat.pool, occupied=4)


async def test_sigkill_and_restart_on_the_global_websocket(
    restartable: ServerProcess, js_global: NodeClient
) -> None:
    async with Harness(restartable.server) as harness:
        seat = await seated(harness, js_global, restartable.ws_url, seats=2, ws=False)
        await killed_and_restarted(restartable, js_global, seat)
        await js_global.stop()
        await seat.domain.wait_pool(seat.pool, occupied=1)


async def test_sigterm_restart_is_not_final(restartable: ServerProcess, js: NodeClient) -> None:
    async with Harness(restartable.server) as harness:
        seat = await seated(harness, js, restartable.ws_url, seats=1)
        status = await asyncio.to_thread(restartable.terminate)
        assert status in (0, -15), status
        await js.expect("session_ended", reason="server_shutdown")
        await js.expect("reconnecting")
        await asyncio.to_thread(restartable.start)
        await back_on(js, seat)
        await js.stop()


async def test_cut_connection(restartable: ServerProcess, js: NodeClient) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        seat = await seated(harness, js, proxy.ws_url)
        proxy.cut()
        await js.expect("reconnecting", attempt=1)
        await back_on(js, seat)
        assert len(proxy.arrivals) >= 2  # it came back through the proxy
        await js.stop()


async def test_stalled_connection(restartable: ServerProcess, js: NodeClient) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        seat = await seated(harness, js, proxy.ws_url, seats=2)
        await js.expect("heartbeat_ack", seq=1)
        stalled_at = time.monotonic()
        stalled = proxy.stall()
        # Nothing closed: only the missing heartbeat_ack tells the client.
        await js.expect("reconnecting", attempt=1, timeout=3 * HEARTBEAT + WAIT)
        noticed = time.monotonic() - stalled_at
        await back_on(js, seat)
        back = time.monotonic() - stalled_at
        print(f"stall noticed after {noticed:.2f} s, seat back after {back:.2f} s")
        assert back < LEASE_TTL
        # The old connection, flowing again, tells the client nothing (it was
        # replaced on the server, which the client must not take for its own end).
        proxy.resume(stalled)
        js.forget()
        await js.expect("heartbeat_ack", seq=3)
        assert (await js.state())["state"] == "holding" and js.of("session_ended") == []
        assert await expired_devices(seat.domain) == []
        await js.stop()


async def test_refused_after_reconnecting_acquires_when_a_seat_is_free(
    restartable: ServerProcess, js: NodeClient
) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        await js.create(
            **options_of(await domain.seat_user(pool), proxy.ws_url, maxDelay=MAX_DELAY)
        )
        await js.start()
        intruder = await seat_taken_meanwhile(harness, domain, pool, proxy)
        refused = await js.expect("error", code="seat_occupied", timeout=WAIT + MAX_DELAY)
        assert refused["retryable"] is True and refused["_state"] == "refused"
        state = await js.state()
        assert state["state"] == "refused" and state["license"] is None
        await js.expect("heartbeat_ack")  # it keeps the connection alive
        await intruder.logout()
        reconnected = await js.expect("reconnected")
        assert reconnected["recovered"] is False
        state = await js.state()
        assert state["state"] == "holding" and state["license"]["seat"] == 1
        await js.stop()


async def test_stop_while_reconnecting_is_quick(restartable: ServerProcess, js: NodeClient) -> None:
    async with Harness(restartable.server) as harness:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        member = await domain.seat_user(pool)
        # A jitter that always draws 0.5: the waits are half their bounds, exactly.
        options = options_of(member, restartable.ws_url, firstDelay=0.2, maxDelay=0.5, random=0.5)
        await js.create(**options)
        await js.start()
        await asyncio.to_thread(restartable.kill)
        await js.expect("reconnecting", attempt=4)
        delays = [wait["delay"] for wait in js.of("reconnecting")[:4]]
        assert delays == pytest.approx([0.1, 0.2, 0.25, 0.25])  # 0.2 * 2**n, capped at 0.5
        await js.stop(timeout=1.0)
        assert (await js.expect("stopped"))["final"] is None
        assert (await js.state())["state"] == "stopped"


async def assert_final(js: NodeClient, reason: str, proxy: Proxy | None = None) -> None:
    """The client stopped on `session_ended` `reason`, without trying to come back."""
    ended = await js.expect("session_ended", reason=reason)
    assert ended["message"]
    stopped = await js.expect("stopped")
    assert stopped["final"] == {k: v for k, v in ended.items() if k != "_state"}
    assert [entry["event"]["type"] for entry in js.events][-2:] == ["session_ended", "stopped"]
    assert js.of("reconnecting") == []
    state = await js.state()
    assert state["state"] == "stopped" and state["license"] is None
    if proxy is not None:
        assert len(proxy.arrivals) == 1, "it connected again"


async def test_released_by_admin_is_final(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    async with Proxy(int(harness.server.base_url.rsplit(":", 1)[1])) as proxy:
        await js.create(**options_of(await domain.seat_user(pool), proxy.ws_url))
        license = await js.start()
        ok(await harness.admin.delete(domain.path("leases", license["lease_id"])), 204)
        await assert_final(js, "released_by_admin", proxy)
    await domain.wait_pool(pool, occupied=0)
    await js.stop()  # after a final end: nothing to do


async def test_taken_over_from_another_device_is_final(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    await js.create(**options_of(member, harness.server.ws_url, device={"id": "desk"}))
    license = await js.start()
    phone = await harness.login(member, takeover=True, device_id="phone", kind="phone")
    assert phone.license["seat"] == license["seat"]
    await assert_final(js, "taken_over")


async def test_replaced_by_the_same_device_is_final(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    await js.create(**options_of(member, harness.server.ws_url, device={"id": "tab"}))
    await js.start()
    await harness.login(member, device_id="tab", kind="tablet")
    await assert_final(js, "replaced")


async def test_token_revoked_is_final(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    await js.create(**options_of(member, harness.server.ws_url))
    await js.start()
    await domain.revoke(member.token_id)
    await assert_final(js, "token_revoked")


async def test_a_token_refused_on_reconnecting_is_final(harness: Harness, js: NodeClient) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    tokens = [member.token, "prs_revoked-meanwhile"]
    async with Proxy(int(harness.server.base_url.rsplit(":", 1)[1])) as proxy:
        device = {"id": "d", "kind": "tablet"}
        await js.create(url=proxy.ws_url, tokens=tokens, device=device)
        await js.start()
        proxy.cut()
        stopped = await js.expect("stopped")
    assert stopped["final"]["type"] == "error" and stopped["final"]["code"] == "unauthorized"
    assert await js.ask("fetched") == 2
    assert [m["attempt"] for m in js.of("reconnecting")] == [1]
    assert (await js.state())["state"] == "stopped"


async def test_a_changed_license_logs_in_again_under_the_new_one(
    harness: Harness, js: NodeClient
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    await js.create(**options_of(member, harness.server.ws_url))
    await js.start()
    path = f"{API}/domains/{domain.id}/users/{member.id}/license"
    ok(await harness.admin.put(path, {"model": "named"}))
    await js.expect("session_ended", reason="license_changed")
    assert (await js.expect("reconnected"))["recovered"] is False
    state = await js.state()
    assert state["license"] == {"model": "named"} and state["state"] == "holding"
    await domain.wait_pool(pool, occupied=0)
    await js.stop()


async def test_lease_expired_is_not_final(own_server: StartServer, js: NodeClient) -> None:
    # Heartbeats slower than the lease time (a misconfigured server): the lease expires.
    process = own_server(lease_ttl=2, heartbeat_interval=6)
    async with Harness(process.server) as harness:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        await js.create(
            **options_of(await domain.seat_user(pool), process.ws_url, maxDelay=MAX_DELAY)
        )
        await js.start()
        await js.expect("session_ended", reason="lease_expired")
        await js.expect("reconnecting", attempt=1)
        await js.expect("reconnected")
        assert (await js.state())["state"] == "holding"
        await js.stop()
