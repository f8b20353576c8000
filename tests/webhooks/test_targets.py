"""Which URLs an endpoint may have, without `PRESENCE_WEBHOOK_ALLOW_PRIVATE` (spec section 8).

`https://` only, and never an address that is loopback, private, link-local,
unspecified, multicast, reserved or shared, however it is written (decimal,
octal or hex IPv4, IPv4-mapped IPv6, a name that resolves to one). These
tests use the suite's shared server, which has no webhook settings, so it
checks targets as a production server does; a public literal address is
accepted without any connection being made. The last test shows that the
check holds at delivery time too, for an endpoint registered while private
addresses were allowed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from server.client import Domain, Harness, Server, refused
from servers import ServerProcess

from .conftest import webhook_env
from .hooks import (
    ReceiverProcess,
    Webhooks,
    check_attempt,
    events_after,
    last_event_id,
    visit,
)

PUBLIC = "https://93.184.215.14/hook"

REFUSED = [
    "http://93.184.215.14/hook",
    "ftp://93.184.215.14/hook",
    "93.184.215.14/hook",
    "https://",
    "https:///hook",
    "https://127.0.0.1/hook",
    "https://127.1.2.3:8443/hook",
    "https://localhost/hook",
    "https://LOCALHOST./hook",
    "https://user@127.0.0.1/hook",
    "https://93.184.215.14@127.0.0.1/hook",
    "https://10.0.0.1/hook",
    "https://172.16.0.1/hook",
    "https://172.31.255.254/hook",
    "https://192.168.1.1/hook",
    "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/hook",
    "https://0.0.0.0/hook",
    "https://0/hook",
    "https://224.0.0.1/hook",
    "https://255.255.255.255/hook",
    "https://[::1]/hook",
    "https://[::]/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://[::ffff:7f00:1]/hook",
    "https://[::ffff:10.0.0.1]/hook",
    "https://[fe80::1]/hook",
    "https://[fc00::1]/hook",
    "https://[ff02::1]/hook",
    "https://2130706433/hook",
    "https://0177.0.0.1/hook",
    "https://0x7f000001/hook",
    "https://0x7f.0.0.1/hook",
    "https://nowhere.invalid/hook",
]

ACCEPTED = [
    PUBLIC,
    "https://8.8.8.8:8443/presence/events?key=1",
    "https://[2606:4700:4700::1111]/hook",
]


@pytest.fixture
async def strict(server: Server) -> AsyncIterator[Harness]:
    """A harness on the suite's shared server, which allows no private target."""
    async with Harness(server) as opened:
        yield opened


@pytest.mark.parametrize("url", REFUSED)
async def test_refused_targets(strict: Harness, url: str) -> None:
    domain = await strict.new_domain()
    hooks = Webhooks(domain)
    existing = await hooks.create(PUBLIC)
    listed = await hooks.listed()

    refused(await strict.admin.post(hooks.path(), {"url": url}), 400, "bad_request", "url")
    answer = await strict.admin.patch(hooks.path(existing["id"]), {"url": url})
    refused(answer, 400, "bad_request", "url")
    assert await hooks.listed() == listed


async def test_public_addresses_are_accepted(strict: Harness) -> None:
    domain = await strict.new_domain()
    hooks = Webhooks(domain)
    created = [await hooks.create(url) for url in ACCEPTED]
    assert [c["url"] for c in created] == ACCEPTED
    moved = await hooks.patch(created[0]["id"], url=ACCEPTED[1])
    assert moved["url"] == ACCEPTED[1]
    assert [w["url"] for w in await hooks.listed()] == [ACCEPTED[1], *ACCEPTED[1:]]


async def test_delivery_never_connects_to_a_private_address(
    own_server: Callable[..., ServerProcess], receiver: ReceiverProcess
) -> None:
    server = own_server(env=webhook_env())  # private targets allowed, for now
    async with Harness(server.server) as harness:
        domain = await harness.new_domain()
        hooks = Webhooks(domain)
        plain = await hooks.create(receiver.url("plain"))
        tls = await hooks.create(receiver.url("tls", scheme="https"))
        member = await domain.named_user()
    server.stop()
    server.env = webhook_env(allow_private=False)
    server.start()

    async with Harness(server.server) as harness:
        domain = Domain(harness, domain.data)
        hooks = Webhooks(domain)
        before = await last_event_id(domain)
        await visit(harness, member)
        [first, _] = await events_after(domain, before)
        for endpoint in (plain, tls):
            log = await hooks.wait_attempts(
                endpoint["id"], lambda log: len(log) >= 2, "two attempts, none connecting"
            )
            for attempt in log:
                check_attempt(attempt)
                assert attempt["event_id"] == first["id"] and attempt["status"] is None, log
    assert receiver.connections() == 0, receiver.entries()
