"""The issuers' keys: fetched, kept per issuer and key id, refetched at most once a minute.

Two issuers whose keys share a key id never verify each other's tokens,
whichever was fetched first. While an IdP is down (503) or hangs, the tokens
whose keys the server lacks are turned away within its 5 s fetch timeout
(`unavailable`, retryable, close 1013, "could not be fetched": the
provider's outage is not the token's fault), and logins whose keys are known
stay fast, never braked by those refusals.

The server refetches an issuer's keys for an unknown key id at most once a
minute (here once per `REFETCH_AFTER`, `PRESENCE_OIDC_REFETCH_INTERVAL`),
counting from the fetch before (the first included):
`test_a_minute_of_one_issuer` waits it out once, for three issuers
together, and does what needs no waiting meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.client import Harness, Member
from servers import ServerProcess

from .conftest import OIDC_ENV, StartIdp
from .provider import (
    Audience,
    IdentityProvider,
    SignIn,
    SigningKey,
    claims,
    configure,
    mint,
    sign_in,
    wait_until,
)

#: The server's interval between fetches of one issuer's keys, in seconds (a
#: minute by default): long enough for what the test does within it.
REFETCH_AFTER = float(OIDC_ENV["PRESENCE_OIDC_REFETCH_INTERVAL"])
#: The server's timeout for a fetch of an issuer's keys, in seconds.
FETCH_TIMEOUT = 5.0
#: The longest a login whose keys are known may take, on a loaded machine:
#: far below the fetch timeout, which it must never wait for.
FAST = 2.0
#: The longest a refusal for keys that cannot be fetched may take.
REFUSED_WITHIN = FETCH_TIMEOUT + 4.0
FLOOD = 50
FETCH_FAILED = "could not be fetched"


@dataclass
class Issuer:
    """An IdP process, a domain signing in with it, and one of the domain's users."""

    idp: IdentityProvider
    key: SigningKey
    audience: Audience
    domain_id: str
    member: Member

    def token(self, key: SigningKey | None = None, **changes: object) -> str:
        return mint(key or self.key, claims(self.audience, self.member.email, **changes))


async def issuer(
    harness: Harness, start_idp: StartIdp, key: SigningKey, mode: str = "ok"
) -> Issuer:
    idp = start_idp([key], mode)
    domain = await harness.new_domain()
    audience = idp.audience()
    await configure(domain, audience)
    return Issuer(idp, key, audience, domain.id, await domain.named_user())


def unknown_key() -> SigningKey:
    return SigningKey.generate("ES256")


async def welcomed_fast(harness: Harness, at: Issuer, count: int = 3) -> list[float]:
    """`count` sign-ins with a known key, one after the other, each welcomed within
    `FAST`; their durations."""
    durations = []
    for _ in range(count):
        seen = await sign_in(harness, at.domain_id, at.token())
        assert seen.assert_welcomed()["user"]["id"] == at.member.id
        assert seen.seconds < FAST, f"a login with a known key took {seen.seconds:.2f} s"
        durations.append(seen.seconds)
    return durations


async def refused_fetch(harness: Harness, at: Issuer, key: SigningKey) -> SignIn:
    """A sign-in with a key unknown to the server, turned away within
    `REFUSED_WITHIN` because the keys could not be fetched: not the token's
    fault, so `unavailable`, retryable, close 1013 (try again later)."""
    seen = await sign_in(harness, at.domain_id, at.token(key), timeout=REFUSED_WITHIN + 5)
    seen.assert_refused("unavailable", 1013, FETCH_FAILED)
    assert seen.answer["retryable"] is True, seen.answer
    assert seen.seconds < REFUSED_WITHIN, f"turned away after {seen.seconds:.2f} s"
    return seen


async def fetches_reach(idp: IdentityProvider, discovery: int) -> tuple[int, int]:
    """Wait until the IdP was asked for its discovery document `discovery` times."""

    async def reached() -> tuple[int, int] | None:
        counts = await idp.fetches()
        return counts if counts[0] >= discovery else None

    return await wait_until(reached, f"{discovery} discovery requests to {idp.issuer}")


async def last_request_at(idp: IdentityProvider) -> float:
    """When the IdP was last asked anything (its clock: the time of day)."""
    requests = await idp.requests()
    assert requests, f"{idp.issuer} was never asked"
    return float(requests[-1]["at"])


async def test_two_issuers_sharing_a_key_id(harness: Harness, start_idp: StartIdp) -> None:
    one = await issuer(harness, start_idp, SigningKey.generate("RS256", "shared"))
    two = await issuer(harness, start_idp, SigningKey.generate("RS256", "shared"))

    for first, second in ((one, two), (two, one)):
        (await sign_in(harness, first.domain_id, first.token())).assert_welcomed()
        (await sign_in(harness, second.domain_id, second.token())).assert_welcomed()
        # Claims of `first`'s domain, signed by `second`'s key of the same key id.
        forged = await sign_in(harness, first.domain_id, first.token(second.key))
        forged.assert_refused("unauthorized", 4401, "signature")
        foreign = await sign_in(harness, first.domain_id, second.token())
        foreign.assert_refused("unauthorized", 4401)
    for each in (one, two):
        (await sign_in(harness, each.domain_id, each.token())).assert_welcomed()
        assert await each.idp.fetches() == (1, 1), "each issuer's keys fetched once"


async def test_a_discovery_document_naming_another_issuer(
    harness: Harness, oidc_server: ServerProcess, start_idp: StartIdp
) -> None:
    liar = await issuer(harness, start_idp, SigningKey.generate("RS256"))
    await liar.idp.name_issuer("https://login.example.com/")
    seen = await refused_fetch(harness, liar, liar.key)
    assert "login.example.com" not in seen.message, "the details go to the log, not the device"
    assert await liar.idp.fetches() == (1, 0), "no keys are taken from a lying document"
    assert "its discovery document names another issuer" in oidc_server.output()


async def test_a_minute_of_one_issuer(harness: Harness, start_idp: StartIdp) -> None:
    rotating = await issuer(harness, start_idp, SigningKey.generate("RS256"))
    falling = await issuer(harness, start_idp, SigningKey.generate("EdDSA"))
    hanging = await issuer(harness, start_idp, SigningKey.generate("PS256"))
    known = await issuer(harness, start_idp, SigningKey.generate("ES256"))
    issuers = (rotating, falling, hanging, known)
    timings: list[tuple[str, str]] = []

    for each in issuers:  # the first sign-in fetches the keys
        (await sign_in(harness, each.domain_id, each.token())).assert_welcomed()
        assert await each.idp.fetches() == (1, 1)

    # Meanwhile, within the minute:
    # a flood of unknown key ids fetches nothing more.
    flood = await asyncio.gather(
        *(sign_in(harness, rotating.domain_id, rotating.token(unknown_key())) for _ in range(FLOOD))
    )
    for seen in flood:
        seen.assert_refused("unauthorized", 4401, "key")
    _, keysets = await rotating.idp.fetches()
    assert keysets <= 2, f"{FLOOD} unknown key ids fetched the keys {keysets} times in a minute"

    # Cold issuers: down, their tokens are turned away at once; hanging, within
    # the fetch timeout, and the sign-ins waiting for that one fetch hold up no other.
    cold_down = await issuer(harness, start_idp, SigningKey.generate("RS256"), mode="down")
    seen = await refused_fetch(harness, cold_down, cold_down.key)
    timings.append(("cold issuer down: its token turned away", f"{seen.seconds:.2f} s"))
    seen = await refused_fetch(harness, cold_down, cold_down.key)
    assert seen.seconds < FAST, f"a known failure took {seen.seconds:.2f} s"
    assert (await cold_down.idp.fetches())[0] == 1, "the failed fetch is not repeated at once"
    cold_hang = await issuer(harness, start_idp, SigningKey.generate("RS256"), mode="hang")
    waiting = [
        asyncio.create_task(refused_fetch(harness, cold_hang, cold_hang.key)) for _ in range(3)
    ]
    await fetches_reach(cold_hang.idp, 1)
    durations = await welcomed_fast(harness, known, 2)
    assert not any(task.done() for task in waiting), "the hanging fetch ended too soon"
    hung = [(await task).seconds for task in waiting]
    assert await cold_hang.idp.fetches() == (1, 0), "the waiting sign-ins shared one fetch"
    timings.append(
        ("cold issuer hanging: its tokens turned away", f"{min(hung):.2f}-{max(hung):.2f} s")
    )
    timings.append(("another issuer's logins meanwhile", f"max {max(durations):.2f} s"))

    # Rotation published now, the IdPs fail: known keys still log in, at once.
    new_key = SigningKey.generate("ES256")
    await rotating.idp.serve([new_key])
    await falling.idp.set_mode("down")
    await hanging.idp.set_mode("hang")
    for each in (falling, hanging):
        await welcomed_fast(harness, each, 1)
        assert await each.idp.fetches() == (1, 1), "known keys are not fetched again"

    fetched_at = max([await last_request_at(each.idp) for each in issuers])
    remaining = fetched_at + REFETCH_AFTER + 1.0 - time.time()
    await asyncio.sleep(max(0.0, remaining))  # the server's minute, which nothing else shows

    # A minute on: a token of the new key is accepted after exactly one refetch.
    before = await rotating.idp.fetches()
    seen = await sign_in(harness, rotating.domain_id, rotating.token(new_key))
    assert seen.assert_welcomed()["user"]["id"] == rotating.member.id
    after = await rotating.idp.fetches()
    assert after == (before[0] + 1, before[1] + 1), f"not one refetch: {before} then {after}"
    old = await sign_in(harness, rotating.domain_id, rotating.token())
    old.assert_refused("unauthorized", 4401, "key")
    flood = await asyncio.gather(
        *(sign_in(harness, rotating.domain_id, rotating.token(unknown_key())) for _ in range(FLOOD))
    )
    for seen in flood:
        seen.assert_refused("unauthorized", 4401, "key")
    assert await rotating.idp.fetches() == after, "no refetch within the minute after"

    # The IdP down: unknown keys turned away at once; known keys log in.
    seen = await refused_fetch(harness, falling, unknown_key())
    timings.append(("IdP down: unknown key turned away", f"{seen.seconds:.2f} s"))
    durations = await welcomed_fast(harness, falling)
    timings.append(("IdP down: known key welcomed", f"max {max(durations):.2f} s"))
    assert (await falling.idp.fetches())[0] == 2, "one refetch, which failed"

    # The IdP hanging: unknown keys turned away within the fetch timeout, and
    # known keys log in at once while that fetch hangs.
    waiting = [
        asyncio.create_task(refused_fetch(harness, hanging, unknown_key())) for _ in range(3)
    ]
    await fetches_reach(hanging.idp, 2)
    durations = await welcomed_fast(harness, hanging, 2)
    assert not any(task.done() for task in waiting), "the hanging fetch ended too soon"
    hung = [(await task).seconds for task in waiting]
    assert (await hanging.idp.fetches())[0] == 2, "the waiting sign-ins shared one refetch"
    timings.append(("IdP hanging: unknown keys turned away", f"{min(hung):.2f}-{max(hung):.2f} s"))
    timings.append(("IdP hanging: known key welcomed meanwhile", f"max {max(durations):.2f} s"))

    width = max(len(what) for what, _ in timings)
    print("\n\nFederated login: the IdP down or hanging\n" + f"{'case':<{width}} | seen")
    print("\n".join(f"{what:<{width}} | {seen}" for what, seen in timings) + "\n")


async def test_an_idp_outage_does_not_brake_the_logins_of_known_keys(
    own_server: Callable[..., ServerProcess], start_idp: StartIdp
) -> None:
    """Sign-ins turned away because the IdP's keys could not be fetched are the
    IdP's fault, not the device's: they neither hold up nor brake the logins of
    known keys from the same address (here with a brake of `limit` failures)."""
    limit = 3
    server = own_server(env={**OIDC_ENV, "PRESENCE_AUTH_FAILURES_PER_MINUTE": str(limit)})
    async with Harness(server.server) as harness:
        known = await issuer(harness, start_idp, SigningKey.generate("RS256"))
        (await sign_in(harness, known.domain_id, known.token())).assert_welcomed()
        hanging = await issuer(harness, start_idp, SigningKey.generate("RS256"), mode="hang")
        waiting = [
            asyncio.create_task(refused_fetch(harness, hanging, hanging.key)) for _ in range(limit)
        ]
        await fetches_reach(hanging.idp, 1)
        seen = await sign_in(harness, known.domain_id, known.token(), timeout=REFUSED_WITHIN + 5)
        delayed = [task.done() for task in waiting]
        for task in waiting:
            await task
        assert seen.welcomed and seen.seconds < FAST and not any(delayed), (
            f"with {limit} sign-ins waiting for an IdP that hangs, a known key got "
            f"{seen.summary()} after {seen.seconds:.2f} s"
        )
        after = await sign_in(harness, known.domain_id, known.token())
        assert after.welcomed, (
            f"after {limit} refusals for an IdP that hangs, a known key got {after.summary()}"
        )
