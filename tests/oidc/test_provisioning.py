"""Just-in-time provisioning: a first sign-in creates the user, once, under the licensing rules.

A domain whose identity provider has `provision` set creates the user of an
unknown e-mail address at its first sign-in, with that license, named after
the token's `name` claim (else the address). A second sign-in, in any letter
case, and sign-ins racing each other find that one user. A refusal of the
licensing rules is the login's `error` with the rule's code and close 4403,
and creates nothing.
"""

from __future__ import annotations

import asyncio
import uuid

from server.client import Domain, Harness, Message, ok

from .conftest import StartIdp
from .provider import Audience, SigningKey, claims, configure, mint, sign_in

#: Rounds of sign-ins racing to create one user, and how many race in each.
ROUNDS = 3
RACERS = 4


def new_address() -> str:
    return f"New.Person-{uuid.uuid4().hex[:8]}@Example.COM"


async def users_with(domain: Domain, email: str) -> list[Message]:
    """The domain's users with `email`, in any letter case."""
    return [u for u in (await domain.users()).values() if u["email"].lower() == email.lower()]


async def federated_domain(
    harness: Harness, start_idp: StartIdp, provision: Message | None, named_licenses: int = 50
) -> tuple[Domain, SigningKey, Audience]:
    key = SigningKey.generate("ES256")
    idp = start_idp([key])
    domain = await harness.new_domain(named_licenses=named_licenses)
    audience = idp.audience()
    await configure(domain, audience, provision=provision)
    return domain, key, audience


async def test_a_first_sign_in_creates_the_user_once(harness: Harness, start_idp: StartIdp) -> None:
    domain, key, audience = await federated_domain(harness, start_idp, {"model": "named"})
    email = new_address()

    first = await sign_in(harness, domain.id, mint(key, claims(audience, email, name="Ada Li")))
    welcome = first.assert_welcomed()
    assert welcome["license"] == {"model": "named"}, welcome
    created = await users_with(domain, email)
    named = {"model": "named"}
    assert created == [
        {"id": welcome["user"]["id"], "email": email, "name": "Ada Li", "license": named}
    ], created

    again = await sign_in(harness, domain.id, mint(key, claims(audience, email.lower())))
    assert again.assert_welcomed()["user"]["id"] == welcome["user"]["id"]
    assert await users_with(domain, email) == created, "a second sign-in creates no other user"

    unnamed = new_address()
    welcome = (await sign_in(harness, domain.id, mint(key, claims(audience, unnamed)))).answer
    assert welcome["type"] == "welcome", welcome
    assert [u["name"] for u in await users_with(domain, unnamed)] == [unnamed], (
        "without a name claim the user is named after the address"
    )


async def test_racing_first_sign_ins_create_one_user(harness: Harness, start_idp: StartIdp) -> None:
    domain, key, audience = await federated_domain(harness, start_idp, {"model": "named"})
    for round in range(1, ROUNDS + 1):
        email = new_address()
        tokens = [mint(key, claims(audience, email)) for _ in range(RACERS)]

        seen = await asyncio.gather(*(sign_in(harness, domain.id, token) for token in tokens))
        ids = {s.assert_welcomed()["user"]["id"] for s in seen}
        assert len(ids) == 1, f"{RACERS} racing sign-ins were welcomed as users {ids}"
        assert [u["id"] for u in await users_with(domain, email)] == list(ids)
        assert len(await domain.users()) == round


async def test_provisioning_stops_at_the_named_license_limit(
    harness: Harness, start_idp: StartIdp
) -> None:
    domain, key, audience = await federated_domain(
        harness, start_idp, {"model": "named"}, named_licenses=1
    )
    member = await domain.named_user()
    before = await domain.users()
    email = new_address()

    refused = await sign_in(harness, domain.id, mint(key, claims(audience, email)))
    refused.assert_refused("license_limit", 4403)
    assert await domain.users() == before, "a refused provisioning creates nothing"
    known = await sign_in(harness, domain.id, mint(key, claims(audience, member.email)))
    assert known.assert_welcomed()["user"]["id"] == member.id, "existing users still sign in"

    ok(await domain.api.patch(domain.path(), {"named_licenses": 3}))
    (await sign_in(harness, domain.id, mint(key, claims(audience, email)))).assert_welcomed()
    assert len(await users_with(domain, email)) == 1

    # The last license, raced for by two newcomers: one gets it, one is refused.
    racers = [new_address(), new_address()]
    seen = await asyncio.gather(
        *(sign_in(harness, domain.id, mint(key, claims(audience, e))) for e in racers)
    )
    outcomes = sorted("welcome" if s.welcomed else str(s.code) for s in seen)
    assert outcomes == ["license_limit", "welcome"], [s.answer for s in seen]
    for s in seen:
        if not s.welcomed:
            s.assert_refused("license_limit", 4403)
    assert len(await domain.users()) == 3, await domain.users()


async def test_a_seat_provision_puts_the_user_in_the_pool(
    harness: Harness, start_idp: StartIdp
) -> None:
    key = SigningKey.generate("PS256")
    idp = start_idp([key])
    domain = await harness.new_domain(seat_licenses=1)
    pool = await domain.pool(1)
    audience = idp.audience()
    seat = {"model": "seat", "pool": pool["id"]}
    await configure(domain, audience, provision=seat)
    email = new_address()

    first = await sign_in(harness, domain.id, mint(key, claims(audience, email)))
    license = first.assert_welcomed()["license"]
    assert license["model"] == "seat" and license["pool"]["id"] == pool["id"], license
    assert license["seat"] == 1 and isinstance(license["fencing_token"], int), license
    [user] = await users_with(domain, email)
    assert user["license"] == seat, user
    await domain.wait_pool(pool, occupied=1)

    # The pool is full: the next newcomer is created, and refused a seat as usual.
    other = new_address()
    second = await sign_in(harness, domain.id, mint(key, claims(audience, other)))
    second.assert_refused("seat_occupied", None)
    assert [u["license"] for u in await users_with(domain, other)] == [seat]


async def test_a_none_provision_creates_a_user_who_cannot_log_in(
    harness: Harness, start_idp: StartIdp
) -> None:
    domain, key, audience = await federated_domain(harness, start_idp, {"model": "none"})
    email = new_address()
    seen = await sign_in(harness, domain.id, mint(key, claims(audience, email)))
    seen.assert_refused("no_license", 4403)
    assert [u["license"] for u in await users_with(domain, email)] == [{"model": "none"}]


async def test_a_longer_address_is_never_taken_for_the_user_it_begins_with(
    harness: Harness, start_idp: StartIdp
) -> None:
    """The user is the one whose address *equals* the claim: one of the longest
    addresses (254 characters) is no prefix match for a longer claim."""
    domain, key, audience = await federated_domain(harness, start_idp, {"model": "named"})
    suffix = "@example.com"
    longest = "b" * (254 - len(suffix)) + suffix
    body = {"email": longest, "name": "Longest", "license": {"model": "named"}}
    user = ok(await domain.api.post(domain.path("users"), body), 201)

    seen = await sign_in(harness, domain.id, mint(key, claims(audience, longest + "zz")))
    if seen.welcomed:
        assert seen.answer["user"]["id"] != user["id"], (
            f"a token for {len(longest) + 2}-character {longest[:12]}…zz signed in as "
            f"the user of {longest[:12]}…"
        )
    (await sign_in(harness, domain.id, mint(key, claims(audience, longest)))).assert_welcomed()
