"""The checks of an ID token, case by case, and the identity provider API.

`test_the_verification_matrix` signs in with a valid token of each algorithm
and with every kind of bad token the contract names, on one server and one
IdP process per issuer, and prints the table `case | expected | seen` (keep
it with `pytest -s`). Each refusal must be `unauthorized`, close 4401, with
the key words of its check in the message and nothing of the token. The
other tests: leeway edges and e-mail matching are in the matrix; a custom
e-mail claim, the identity API with its refusals, and the failed-login
brake have tests of their own.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from server.client import Harness, ok, refused
from servers import ServerProcess

from .conftest import OIDC_ENV, StartIdp
from .matrix import Expected, Matrix
from .provider import (
    ALGORITHMS,
    DROP,
    Audience,
    IdentityProvider,
    SigningKey,
    claims,
    configure,
    hmac_signed,
    identity_path,
    jwks,
    mint,
    sign_in,
    unsigned,
    with_claims_changed,
)

LEEWAY = 60  # seconds, the contract's, for exp and nbf

StartServer = Callable[..., ServerProcess]


async def test_the_verification_matrix(harness: Harness, start_idp: StartIdp) -> None:
    keys = {alg: SigningKey.generate(alg) for alg in ALGORITHMS}
    rsa = keys["RS256"]
    idp = start_idp(keys.values())
    other_key = SigningKey.generate("RS256")
    other_idp = start_idp([other_key])

    domain = await harness.new_domain()
    audience = idp.audience()
    await configure(domain, audience)
    alice = await domain.named_user()
    # Another domain with its own issuer, whose keys the server has fetched.
    other_domain = await harness.new_domain()
    other_audience = other_idp.audience()
    await configure(other_domain, other_audience)
    bob = await other_domain.named_user()
    no_identity = await harness.new_domain()

    matrix = Matrix()

    async def case(name: str, token: str, expected: Expected, domain_id: str = domain.id) -> None:
        matrix.record(name, expected, await sign_in(harness, domain_id, token))

    def valid(**changes: object) -> dict[str, object]:
        return claims(audience, alice.email, **changes)

    welcome = Expected.welcome(alice.id)
    now = int(time.time())

    await case(
        "other domain's issuer: valid RS256 (its keys fetched)",
        mint(other_key, claims(other_audience, bob.email)),
        Expected.welcome(bob.id),
        other_domain.id,
    )
    for alg, key in keys.items():
        await case(f"valid {alg}", mint(key, valid()), welcome)
    await case("exp 30 s ago (within the leeway)", mint(rsa, valid(exp=now - 30)), welcome)
    await case("nbf 30 s ahead (within the leeway)", mint(rsa, valid(nbf=now + 30)), welcome)
    await case("e-mail in other letter case", mint(rsa, valid(email=alice.email.upper())), welcome)
    await case(
        "aud a list holding the audience",
        mint(rsa, valid(aud=["someone-else", audience.audience])),
        welcome,
    )
    await case("no email_verified claim", mint(rsa, valid(email_verified=DROP)), welcome)
    await case(
        "exp 120 s ago",
        mint(rsa, valid(iat=now - 600, nbf=now - 600, exp=now - 2 * LEEWAY)),
        Expected.unauthorized("expired"),
    )
    await case(
        "nbf 120 s ahead",
        mint(rsa, valid(nbf=now + 2 * LEEWAY, exp=now + 600)),
        Expected.unauthorized("not valid yet"),
    )
    await case(
        "wrong issuer",
        mint(rsa, valid(iss=other_idp.issuer)),
        Expected.unauthorized("issuer"),
    )
    await case(
        "wrong audience",
        mint(rsa, valid(aud="someone-else")),
        Expected.unauthorized("audience"),
    )
    await case(
        "bad signature (another key, same kid)",
        mint(SigningKey.generate("RS256", rsa.kid), valid()),
        Expected.unauthorized("signature"),
    )
    await case(
        "claims changed after signing",
        with_claims_changed(mint(rsa, valid(email="mallory@example.com")), email=alice.email),
        Expected.unauthorized("signature"),
    )
    await case("alg none", unsigned(valid(), rsa.kid), Expected.unauthorized("algorithm"))
    await case(
        "HS256 keyed with the RSA public key's PEM",
        hmac_signed(valid(), rsa),
        Expected.unauthorized("algorithm"),
    )
    await case(
        "ES256 header with an RSA key's kid",
        mint(keys["ES256"], valid(), kid=rsa.kid),
        Expected.unauthorized(),
    )
    await case("no kid", mint(rsa, valid(), kid=DROP), Expected.unauthorized("key"))
    await case(
        "kid unknown to the issuer",
        mint(rsa.with_kid("k-nowhere"), valid()),
        Expected.unauthorized("key"),
    )
    await case(
        "kid of another domain's issuer (its key)",
        mint(other_key, valid()),
        Expected.unauthorized("key"),
    )
    await case(
        "token of another domain's issuer",
        mint(other_key, claims(other_audience, alice.email)),
        Expected.unauthorized(),
    )
    for claim in ("exp", "iss", "aud"):
        await case(
            f"no {claim} claim", mint(rsa, valid(**{claim: DROP})), Expected.unauthorized("missing")
        )
    await case("no email claim", mint(rsa, valid(email=DROP)), Expected.unauthorized("claim"))
    await case(
        "email claim not a string",
        mint(rsa, valid(email=[alice.email])),
        Expected.unauthorized("claim"),
    )
    await case(
        "email_verified false",
        mint(rsa, valid(email_verified=False)),
        Expected.unauthorized("not verified"),
    )
    await case(
        'email_verified "false" (text, as some IdPs send)',
        mint(rsa, valid(email_verified="false")),
        Expected.unauthorized("not verified"),
    )
    await case(
        "unknown user, no provisioning",
        mint(rsa, valid(email="stranger@example.com")),
        Expected.unauthorized("no user"),
    )
    await case("not a JWT", "garbage", Expected.unauthorized("not a JWT"))
    await case("three dots of garbage", "abc.def.ghi", Expected.unauthorized("not a JWT"))
    await case("empty id_token", "", Expected.unauthorized())
    await case(
        "domain without identity provider",
        mint(rsa, valid()),
        Expected.unauthorized("identity provider"),
        no_identity.id,
    )
    await case(
        "unknown domain",
        mint(rsa, valid()),
        Expected.unauthorized("identity provider"),
        "no-such-domain",
    )
    ok(await domain.api.delete(identity_path(domain)), 204)
    await case(
        "identity configuration deleted",
        mint(rsa, valid()),
        Expected.unauthorized("identity provider"),
    )

    print("\n\nFederated login: the verification matrix\n" + matrix.table() + "\n")
    assert not matrix.failures(), "\n".join(matrix.failures())
    discovery, keysets = await idp.fetches()
    assert discovery == keysets <= 2, (
        f"the issuer's keys were fetched {keysets} times (discovery {discovery}) in a few "
        "seconds: at most once, and once again for an unknown key id"
    )


async def test_keys_published_without_alg_are_used_with_the_tokens_alg(
    harness: Harness, start_idp: StartIdp
) -> None:
    """Entra ID publishes its keys without `alg`: the token's algorithm is used."""
    key = SigningKey.generate("RS256")
    idp = start_idp()
    published = jwks([key])
    for jwk in published["keys"]:
        del jwk["alg"]
    await idp.publish(published)
    domain = await harness.new_domain()
    audience = idp.audience()
    await configure(domain, audience)
    member = await domain.named_user()
    seen = await sign_in(harness, domain.id, mint(key, claims(audience, member.email)))
    assert seen.assert_welcomed()["user"]["id"] == member.id


async def test_a_custom_email_claim(harness: Harness, start_idp: StartIdp) -> None:
    key = SigningKey.generate("ES256")
    idp = start_idp([key])
    domain = await harness.new_domain()
    audience = idp.audience()
    await configure(domain, audience, email_claim="upn")
    member = await domain.named_user()

    seen = await sign_in(
        harness, domain.id, mint(key, claims(audience, "other@example.com", upn=member.email))
    )
    assert seen.assert_welcomed()["user"]["id"] == member.id, "the upn claim names the user"
    seen = await sign_in(harness, domain.id, mint(key, claims(audience, member.email)))
    seen.assert_refused("unauthorized", 4401, "claim", "upn")


async def test_the_identity_api(harness: Harness) -> None:
    domain = await harness.new_domain()
    path = identity_path(domain)
    admin = harness.api(await domain.token("admin"))
    wallboard = harness.api(await domain.token("wallboard"))
    stranger = harness.api(await (await harness.new_domain()).token("admin"))
    for_ = Audience("http://127.0.0.1:9/realms/acme", "presence-devices")

    refused(await admin.get(path), 404, "not_found")
    refused(await admin.delete(path), 404, "not_found")
    body = {"issuer": for_.issuer, "audience": for_.audience}
    expected = {**body, "email_claim": "email", "provision": None}
    assert ok(await admin.put(path, body)) == expected
    assert ok(await admin.get(path)) == expected
    assert ok(await harness.admin.get(path)) == expected, "the server admin reads it too"

    pool = await domain.pool(2)
    seat = {"model": "seat", "pool": pool["id"]}
    changed = {**body, "email_claim": "upn", "provision": seat}
    assert ok(await admin.put(path, changed)) == changed
    assert ok(await admin.get(path)) == changed
    named = {**body, "provision": {"model": "named"}}
    assert ok(await admin.put(path, named)) == {**named, "email_claim": "email"}

    for method in ("GET", "PUT", "DELETE"):
        answer = await wallboard.request(method, path, body if method == "PUT" else None)
        refused(answer, 403, "forbidden")
        answer = await stranger.request(method, path, body if method == "PUT" else None)
        refused(answer, 404, "not_found")
    assert ok(await admin.get(path))["provision"] == {"model": "named"}, "nothing changed"

    missing_pool = {**body, "provision": {"model": "seat", "pool": "no-such-pool"}}
    refused(await admin.put(path, missing_pool), 400, "bad_request", "provision.pool")
    refused(await admin.put(path, {**body, "issuer": "not a url"}), 400, "bad_request", "issuer")
    refused(await admin.put(path, {"issuer": for_.issuer}), 400, "bad_request", "audience")
    business = await harness.new_domain(plan="business", seat_licenses=0)
    refused(
        await harness.admin.put(identity_path(business), {**body, "provision": seat}),
        409,
        "plan_required",
    )
    assert ok(await admin.get(path))["provision"] == {"model": "named"}, "nothing changed"

    ok(await admin.delete(path), 204)
    refused(await admin.get(path), 404, "not_found")
    refused(await admin.delete(path), 404, "not_found")


async def test_an_http_or_private_issuer_needs_the_setting(own_server: StartServer) -> None:
    server = own_server()  # without PRESENCE_OIDC_ALLOW_HTTP
    async with Harness(server.server) as harness:
        domain = await harness.new_domain()
        path = identity_path(domain)
        body = {"issuer": "http://127.0.0.1:9", "audience": "presence"}
        refused(await harness.admin.put(path, body), 400, "bad_request", "issuer")
        for private in ("https://127.0.0.1:8443", "https://10.1.2.3/realms/acme"):
            answer = await harness.admin.put(path, {**body, "issuer": private})
            refused(answer, 400, "bad_request", "issuer")
        refused(await harness.admin.get(path), 404, "not_found")
        secure = {**body, "issuer": "https://login.example.com/tenant"}
        assert ok(await harness.admin.put(path, secure))["issuer"] == secure["issuer"]


async def test_failed_sign_ins_count_toward_the_brake(
    own_server: StartServer, start_idp: StartIdp
) -> None:
    limit = 3
    server = own_server(env={**OIDC_ENV, "PRESENCE_AUTH_FAILURES_PER_MINUTE": str(limit)})
    key = SigningKey.generate("EdDSA")
    idp: IdentityProvider = start_idp([key])
    async with Harness(server.server) as harness:
        domain = await harness.new_domain()
        audience = idp.audience()
        await configure(domain, audience)
        member = await domain.named_user()
        good = mint(key, claims(audience, member.email))
        (await sign_in(harness, domain.id, good)).assert_welcomed()
        for _ in range(limit):
            expired = mint(key, claims(audience, member.email, exp=int(time.time()) - 600))
            (await sign_in(harness, domain.id, expired)).assert_refused(
                "unauthorized", 4401, "expired"
            )
        braked = await sign_in(harness, domain.id, good)
        braked.assert_refused("rate_limited", 4429)
