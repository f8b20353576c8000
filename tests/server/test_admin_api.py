"""The admin HTTP API (spec sections 1 and 2), against a real server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .client import (
    API,
    Harness,
    fields_of,
    ok,
    parse_utc,
    refused,
    unique_id,
)

DOMAIN_KEYS = frozenset({"id", "name", "plan", "named_licenses", "seat_licenses"})
POOL_KEYS = frozenset({"id", "name", "seats", "idle_logoff_s", "occupied"})
USER_KEYS = frozenset({"id", "email", "name", "license"})
DOMAINS = f"{API}/domains"


def domain_body(**changes: Any) -> dict[str, Any]:
    body = {
        "id": unique_id("dom"),
        "name": "Acme",
        "plan": "enterprise",
        "named_licenses": 5,
        "seat_licenses": 3,
    }
    body.update(changes)
    return body


def user_body(license: Any, **changes: Any) -> dict[str, Any]:
    body = {"email": f"{unique_id('u')}@example.com", "name": "Ann", "license": license}
    body.update(changes)
    return body


async def test_healthz_answers_without_a_token(harness: Harness) -> None:
    assert ok(await harness.api(None).get("/healthz")) == {"status": "ok"}


# Domains


async def test_create_get_and_patch_a_domain(harness: Harness) -> None:
    admin = harness.admin
    body = domain_body(plan="business", seat_licenses=0)

    created = ok(await admin.post(DOMAINS, body), 201)
    assert fields_of(created, DOMAIN_KEYS) == body
    fetched = ok(await admin.get(f"{DOMAINS}/{body['id']}"))
    assert fields_of(fetched, DOMAIN_KEYS) == body

    change = {"name": "Acme Corp", "plan": "enterprise", "seat_licenses": 4}
    patched = ok(await admin.patch(f"{DOMAINS}/{body['id']}", change))
    assert fields_of(patched, DOMAIN_KEYS) == {**body, **change}
    fetched = ok(await admin.get(f"{DOMAINS}/{body['id']}"))
    assert fields_of(fetched, DOMAIN_KEYS) == {**body, **change}


async def test_duplicate_domain_id_is_already_exists(harness: Harness) -> None:
    body = domain_body()
    ok(await harness.admin.post(DOMAINS, body), 201)

    again = domain_body(id=body["id"], name="Impostor", named_licenses=9)
    refused(await harness.admin.post(DOMAINS, again), 409, "already_exists")

    fetched = ok(await harness.admin.get(f"{DOMAINS}/{body['id']}"))
    assert fields_of(fetched, DOMAIN_KEYS) == body


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("id", {"id": "Acme"}),
        ("id", {"id": "-acme"}),
        ("id", {"id": "acme_corp"}),
        ("id", {"id": "a" * 64}),
        ("id", {"id": 42}),
        ("id", {"id": None}),
        ("name", {"name": None}),
        ("plan", {"plan": "gold"}),
        ("named_licenses", {"named_licenses": -1}),
        ("named_licenses", {"named_licenses": "5"}),
        ("seat_licenses", {"seat_licenses": True}),
        ("seat_licenses", {"seat_licenses": 1.5}),
    ],
)
async def test_bad_domain_is_bad_request(
    harness: Harness, field: str, changes: dict[str, Any]
) -> None:
    body = domain_body(**changes)
    body = {key: value for key, value in body.items() if value is not None}

    refused(await harness.admin.post(DOMAINS, body), 400, "bad_request", field)

    if field != "id":
        refused(await harness.admin.get(f"{DOMAINS}/{body['id']}"), 404, "not_found")


async def test_longest_domain_id_is_accepted(harness: Harness) -> None:
    body = domain_body(id=unique_id("d").ljust(63, "z"))
    created = ok(await harness.admin.post(DOMAINS, body), 201)
    assert created["id"] == body["id"]


async def test_body_that_is_not_json_is_bad_request(harness: Harness) -> None:
    answer = await harness.admin.request(
        "POST", DOMAINS, content=b"{", headers={"Content-Type": "application/json"}
    )
    refused(answer, 400, "bad_request")


async def test_bad_domain_patch_is_bad_request(harness: Harness) -> None:
    domain = await harness.new_domain()
    before = await domain.get()

    answer = await harness.admin.patch(domain.path(), {"named_licenses": "many"})

    refused(answer, 400, "bad_request", "named_licenses")
    assert await domain.get() == before


async def test_unknown_things_are_not_found(harness: Harness) -> None:
    admin = harness.admin
    refused(await admin.get(f"{DOMAINS}/{unique_id('nope')}"), 404, "not_found")
    domain = await harness.new_domain()
    nobody = unique_id("nobody")
    refused(await admin.patch(domain.path("pools", "nope"), {"seats": 1}), 404, "not_found")
    refused(await admin.delete(domain.path("pools", "nope")), 404, "not_found")
    refused(
        await admin.put(domain.path("users", nobody, "license"), {"model": "none"}),
        404,
        "not_found",
    )
    refused(await admin.delete(domain.path("users", nobody)), 404, "not_found")
    refused(await admin.post(domain.path("users", nobody, "tokens")), 404, "not_found")
    refused(await admin.delete(domain.path("leases", "no-such-lease")), 404, "not_found")


#: Path segments that cannot be ids, percent-encoded as they go on the wire:
#: NUL (which PostgreSQL's text refuses), a Unicode digit, upper case, too long.
NOT_IDS = ["%00", "a%00b", "%C2%B2", "Acme", "x" * 64, "%E2%80%AE"]


@pytest.mark.parametrize("segment", NOT_IDS)
async def test_an_id_in_a_path_that_cannot_be_one_is_bad_request(
    harness: Harness, segment: str
) -> None:
    admin = harness.admin
    domain = await harness.new_domain()
    member = await domain.named_user()
    pool = await domain.pool(1)
    for method, path, body, field in [
        ("GET", f"{DOMAINS}/{segment}", None, "domain"),
        ("GET", f"{DOMAINS}/{segment}/events", None, "domain"),
        ("PATCH", domain.path("pools", segment), {"seats": 1}, "pool"),
        ("DELETE", domain.path("pools", segment), None, "pool"),
        ("PUT", domain.path("users", segment, "license"), {"model": "none"}, "user"),
        ("DELETE", domain.path("users", segment), None, "user"),
        ("POST", domain.path("users", segment, "tokens"), None, "user"),
        ("DELETE", domain.path("leases", segment), None, "lease_id"),
    ]:
        answer = await admin.request(method, path, body)
        refused(answer, 400, "bad_request", field)
    # Nothing changed, and the server carries on.
    assert [u["id"] for u in (await domain.users()).values()] == [member.id]
    assert (await domain.pools())[pool["id"]]["seats"] == 1
    ok(await admin.get(domain.path()))


# Tokens and roles


async def test_tokens_have_the_role_asked_for(harness: Harness) -> None:
    domain = await harness.new_domain()
    admin = harness.admin

    tokens = []
    for role in ("admin", "wallboard", "admin"):
        grant = ok(await admin.post(domain.path("tokens"), {"role": role}), 201)
        assert grant["role"] == role
        assert isinstance(grant["token"], str) and grant["token"]
        tokens.append(grant["token"])
    user = ok(await admin.post(domain.path("users"), user_body({"model": "named"})), 201)
    grant = ok(await admin.post(domain.path("users", user["id"], "tokens")), 201)
    assert grant["role"] == "user"
    assert isinstance(grant["token"], str) and grant["token"]
    tokens.append(grant["token"])
    assert len(set(tokens)) == len(tokens)

    for role in ("root", "user", None):
        body = {} if role is None else {"role": role}
        answer = await admin.post(domain.path("tokens"), body)
        refused(answer, 400, "bad_request", "role")


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_requests_without_a_valid_token_are_unauthorized(
    harness: Harness, token: str | None
) -> None:
    domain = await harness.new_domain()
    api = harness.api(token)

    refused(await api.get(domain.path()), 401, "unauthorized")
    refused(await api.get(domain.path("presence")), 401, "unauthorized")
    refused(await api.post(DOMAINS, domain_body()), 401, "unauthorized")


async def test_other_scheme_than_bearer_is_unauthorized(harness: Harness) -> None:
    domain = await harness.new_domain()
    answer = await harness.api(None).request(
        "GET",
        domain.path(),
        headers={"Authorization": f"Basic {harness.server.admin_token}"},
    )
    refused(answer, 401, "unauthorized")


async def test_domain_admin_manages_its_own_domain(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=10)
    api = harness.api(await domain.token("admin"))

    assert ok(await api.get(domain.path()))["id"] == domain.id
    pool = ok(await api.post(domain.path("pools"), {"id": "desk", "name": "D", "seats": 2}), 201)
    assert ok(await api.patch(domain.path("pools", "desk"), {"seats": 3}))["seats"] == 3
    assert [p["id"] for p in ok(await api.get(domain.path("pools")))] == [pool["id"]]
    body = user_body({"model": "seat", "pool": "desk"})
    user = ok(await api.post(domain.path("users"), body), 201)
    assert [u["id"] for u in ok(await api.get(domain.path("users")))] == [user["id"]]
    license = {"model": "named"}
    put = await api.put(domain.path("users", user["id"], "license"), license)
    assert ok(put)["license"] == license
    ok(await api.post(domain.path("users", user["id"], "tokens")), 201)
    ok(await api.post(domain.path("tokens"), {"role": "wallboard"}), 201)
    ok(await api.post(domain.path("tokens"), {"role": "admin"}), 201)
    assert ok(await api.get(domain.path("presence")))["domain"] == domain.id
    ok(await api.delete(domain.path("users", user["id"])), 204)
    ok(await api.delete(domain.path("pools", "desk")), 204)
    assert ok(await api.get(domain.path("pools"))) == []


async def test_domain_admin_cannot_do_server_admin_things(harness: Harness) -> None:
    domain = await harness.new_domain()
    before = await domain.get()
    api = harness.api(await domain.token("admin"))

    refused(await api.patch(domain.path(), {"named_licenses": 999}), 403, "forbidden")
    body = domain_body()
    refused(await api.post(DOMAINS, body), 403, "forbidden")

    assert await domain.get() == before
    refused(await harness.admin.get(f"{DOMAINS}/{body['id']}"), 404, "not_found")


@pytest.mark.parametrize("role", ["admin", "wallboard", "user"])
async def test_token_of_one_domain_never_sees_another(harness: Harness, role: str) -> None:
    mine = await harness.new_domain()
    other = await harness.new_domain()
    other_pool = await other.pool(2, pool_id="desk")
    other_user = await other.seat_user(other_pool)
    if role == "user":
        token = (await mine.named_user()).token
    else:
        token = await mine.token(role)
    api = harness.api(token)
    before = (await other.get(), await other.pools(), await other.users())

    refused(await api.get(other.path()), 404, "not_found")
    refused(await api.get(other.path("presence")), 404, "not_found")
    refused(await api.get(other.path("pools")), 404, "not_found")
    refused(await api.get(other.path("users")), 404, "not_found")
    refused(await api.patch(other.path("pools", "desk"), {"seats": 1}), 404, "not_found")
    refused(await api.delete(other.path("pools", "desk")), 404, "not_found")
    body = {"id": "mine", "name": "M", "seats": 1}
    refused(await api.post(other.path("pools"), body), 404, "not_found")
    refused(
        await api.post(other.path("users"), user_body({"model": "named"})),
        404,
        "not_found",
    )
    refused(
        await api.put(other.path("users", other_user.id, "license"), {"model": "none"}),
        404,
        "not_found",
    )
    refused(await api.delete(other.path("users", other_user.id)), 404, "not_found")
    refused(await api.post(other.path("users", other_user.id, "tokens")), 404, "not_found")
    refused(await api.post(other.path("tokens"), {"role": "admin"}), 404, "not_found")

    assert (await other.get(), await other.pools(), await other.users()) == before


@pytest.mark.parametrize("role", ["wallboard", "user"])
async def test_wallboard_and_user_tokens_cannot_administer(harness: Harness, role: str) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2, pool_id="desk")
    member = await domain.seat_user(pool)
    token = member.token if role == "user" else await domain.token("wallboard")
    api = harness.api(token)
    before = (await domain.get(), await domain.pools(), await domain.users())

    refused(await api.get(domain.path()), 403, "forbidden")
    refused(await api.get(domain.path("pools")), 403, "forbidden")
    refused(await api.get(domain.path("users")), 403, "forbidden")
    body = {"id": "other", "name": "O", "seats": 1}
    refused(await api.post(domain.path("pools"), body), 403, "forbidden")
    refused(await api.patch(domain.path("pools", "desk"), {"seats": 1}), 403, "forbidden")
    refused(await api.delete(domain.path("pools", "desk")), 403, "forbidden")
    refused(
        await api.post(domain.path("users"), user_body({"model": "named"})),
        403,
        "forbidden",
    )
    refused(
        await api.put(domain.path("users", member.id, "license"), {"model": "none"}),
        403,
        "forbidden",
    )
    refused(await api.delete(domain.path("users", member.id)), 403, "forbidden")
    refused(await api.post(domain.path("users", member.id, "tokens")), 403, "forbidden")
    refused(await api.post(domain.path("tokens"), {"role": "admin"}), 403, "forbidden")
    refused(await api.patch(domain.path(), {"name": "Mine now"}), 403, "forbidden")
    refused(await api.post(DOMAINS, domain_body()), 403, "forbidden")

    assert (await domain.get(), await domain.pools(), await domain.users()) == before


async def test_wallboard_token_reads_presence(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    await harness.login(await domain.seat_user(pool))
    wallboard = harness.api(await domain.token("wallboard"))

    seen = ok(await wallboard.get(domain.path("presence")))

    assert seen["domain"] == domain.id
    assert seen == await domain.presence()
    user = harness.api((await domain.named_user()).token)
    refused(await user.get(domain.path("presence")), 403, "forbidden")


# Pools


async def test_pool_create_list_patch_and_delete(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=10)
    admin = harness.admin

    desk = ok(
        await admin.post(domain.path("pools"), {"id": "desk", "name": "Desk", "seats": 3}),
        201,
    )
    assert fields_of(desk, POOL_KEYS) == {
        "id": "desk",
        "name": "Desk",
        "seats": 3,
        "idle_logoff_s": 0,
        "occupied": 0,
    }
    body = {"id": "night", "name": "Night", "seats": 2, "idle_logoff_s": 300}
    night = ok(await admin.post(domain.path("pools"), body), 201)
    assert fields_of(night, POOL_KEYS) == {**body, "occupied": 0}
    pools = await domain.pools()
    assert set(pools) == {"desk", "night"}
    assert fields_of(pools["night"], POOL_KEYS) == {**body, "occupied": 0}

    change = {"name": "Front desk", "seats": 5, "idle_logoff_s": 60}
    patched = ok(await admin.patch(domain.path("pools", "desk"), change))
    assert fields_of(patched, POOL_KEYS) == {"id": "desk", "occupied": 0, **change}
    assert fields_of((await domain.pools())["desk"], POOL_KEYS) == fields_of(patched, POOL_KEYS)

    ok(await admin.delete(domain.path("pools", "night")), 204)
    assert set(await domain.pools()) == {"desk"}
    refused(await admin.delete(domain.path("pools", "night")), 404, "not_found")


async def test_pool_occupied_counts_logged_in_holders(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    for _ in range(2):
        await harness.login(await domain.seat_user(pool))
    await domain.seat_user(pool)

    assert (await domain.pools())[pool["id"]]["occupied"] == 2


async def test_duplicate_pool_id_is_already_exists(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=10)
    pool = await domain.pool(2, pool_id="desk", name="Desk")

    body = {"id": "desk", "name": "Other", "seats": 4}
    refused(await harness.admin.post(domain.path("pools"), body), 409, "already_exists")

    assert fields_of((await domain.pools())["desk"], POOL_KEYS) == fields_of(pool, POOL_KEYS)


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("id", {"id": "Help Desk"}),
        ("id", {"id": "x" * 64}),
        ("id", {"id": None}),
        ("name", {"name": None}),
        ("seats", {"seats": -1}),
        ("seats", {"seats": "3"}),
        ("seats", {"seats": None}),
        ("idle_logoff_s", {"idle_logoff_s": -5}),
        ("idle_logoff_s", {"idle_logoff_s": "soon"}),
    ],
)
async def test_bad_pool_is_bad_request(
    harness: Harness, field: str, changes: dict[str, Any]
) -> None:
    domain = await harness.new_domain()
    body = {"id": "desk", "name": "Desk", "seats": 2, **changes}
    body = {key: value for key, value in body.items() if value is not None}

    answer = await harness.admin.post(domain.path("pools"), body)

    refused(answer, 400, "bad_request", field)
    assert await domain.pools() == {}


async def test_bad_pool_patch_is_bad_request(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    before = await domain.pools()

    answer = await harness.admin.patch(domain.path("pools", pool["id"]), {"seats": -2})

    refused(answer, 400, "bad_request", "seats")
    assert await domain.pools() == before


# Licensing rules: every refusal leaves the state as it was


async def test_seats_and_pools_require_enterprise(harness: Harness) -> None:
    admin = harness.admin
    for plan in ("standard", "business"):
        body = domain_body(plan=plan, seat_licenses=2)
        refused(await admin.post(DOMAINS, body), 409, "plan_required")
        refused(await admin.get(f"{DOMAINS}/{body['id']}"), 404, "not_found")

        domain = await harness.new_domain(plan=plan, seat_licenses=0)
        before = await domain.get()
        pool = {"id": "desk", "name": "Desk", "seats": 1}
        refused(await admin.post(domain.path("pools"), pool), 409, "plan_required")
        assert await domain.pools() == {}
        answer = await admin.patch(domain.path(), {"seat_licenses": 2})
        refused(answer, 409, "plan_required")
        assert await domain.get() == before


async def test_plan_downgrade_with_pools_is_plan_required(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=2)
    await domain.pool(2)
    before = (await domain.get(), await domain.pools())

    for plan in ("business", "standard"):
        answer = await harness.admin.patch(domain.path(), {"plan": plan})
        refused(answer, 409, "plan_required")

    assert (await domain.get(), await domain.pools()) == before


async def test_plan_downgrade_without_seats_is_allowed(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=0)

    patched = ok(await harness.admin.patch(domain.path(), {"plan": "standard"}))

    assert patched["plan"] == "standard"
    assert (await domain.get())["plan"] == "standard"


async def test_pools_cannot_exceed_seat_licenses(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=5)
    admin = harness.admin
    desk = await domain.pool(3, pool_id="desk")

    body = {"id": "night", "name": "Night", "seats": 3}
    refused(await admin.post(domain.path("pools"), body), 409, "seats_exceed_licenses")
    assert set(await domain.pools()) == {"desk"}

    answer = await admin.patch(domain.path("pools", "desk"), {"seats": 6})
    refused(answer, 409, "seats_exceed_licenses")
    assert (await domain.pools())["desk"]["seats"] == 3

    ok(await admin.post(domain.path("pools"), {**body, "seats": 2}), 201)
    answer = await admin.patch(domain.path("pools", "desk"), {"seats": 4})
    refused(answer, 409, "seats_exceed_licenses")
    assert {p["id"]: p["seats"] for p in (await domain.pools()).values()} == {
        desk["id"]: 3,
        "night": 2,
    }


async def test_seat_licenses_cannot_drop_below_pool_seats(harness: Harness) -> None:
    domain = await harness.new_domain(seat_licenses=5)
    await domain.pool(2)
    await domain.pool(2)
    before = (await domain.get(), await domain.pools())

    answer = await harness.admin.patch(domain.path(), {"seat_licenses": 3})

    refused(answer, 409, "seats_exceed_licenses")
    assert (await domain.get(), await domain.pools()) == before
    patched = ok(await harness.admin.patch(domain.path(), {"seat_licenses": 4}))
    assert patched["seat_licenses"] == 4


async def test_named_users_cannot_exceed_named_licenses(harness: Harness) -> None:
    domain = await harness.new_domain(named_licenses=2)
    admin = harness.admin
    for _ in range(2):
        await domain.named_user()
    spare = await domain.user({"model": "none"})
    before = await domain.users()

    answer = await admin.post(domain.path("users"), user_body({"model": "named"}))
    refused(answer, 409, "license_limit")
    put = await admin.put(domain.path("users", spare.id, "license"), {"model": "named"})
    refused(put, 409, "license_limit")
    assert await domain.users() == before

    # A named user's own license does not count twice: moving it out and back fits.
    named = next(u for u in before.values() if u["license"]["model"] == "named")
    for model in ("none", "named"):
        ok(await admin.put(domain.path("users", named["id"], "license"), {"model": model}))


async def test_named_licenses_cannot_drop_below_use(harness: Harness) -> None:
    domain = await harness.new_domain(named_licenses=3)
    await domain.named_user()
    await domain.named_user()
    before = await domain.get()

    answer = await harness.admin.patch(domain.path(), {"named_licenses": 1})

    refused(answer, 409, "license_limit")
    assert await domain.get() == before
    patched = ok(await harness.admin.patch(domain.path(), {"named_licenses": 2}))
    assert patched["named_licenses"] == 2


async def test_pool_with_users_cannot_be_deleted(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    before = (await domain.pools(), await domain.users())

    answer = await harness.admin.delete(domain.path("pools", pool["id"]))

    refused(answer, 409, "pool_not_empty")
    assert (await domain.pools(), await domain.users()) == before
    license = {"model": "named"}
    ok(await harness.admin.put(domain.path("users", member.id, "license"), license))
    ok(await harness.admin.delete(domain.path("pools", pool["id"])), 204)
    assert await domain.pools() == {}


# Users


async def test_users_in_each_license_model(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    licenses = [
        {"model": "named"},
        {"model": "seat", "pool": pool["id"]},
        {"model": "none"},
    ]

    created = {}
    for license in licenses:
        body = user_body(license, name=f"User {license['model']}")
        user = ok(await harness.admin.post(domain.path("users"), body), 201)
        assert isinstance(user["id"], str) and user["id"]
        assert fields_of(user, USER_KEYS) == {"id": user["id"], **body}
        created[user["id"]] = fields_of(user, USER_KEYS)

    listed = await domain.users()
    assert {key: fields_of(user, USER_KEYS) for key, user in listed.items()} == created


async def test_duplicate_email_is_email_taken(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    before = await domain.users()

    for email in (member.email, member.email.upper()):  # addresses match in any case
        body = user_body({"model": "none"}, email=email, name="Other")
        answer = await harness.admin.post(domain.path("users"), body)
        refused(answer, 409, "email_taken")
    assert await domain.users() == before


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("email", {"email": None}),
        ("email", {"email": 42}),
        ("name", {"name": None}),
        ("license", {"license": None}),
        (("license", "license.model"), {"license": {"model": "gold"}}),
        (("license", "license.model"), {"license": {}}),
        (("license", "license.pool"), {"license": {"model": "seat"}}),
        ("license", {"license": "named"}),
    ],
)
async def test_bad_user_is_bad_request(
    harness: Harness, field: str | tuple[str, ...], changes: dict[str, Any]
) -> None:
    domain = await harness.new_domain()
    await domain.pool(2)
    body = {**user_body({"model": "named"}), **changes}
    body = {key: value for key, value in body.items() if value is not None}

    answer = await harness.admin.post(domain.path("users"), body)

    refused(answer, 400, "bad_request", field)
    assert await domain.users() == {}


async def test_put_license_moves_a_user_between_models(harness: Harness) -> None:
    domain = await harness.new_domain(named_licenses=1)
    pool = await domain.pool(2)
    ann = await domain.named_user()
    bob = await domain.user({"model": "none"})
    admin = harness.admin

    seat = {"model": "seat", "pool": pool["id"]}
    moved = ok(await admin.put(domain.path("users", ann.id, "license"), seat))
    assert fields_of(moved, USER_KEYS)["license"] == seat
    # Ann's named license is free again: Bob may take it.
    named = {"model": "named"}
    moved = ok(await admin.put(domain.path("users", bob.id, "license"), named))
    assert moved["license"] == named
    moved = ok(await admin.put(domain.path("users", ann.id, "license"), {"model": "none"}))
    assert moved["license"] == {"model": "none"}

    users = await domain.users()
    assert users[ann.id]["license"] == {"model": "none"}
    assert users[bob.id]["license"] == named
    answer = await admin.put(domain.path("users", ann.id, "license"), {"model": "gold"})
    refused(answer, 400, "bad_request", ("license", "license.model", "model"))
    assert await domain.users() == users


async def test_delete_user(harness: Harness) -> None:
    domain = await harness.new_domain(named_licenses=1)
    ann = await domain.named_user()

    ok(await harness.admin.delete(domain.path("users", ann.id)), 204)

    assert await domain.users() == {}
    refused(await harness.admin.delete(domain.path("users", ann.id)), 404, "not_found")
    # Her named license is free again.
    await domain.named_user()


# Presence


async def test_presence_snapshot(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(3, name="Help desk")
    empty = await domain.pool(2, name="Night shift")
    grace = await domain.seat_user(desk, "Grace Hopper")
    ada = await domain.named_user("Ada Lovelace")
    seated = await harness.login(grace, kind="desktop", name="Grace's PC")
    await seated.call_start("call-1")
    await seated.expect("call_started", call_id="call-1")
    phone = await harness.login(ada, kind="phone", name="Ada's phone")

    snapshot = await domain.presence()

    assert snapshot["domain"] == domain.id
    pools = {entry["id"]: entry for entry in snapshot["pools"]}
    assert set(pools) == {desk["id"], empty["id"]}
    counts = {"occupied", "in_call", "free", "queued"}
    assert fields_of(pools[desk["id"]], {"id", "name", "seats"} | counts) == {
        "id": desk["id"],
        "name": "Help desk",
        "seats": 3,
        "occupied": 1,
        "in_call": 1,
        "free": 2,
        "queued": 0,
    }
    assert fields_of(pools[empty["id"]], {"seats", "holders"} | counts) == {
        "seats": 2,
        "occupied": 0,
        "in_call": 0,
        "free": 2,
        "queued": 0,
        "holders": [],
    }
    [holder] = pools[desk["id"]]["holders"]
    fields_of(holder, {"seat", "lease_id", "user", "device", "since", "in_call"})
    assert fields_of(holder, {"seat", "lease_id", "in_call"}) == {
        "seat": seated.license["seat"],
        "lease_id": seated.license["lease_id"],
        "in_call": True,
    }
    assert fields_of(holder["user"], {"id", "name"}) == {
        "id": grace.id,
        "name": "Grace Hopper",
    }
    assert fields_of(holder["device"], {"id", "kind", "name"}) == {
        "id": seated.id,
        "kind": "desktop",
        "name": "Grace's PC",
    }
    assert_recent(holder["since"])

    [named] = [entry for entry in snapshot["named"] if entry["user"]["id"] == ada.id]
    fields_of(named, {"user", "devices"})
    assert fields_of(named["user"], {"id", "name"}) == {
        "id": ada.id,
        "name": "Ada Lovelace",
    }
    [device] = named["devices"]
    assert fields_of(device, {"id", "kind", "name", "in_call"}) == {
        "id": phone.id,
        "kind": "phone",
        "name": "Ada's phone",
        "in_call": False,
    }
    assert_recent(device["since"])
    assert all(entry["user"]["id"] != grace.id for entry in snapshot["named"])


def assert_recent(value: Any) -> None:
    moment = parse_utc(value)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=5), value


async def test_admin_releases_a_lease(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")
    lease_id = holder.license["lease_id"]

    ok(await harness.admin.delete(domain.path("leases", lease_id)), 204)

    await holder.expect_ended("released_by_admin", 4412)
    await waiting.expect("availability", occupied=0, free=1)
    await domain.wait_pool(pool, occupied=0, free=1, holders=[])
    refused(await harness.admin.delete(domain.path("leases", lease_id)), 404, "not_found")
    assert (await waiting.acquire())["type"] == "welcome"


async def test_domain_admin_releases_but_wallboard_cannot(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    lease_id = holder.license["lease_id"]
    wallboard = harness.api(await domain.token("wallboard"))
    domain_admin = harness.api(await domain.token("admin"))

    refused(await wallboard.delete(domain.path("leases", lease_id)), 403, "forbidden")
    assert (await domain.pool_presence(pool))["occupied"] == 1

    ok(await domain_admin.delete(domain.path("leases", lease_id)), 204)
    await holder.expect_ended("released_by_admin", 4412)
