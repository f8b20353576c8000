"""Fixtures of the federated login tests: a server that accepts http:// issuers, and IdPs.

`oidc_server` is one server for the package with `PRESENCE_OIDC_ALLOW_HTTP=1`
(the IdPs listen on http://127.0.0.1); every test makes its own domains on it,
and its own IdP processes, whose issuers (their URLs) are new to the server,
so that no test sees another's cached keys. `harness` talks to it (it
replaces the suite's `harness`). `start_idp` starts IdP processes of the
test's own, all stopped at the end. Tests of other knobs start servers of
their own with `own_server(env=...)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import pytest
from server.client import Harness
from servers import ServerProcess

from .provider import IdentityProvider, SigningKey

#: Keys are fetched again at most every 20 s (a minute by default), so that
#: the tests of that interval wait 20 s, not a minute.
OIDC_ENV = {"PRESENCE_OIDC_ALLOW_HTTP": "1", "PRESENCE_OIDC_REFETCH_INTERVAL": "20"}

#: Starts an IdP process of the test's own: `start_idp(keys, mode="ok")`.
StartIdp = Callable[..., IdentityProvider]


@pytest.fixture(scope="package")
def oidc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("oidc")
    with ServerProcess(workdir, lease_ttl=5, env=OIDC_ENV) as process:
        yield process


@pytest.fixture
async def harness(oidc_server: ServerProcess) -> AsyncIterator[Harness]:
    async with Harness(oidc_server.server) as opened:
        yield opened


@pytest.fixture
def start_idp(tmp_path: Path) -> Iterator[StartIdp]:
    started: list[IdentityProvider] = []

    def start(keys: Iterable[SigningKey] = (), mode: str = "ok") -> IdentityProvider:
        idp = IdentityProvider(tmp_path / f"idp-{len(started)}")
        started.append(idp)
        idp.start(keys, mode)
        return idp

    try:
        yield start
    finally:
        for idp in started:
            idp.stop()
