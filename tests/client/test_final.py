"""Final ends stop the client: it reports the end and never comes back.
A changed license is not final: the client logs in again under the new one."""

from __future__ import annotations

from urllib.parse import urlsplit

from server.client import API, Harness, ok

from presence.client import Client, State

from .proxy import Proxy
from .watch import Watcher, client_of


async def assert_final(watcher: Watcher, reason: str) -> None:
    """The client stopped on `session_ended` `reason`, without trying to come back."""
    final = await watcher.ended_with()
    assert final is not None and final["type"] == "session_ended", final
    assert final["reason"] == reason and final["message"]
    assert watcher.seen[-1] == final, "the final end is the last message"
    assert watcher.of("reconnecting") == []
    assert watcher.client.state is State.STOPPED and watcher.client.license is None


async def test_taken_over_and_replaced(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    first = client_of(member, harness.server.ws_url, device_id="desk")
    watcher = Watcher(first)
    license = await first.start()
    second = client_of(member, harness.server.ws_url, device_id="phone", takeover=True)
    assert (await second.start())["seat"] == license["seat"]
    await assert_final(watcher, "taken_over")

    # The same device logging in on another connection replaces this one.
    watcher = Watcher(second)
    again = await harness.login(member, device_id="phone", kind="desktop")
    assert again.license["seat"] == license["seat"]
    await assert_final(watcher, "replaced")
    await second.stop()  # after a final end: nothing to do


async def test_released_by_admin(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    client = client_of(await domain.seat_user(pool), harness.server.ws_url)
    watcher = Watcher(client)
    license = await client.start()
    ok(await harness.admin.delete(domain.path("leases", license["lease_id"])), 204)
    await assert_final(watcher, "released_by_admin")
    await domain.wait_pool(pool, occupied=0)


async def test_token_revoked(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    client = client_of(member, harness.server.ws_url)
    watcher = Watcher(client)
    await client.start()
    await domain.revoke(member.token_id)
    await assert_final(watcher, "token_revoked")


async def test_a_token_refused_on_reconnecting_is_final(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    tokens = [member.token, "prs_revoked-meanwhile"]
    fetched: list[str] = []

    async def get_token() -> str:
        fetched.append(tokens[len(fetched)])
        return fetched[-1]

    port = urlsplit(harness.server.base_url).port
    assert port is not None
    async with Proxy(port) as proxy:
        client = Client(proxy.ws_url, get_token=get_token, device_id="d", kind="tablet")
        watcher = Watcher(client)
        await client.start()
        proxy.cut()
        final = await watcher.ended_with()
    assert final is not None and final["type"] == "error" and final["code"] == "unauthorized"
    assert fetched == tokens
    assert [m["attempt"] for m in watcher.of("reconnecting")] == [1]
    assert client.state is State.STOPPED


async def test_a_changed_license_logs_in_again_under_the_new_one(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    client = client_of(member, harness.server.ws_url)
    watcher = Watcher(client)
    await client.start()
    path = f"{API}/domains/{domain.id}/users/{member.id}/license"
    ok(await harness.admin.put(path, {"model": "named"}))
    await watcher.expect("session_ended", reason="license_changed")
    assert (await watcher.expect("reconnected"))["recovered"] is False
    assert client.license == {"model": "named"} and client.state is State.HOLDING
    await domain.wait_pool(pool, occupied=0)
    await client.stop()


async def test_idle_logoff(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1, idle_logoff_s=1)
    client = client_of(await domain.seat_user(pool), harness.server.ws_url)
    watcher = Watcher(client)
    await client.start()
    await assert_final(watcher, "idle_logoff")
