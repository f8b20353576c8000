"""The client keeps its seat by itself: through a server killed and restarted,
a connection cut or stalled, a graceful restart and an expired lease. No test
code tells the client anything after start(): it only watches."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.client import Domain, Harness, Member, Message
from servers import ServerProcess

from presence.client import Client, State

from .proxy import Proxy
from .restarts import HEARTBEAT, LEASE_TTL, MAX_DELAY, expired_devices, seat_taken_meanwhile
from .watch import WAIT, Watcher, client_of

if TYPE_CHECKING:
    from conftest import StartServer


@dataclass
class Seated:
    """Clients holding seats of one pool."""

    domain: Domain
    pool: Message
    members: list[Member]
    clients: list[Client]
    watchers: list[Watcher]
    licenses: list[Message]


async def seated(harness: Harness, url: str, seats: int, holders: int) -> Seated:
    domain = await harness.new_domain()
    pool = await domain.pool(seats)
    members = [await domain.seat_user(pool) for _ in range(holders)]
    clients = [client_of(member, url, max_delay=MAX_DELAY) for member in members]
    watchers = [Watcher(client) for client in clients]
    licenses = [await client.start() for client in clients]
    return Seated(domain, pool, members, clients, watchers, licenses)


async def recovered(seats: Seated, timeout: float = LEASE_TTL) -> None:
    """Every client says it is back on its seat, with a higher fencing token."""
    for client, watcher, before in zip(seats.clients, seats.watchers, seats.licenses, strict=True):
        assert (await watcher.expect("reconnected", timeout))["recovered"] is True
        now = client.license
        assert now is not None and client.state is State.HOLDING
        assert (now["pool"]["id"], now["seat"]) == (before["pool"]["id"], before["seat"])
        assert now["fencing_token"] > before["fencing_token"]
    entry = await seats.domain.pool_presence(seats.pool)
    held = {holder["seat"]: holder["device"]["id"] for holder in entry["holders"]}
    devices = [client.device["id"] for client in seats.clients]
    assert held == {lic["seat"]: dev for lic, dev in zip(seats.licenses, devices, strict=True)}


async def test_sigkill_and_restart(restartable: ServerProcess) -> None:
    async with Harness(restartable.server) as harness:
        seats = await seated(harness, restartable.ws_url, seats=5, holders=3)
        for _ in range(2):  # the second time, the clients count their attempts from 1 again
            for watcher in seats.watchers:
                watcher.forget()
            await asyncio.to_thread(restartable.kill)
            for watcher in seats.watchers:
                await watcher.expect("reconnecting", attempt=1)
            assert all(client.license is None for client in seats.clients)
            await asyncio.to_thread(restartable.start)
            restarted = time.monotonic()
            await recovered(seats)
            print(f"all back {time.monotonic() - restarted:.2f} s after the restart")
            for watcher in seats.watchers:
                waits = watcher.of("reconnecting")
                assert [wait["attempt"] for wait in waits] == list(range(1, len(waits) + 1))
                for wait in waits:
                    assert 0 <= wait["delay"] <= min(MAX_DELAY, 0.5 * 2 ** (wait["attempt"] - 1))
            seats.licenses = [client.license or {} for client in seats.clients]
        assert await expired_devices(seats.domain) == []
        for client in seats.clients:
            await client.stop()


async def test_sigterm_restart_is_not_final(restartable: ServerProcess) -> None:
    async with Harness(restartable.server) as harness:
        seats = await seated(harness, restartable.ws_url, seats=2, holders=2)
        status = await asyncio.to_thread(restartable.terminate)
        assert status in (0, -15), status
        for watcher in seats.watchers:
            await watcher.expect("session_ended", reason="server_shutdown")
            await watcher.expect("reconnecting")
        await asyncio.to_thread(restartable.start)
        await recovered(seats)
        for client in seats.clients:
            await client.stop()


async def test_cut_connection(restartable: ServerProcess) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        # The pool's other seats are held, so the seat freed by the cut is the one left.
        others = await seated(harness, restartable.ws_url, seats=3, holders=2)
        member = await others.domain.seat_user(others.pool)
        client = client_of(member, proxy.ws_url, max_delay=MAX_DELAY)
        watcher = Watcher(client)
        before = await client.start()
        proxy.cut()
        await watcher.expect("reconnecting", attempt=1)
        assert (await watcher.expect("reconnected"))["recovered"] is True
        assert client.license is not None and client.license["seat"] == before["seat"]
        assert client.license["fencing_token"] > before["fencing_token"]
        assert len(proxy.arrivals) >= 2  # it came back through the proxy
        await client.stop()
        for other in others.clients:
            await other.stop()


async def test_stalled_connection(restartable: ServerProcess) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        domain = await harness.new_domain()
        pool = await domain.pool(2)
        client = client_of(await domain.seat_user(pool), proxy.ws_url, max_delay=MAX_DELAY)
        watcher = Watcher(client)
        before = await client.start()
        await watcher.expect("heartbeat_ack", seq=1)
        stalled_at = time.monotonic()
        stalled = proxy.stall()
        # Nothing closed: only the missing heartbeat_ack tells the client.
        await watcher.expect("reconnecting", attempt=1, timeout=3 * HEARTBEAT + WAIT)
        noticed = time.monotonic() - stalled_at
        assert (await watcher.expect("reconnected", timeout=LEASE_TTL))["recovered"] is True
        back = time.monotonic() - stalled_at
        print(f"stall noticed after {noticed:.2f} s, seat back after {back:.2f} s")
        assert back < LEASE_TTL
        assert client.license is not None and client.license["seat"] == before["seat"]
        assert client.license["fencing_token"] > before["fencing_token"]
        # The old connection, flowing again, tells the client nothing (it was
        # replaced on the server, which the client must not take for its own end).
        proxy.resume(stalled)
        await watcher.expect("heartbeat_ack", seq=3)
        assert client.state is State.HOLDING and watcher.of("session_ended") == []
        assert await expired_devices(domain) == []
        await client.stop()


async def test_lease_expired_is_not_final(own_server: StartServer) -> None:
    # Heartbeats slower than the lease time (a misconfigured server): the lease expires.
    process = own_server(lease_ttl=2, heartbeat_interval=6)
    async with Harness(process.server) as harness:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        client = client_of(await domain.seat_user(pool), process.ws_url, max_delay=MAX_DELAY)
        watcher = Watcher(client)
        await client.start()
        await watcher.expect("session_ended", reason="lease_expired", timeout=WAIT)
        await watcher.expect("reconnecting", attempt=1)
        await watcher.expect("reconnected")
        assert client.state is State.HOLDING
        await client.stop()


async def test_refused_after_reconnecting_acquires_when_a_seat_is_free(
    restartable: ServerProcess,
) -> None:
    async with Harness(restartable.server) as harness, Proxy(restartable.port) as proxy:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        member = await domain.seat_user(pool)
        client = client_of(member, proxy.ws_url, max_delay=MAX_DELAY)
        watcher = Watcher(client)
        await client.start()
        intruder = await seat_taken_meanwhile(harness, domain, pool, proxy)
        refused = await watcher.expect("error", code="seat_occupied", timeout=WAIT + MAX_DELAY)
        assert refused["retryable"] is True
        assert client.state is State.REFUSED and client.license is None
        await watcher.expect("heartbeat_ack")  # it keeps the connection alive
        await intruder.logout()
        assert (await watcher.expect("reconnected"))["recovered"] is False
        assert client.state is State.HOLDING and client.license is not None
        await client.stop()


async def test_stop_while_reconnecting_is_quick(restartable: ServerProcess) -> None:
    async with Harness(restartable.server) as harness:
        seats = await seated(harness, restartable.ws_url, seats=1, holders=1)
        (client,), (watcher,) = seats.clients, seats.watchers
        await asyncio.to_thread(restartable.kill)
        await watcher.expect("reconnecting", attempt=2)
        async with asyncio.timeout(1.0):
            await client.stop()
        assert await watcher.ended_with() is None
        assert client.state is State.STOPPED
