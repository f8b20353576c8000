"""What the clients' tests of federated login share (Python and JavaScript): a
server that accepts http:// issuers and a real identity provider process
(tests/oidc/idp.py), both for the whole session, and for each test a domain
of its own that signs in with that provider, as the `federated` fixture (a
plugin of tests/conftest.py). ID tokens are minted with tests/oidc's keys and
claims; nothing here is a second identity provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from oidc.provider import Audience, IdentityProvider, SigningKey, claims, configure, mint
from server.client import Domain, Harness, Member, Message
from servers import ServerProcess

from .restarts import HEARTBEAT, LEASE_TTL

#: The server takes the IdP's http://127.0.0.1 issuer.
OIDC_ENV = {"PRESENCE_OIDC_ALLOW_HTTP": "1"}


@dataclass
class Federated:
    """A domain with a one-seat pool, whose devices sign in with `idp`'s ID tokens."""

    server: ServerProcess
    harness: Harness
    domain: Domain
    pool: Message
    idp: IdentityProvider
    key: SigningKey
    audience: Audience

    async def member(self) -> Member:
        """A new seat user of the pool: the ID tokens of its e-mail address sign it in."""
        return await self.domain.seat_user(self.pool)

    def id_token(self, member: Member, for_: Audience | None = None, **changes: Any) -> str:
        """A valid ID token of `member`, for the domain's audience now (or `for_`);
        `changes` replace claims (see `oidc.provider.claims`)."""
        return mint(self.key, claims(for_ or self.audience, member.email, **changes))

    async def change_audience(self, to: Audience | None = None) -> None:
        """Give the domain's identity provider another audience (`to`, or a new
        one): the tokens minted for the one before are refused from now on, as
        they would be once expired."""
        self.audience = to or self.idp.audience()
        await configure(self.domain, self.audience)


@pytest.fixture(scope="session")
def federated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose lease outlasts a reconnection, taking http:// issuers."""
    workdir = tmp_path_factory.mktemp("federated")
    with ServerProcess(
        workdir, lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT, env=OIDC_ENV
    ) as process:
        yield process


@pytest.fixture(scope="session")
def identity_provider(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[IdentityProvider, SigningKey]]:
    """The IdP process, publishing one RS256 key, and that key."""
    key = SigningKey.generate("RS256")
    idp = IdentityProvider(tmp_path_factory.mktemp("idp"))
    idp.start([key])
    try:
        yield idp, key
    finally:
        idp.stop()


@pytest.fixture
async def federated(
    federated_server: ServerProcess, identity_provider: tuple[IdentityProvider, SigningKey]
) -> AsyncIterator[Federated]:
    idp, key = identity_provider
    async with Harness(federated_server.server) as harness:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        audience = idp.audience()
        await configure(domain, audience)
        yield Federated(federated_server, harness, domain, pool, idp, key, audience)
