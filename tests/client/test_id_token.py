"""The client signs in with ID tokens of the domain's identity provider
(a real IdP process, tests/oidc/idp.py), against a real server: a token given
once, a callable awaited before each connection (so a reconnection sends a
fresh token, and a failing callable is retried with the backoff), and tokens
the server refuses failing start()."""

from __future__ import annotations

import asyncio

import pytest
from server.client import Member

from presence.client import Client, LoginRefused, State

from .federated import Federated
from .proxy import Proxy
from .restarts import LEASE_TTL, MAX_DELAY
from .watch import Watcher


async def test_start_with_an_id_token(federated: Federated) -> None:
    member = await federated.member()
    client = Client(
        federated.server.ws_url,
        domain=federated.domain.id,
        id_token=federated.id_token(member),
        device_id="ann-pc",
        kind="desktop",
    )
    watcher = Watcher(client)
    license = await client.start()
    assert license["model"] == "seat" and license["pool"]["id"] == federated.pool["id"]
    assert client.state is State.HOLDING
    assert (await watcher.expect("welcome"))["user"]["id"] == member.id
    entry = await federated.domain.wait_pool(federated.pool, occupied=1)
    assert entry["holders"][0]["device"]["id"] == "ann-pc"
    await client.stop()
    await federated.domain.wait_pool(federated.pool, occupied=0)


async def test_a_fresh_id_token_for_each_connection(federated: Federated) -> None:
    member = await federated.member()
    sent: list[str] = []

    async def get_id_token() -> str:
        sent.append(federated.id_token(member))  # for the domain's audience now
        return sent[-1]

    async with Proxy(federated.server.port) as proxy:
        client = Client(
            proxy.ws_url,
            domain=federated.domain.id,
            get_id_token=get_id_token,
            device_id="ann-pc",
            kind="desktop",
            max_delay=MAX_DELAY,
        )
        watcher = Watcher(client)
        before = await client.start()
        assert len(sent) == 1
        # The first token is refused from now on: only a fresh one gets the seat back.
        await federated.change_audience()
        proxy.cut()
        await watcher.expect("reconnecting", attempt=1)
        assert (await watcher.expect("reconnected", LEASE_TTL))["recovered"] is True
        assert client.license is not None and client.license["seat"] == before["seat"]
        assert client.license["fencing_token"] > before["fencing_token"]
        assert len(sent) == len(proxy.arrivals) == 2 and sent[0] != sent[1]
        await client.stop()
    assert watcher.of("error") == []


async def test_a_failing_callable_is_a_failed_attempt(federated: Federated) -> None:
    member = await federated.member()
    calls = 0

    async def get_id_token() -> str:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first reconnection's
            raise OSError("the identity provider cannot be reached")
        return federated.id_token(member)

    async with Proxy(federated.server.port) as proxy:
        client = Client(
            proxy.ws_url,
            domain=federated.domain.id,
            get_id_token=get_id_token,
            device_id="ann-pc",
            kind="desktop",
            max_delay=MAX_DELAY,
        )
        watcher = Watcher(client)
        await client.start()
        proxy.cut()
        assert (await watcher.expect("reconnected", LEASE_TTL))["recovered"] is True
        # The failed call was waited out as a connection that could not be opened is.
        assert [m["attempt"] for m in watcher.of("reconnecting")] == [1, 2]
        assert calls == 3 and len(proxy.arrivals) == 2
        await client.stop()


async def test_a_fixed_id_token_refused_on_reconnecting_is_final(federated: Federated) -> None:
    member = await federated.member()
    async with Proxy(federated.server.port) as proxy:
        client = Client(
            proxy.ws_url,
            domain=federated.domain.id,
            id_token=federated.id_token(member),
            device_id="ann-pc",
            kind="desktop",
            max_delay=MAX_DELAY,
        )
        watcher = Watcher(client)
        await client.start()
        await federated.change_audience()  # as if the token had expired meanwhile
        proxy.cut()
        final = await watcher.ended_with(LEASE_TTL)
    assert final is not None and final["code"] == "unauthorized" and "audience" in final["message"]
    assert [m["attempt"] for m in watcher.of("reconnecting")] == [1]
    assert client.state is State.STOPPED and len(proxy.arrivals) == 2


async def refused_start(federated: Federated, id_token: str, domain: str | None = None) -> str:
    """Start a client with `id_token`; the message of the `unauthorized` refusing it."""
    domain = domain or federated.domain.id
    client = Client(
        federated.server.ws_url, domain=domain, id_token=id_token, device_id="d", kind="phone"
    )
    with pytest.raises(LoginRefused) as refused:
        await client.start()
    assert refused.value.code == "unauthorized" and refused.value.retryable is False
    assert client.state is State.STOPPED
    final = await client.wait_stopped()
    assert final is not None and final["code"] == "unauthorized"
    return refused.value.message


async def test_refused_id_tokens_fail_start(federated: Federated) -> None:
    member = await federated.member()
    stranger = Member("none", "Nobody", "nobody@example.com", "", "")
    other = await federated.harness.new_domain()
    cases = {  # the words of the refusal's message (docs: it names the check that failed)
        "not a JWT": "eyJ-not-a-token",
        "audience": federated.id_token(member, aud="another-app"),
        "expired": federated.id_token(member, exp=1_000_000_000),
        "no user": federated.id_token(stranger),
    }
    refusals = await asyncio.gather(
        *(refused_start(federated, token) for token in cases.values()),
        refused_start(federated, federated.id_token(member), domain=other.id),
    )
    for words, message in zip([*cases, "identity provider"], refusals, strict=True):
        assert words.lower() in message.lower(), (words, message)
    await federated.domain.wait_pool(federated.pool, occupied=0)
