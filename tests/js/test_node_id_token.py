"""The JavaScript client in Node signs in with ID tokens of the domain's
identity provider (a real IdP process, tests/oidc/idp.py), against a real
server: `idToken`, `getIdToken` called before each connection (a fresh token
on reconnecting, a failing call retried with the backoff), and tokens the
server refuses rejecting start(). As tests/client/test_id_token.py does for
Python."""

from __future__ import annotations

import pytest
from client.federated import Federated
from client.proxy import Proxy
from client.restarts import LEASE_TTL, MAX_DELAY
from server.client import Member

from .driver import JsError, NodeClient

DEVICE = {"id": "ann-phone", "kind": "phone"}


async def test_start_with_an_id_token(federated: Federated, js: NodeClient) -> None:
    member = await federated.member()
    id_token = federated.id_token(member)
    url = federated.server.ws_url
    await js.create(url=url, domain=federated.domain.id, idToken=id_token, device=DEVICE)
    license = await js.start()
    assert license["model"] == "seat" and license["pool"]["id"] == federated.pool["id"]
    welcome = await js.expect("welcome")
    assert welcome["user"]["id"] == member.id and welcome["_state"] == "holding"
    entry = await federated.domain.wait_pool(federated.pool, occupied=1)
    assert entry["holders"][0]["device"]["id"] == DEVICE["id"]
    await js.stop()
    await federated.domain.wait_pool(federated.pool, occupied=0)


@pytest.mark.parametrize("failing", [False, True], ids=["fresh", "failing-once"])
async def test_get_id_token_is_called_before_each_connection(
    federated: Federated, js: NodeClient, failing: bool
) -> None:
    """Once the connection is cut, the domain takes only tokens minted for its
    new audience: the client is back on its seat with the fresh token its
    getIdToken gives. A getIdToken failing once (null in the driver's list) is a
    failed attempt, waited out with the backoff."""
    member = await federated.member()
    later = federated.idp.audience()
    id_tokens = [federated.id_token(member), federated.id_token(member, later)]
    if failing:
        id_tokens.insert(1, None)
    async with Proxy(federated.server.port) as proxy:
        options = {"url": proxy.ws_url, "domain": federated.domain.id, "device": DEVICE}
        await js.create(**options, idTokens=id_tokens, maxDelay=MAX_DELAY)
        before = await js.start()
        await federated.change_audience(later)
        proxy.cut()
        reconnected = await js.expect("reconnected", timeout=LEASE_TTL)
        assert reconnected["recovered"] is True and reconnected["_state"] == "holding"
        now = (await js.state())["license"]
        assert now["seat"] == before["seat"] and now["fencing_token"] > before["fencing_token"]
        assert await js.ask("fetched") == len(id_tokens)
        assert len(proxy.arrivals) == 2  # the failed call opened no connection
        attempts = [wait["attempt"] for wait in js.of("reconnecting")]
        assert attempts == ([1, 2] if failing else [1])
        await js.stop()
    assert js.of("error") == []


async def test_refused_id_tokens_reject_start(federated: Federated, js: NodeClient) -> None:
    member = await federated.member()
    stranger = Member("none", "Nobody", "nobody@example.com", "", "")
    other = await federated.harness.new_domain()
    cases = [  # the words of the refusal's message, the token and its domain
        ("not a JWT", "eyJ-not-a-token", federated.domain.id),
        ("audience", federated.id_token(member, aud="another-app"), federated.domain.id),
        ("no user", federated.id_token(stranger), federated.domain.id),
        ("identity provider", federated.id_token(member), other.id),
    ]
    url = federated.server.ws_url
    for words, id_token, domain in cases:
        await js.create(url=url, domain=domain, idToken=id_token, device=DEVICE)
        with pytest.raises(JsError) as refused:
            await js.start()
        assert refused.value.code == "unauthorized" and refused.value.retryable is False
        assert words.lower() in str(refused.value.message).lower(), (words, refused.value)
        stopped = await js.expect("stopped")
        assert stopped["final"]["code"] == "unauthorized"
    assert js.of("reconnecting") == []
    await federated.domain.wait_pool(federated.pool, occupied=0)
