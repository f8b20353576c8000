"""Every admin endpoint of the spec against every kind of token.

No token and a wrong token: 401. Any token of another domain: 404. A
wallboard token: 403, except reading presence. A user token: 403. The domain's
admin: allowed, except changing the domain and creating domains (403). The
server admin: allowed. After every refused request the domain is as it was.

The server is one of the module's own: the many 401s would otherwise count as
token guessing from 127.0.0.1 against the shared server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from server.client import API, Api, Device, Domain, Harness, Message, ok, refused

if TYPE_CHECKING:
    from conftest import StartServer

#: High enough that the matrix's 401s never trip the token-guessing brake.
NO_GUESSING_LIMIT = ("--auth-failures-per-minute", "1000000")


@dataclass(frozen=True)
class Endpoint:
    """One row of the spec's table; `{pool}`, `{user}`, `{token}`, `{lease}` are filled in."""

    method: str
    path: str  # after /api/v1/domains/{domain}; "" is the domain itself; None: POST /domains
    success: int
    domain_admin: bool = True  # whether the domain's own admin may
    wallboard: bool = False  # whether a wallboard token may

    @property
    def name(self) -> str:
        return f"{self.method} {self.path or '/'}"


CREATE_DOMAIN = Endpoint("POST", "<domains>", 201, domain_admin=False)
ENDPOINTS = [
    CREATE_DOMAIN,
    Endpoint("GET", "", 200),
    Endpoint("PATCH", "", 200, domain_admin=False),
    Endpoint("POST", "/tokens", 201),
    Endpoint("GET", "/tokens", 200),
    Endpoint("DELETE", "/tokens/{token}", 204),
    Endpoint("POST", "/pools", 201),
    Endpoint("GET", "/pools", 200),
    Endpoint("PATCH", "/pools/{pool}", 200),
    Endpoint("DELETE", "/pools/{pool}", 204),
    Endpoint("POST", "/users", 201),
    Endpoint("GET", "/users", 200),
    Endpoint("PUT", "/users/{user}/license", 200),
    Endpoint("DELETE", "/users/{user}", 204),
    Endpoint("POST", "/users/{user}/tokens", 201),
    Endpoint("GET", "/presence", 200, wallboard=True),
    Endpoint("DELETE", "/leases/{lease}", 204),
    Endpoint("GET", "/events", 200),
    Endpoint("GET", "/usage", 200),
    Endpoint("GET", "/usage/series", 200),
    Endpoint("GET", "/identity", 200),
    Endpoint("PUT", "/identity", 200),
    Endpoint("DELETE", "/identity", 204),
    Endpoint("GET", "/webhooks", 200),
    Endpoint("POST", "/webhooks", 201),
    Endpoint("PATCH", "/webhooks/{webhook}", 200),
    Endpoint("DELETE", "/webhooks/{webhook}", 204),
    Endpoint("GET", "/webhooks/{webhook}/deliveries", 200),
]
#: A webhook target that needs no connection to be saved (a public address).
HOOK_URL = "https://93.184.215.14/hook"
IDENTITY = {"issuer": "https://idp.example.com/realms/acme", "audience": "devices"}


@dataclass
class Target:
    """A domain with something behind every endpoint: an empty pool to change or
    delete, a user to change or delete, a token to revoke, a seat held by a
    logged-in device, a webhook endpoint and an identity provider."""

    domain: Domain
    empty_pool: str
    spare_user: str
    spare_token: str
    lease: str
    holder: Device
    webhook: str


async def make_target(harness: Harness) -> Target:
    domain = await harness.new_domain()
    pool = await domain.pool(3, pool_id="desk")
    empty = await domain.pool(1, pool_id="spare")
    holder = await harness.login(await domain.seat_user(pool), kind="phone")
    spare = await domain.named_user()
    await domain.seat_user(pool)  # one more user, logged out
    board = await domain.new_token("wallboard")
    ok(await domain.api.put(domain.path("identity"), IDENTITY))
    hook = ok(await domain.api.post(domain.path("webhooks"), {"url": HOOK_URL}), 201)
    return Target(
        domain, empty["id"], spare.id, board["id"], holder.license["lease_id"], holder, hook["id"]
    )


def body_for(endpoint: Endpoint) -> Any:
    key = uuid.uuid4().hex[:10]
    if endpoint is CREATE_DOMAIN:
        return {
            "id": f"new-{key}",
            "name": "New",
            "plan": "enterprise",
            "named_licenses": 1,
            "seat_licenses": 1,
        }
    bodies: dict[tuple[str, str], Any] = {
        ("PATCH", ""): {"name": "Changed", "seat_licenses": 99},
        ("POST", "/tokens"): {"role": "admin"},
        ("POST", "/pools"): {"id": f"p-{key}", "name": "New pool", "seats": 1},
        ("PATCH", "/pools/{pool}"): {"name": "Changed", "seats": 0},
        ("POST", "/users"): {
            "email": f"{key}@example.com",
            "name": "New",
            "license": {"model": "named"},
        },
        ("PUT", "/users/{user}/license"): {"model": "none"},
        ("PUT", "/identity"): {**IDENTITY, "provision": {"model": "named"}},
        ("POST", "/webhooks"): {"url": HOOK_URL, "events": ["pool_full"]},
        ("PATCH", "/webhooks/{webhook}"): {"description": "Changed"},
    }
    return bodies.get((endpoint.method, endpoint.path))


def url_for(endpoint: Endpoint, target: Target) -> str:
    if endpoint is CREATE_DOMAIN:
        return f"{API}/domains"
    path = endpoint.path.format(
        pool=target.empty_pool, user=target.spare_user, token=target.spare_token,
        lease=target.lease, webhook=target.webhook,
    )  # fmt: skip
    return target.domain.path() + path


async def send(api: Api, endpoint: Endpoint, target: Target) -> Any:
    return await api.request(endpoint.method, url_for(endpoint, target), body_for(endpoint))


async def state(domain: Domain) -> Message:
    """Everything a refused request must leave as it was, as the server admin sees it."""
    snapshot = {
        "domain": await domain.get(),
        "pools": await domain.pools(),
        "users": await domain.users(),
        # Refused requests may bring the last use of the token they carry up to date.
        "tokens": {key: {**t, "last_used_at": None} for key, t in (await domain.tokens()).items()},
        "presence": await domain.presence(),
        "events": len(await domain.all_events()),
        "identity": ok(await domain.api.get(domain.path("identity"))),
        "webhooks": ok(await domain.api.get(domain.path("webhooks"))),
    }
    return snapshot


@dataclass
class World:
    harness: Harness
    mine: Target
    tokens: dict[str, str | None]


@pytest.fixture
async def world(own_server: StartServer) -> AsyncIterator[World]:
    server = own_server(*NO_GUESSING_LIMIT, lease_ttl=30).server
    async with Harness(server) as harness:
        mine = await make_target(harness)
        other = await harness.new_domain()
        tokens: dict[str, str | None] = {
            "none": None,
            "wrong": "prs_" + uuid.uuid4().hex,
            "other admin": await other.token("admin"),
            "other wallboard": await other.token("wallboard"),
            "other user": (await other.named_user()).token,
            "wallboard": await mine.domain.token("wallboard"),
            "user": (await mine.domain.named_user()).token,
            "domain admin": await mine.domain.token("admin"),
        }
        yield World(harness, mine, tokens)


def expected_refusal(role: str, endpoint: Endpoint) -> tuple[int, str] | None:
    """The status and code a role gets, or None when it is allowed."""
    if role in ("none", "wrong"):
        return 401, "unauthorized"
    if endpoint is CREATE_DOMAIN:
        return 403, "forbidden"
    if role.startswith("other "):
        return 404, "not_found"
    if role == "wallboard":
        return None if endpoint.wallboard else (403, "forbidden")
    if role == "user":
        return 403, "forbidden"
    assert role == "domain admin", role
    return None if endpoint.domain_admin else (403, "forbidden")


REFUSING_ROLES = [
    "none",
    "wrong",
    "other admin",
    "other wallboard",
    "other user",
    "wallboard",
    "user",
    "domain admin",
]


@pytest.mark.parametrize("role", REFUSING_ROLES)
async def test_refused_requests_change_nothing(world: World, role: str) -> None:
    api = world.harness.api(world.tokens[role])
    domain = world.mine.domain
    tried = 0
    for endpoint in ENDPOINTS:
        expected = expected_refusal(role, endpoint)
        if expected is None:
            continue
        before = await state(domain)
        answer = await send(api, endpoint, world.mine)
        refused(answer, *expected)
        tried += 1
        assert await state(domain) == before, f"{role} changed the domain with {endpoint.name}"
        if endpoint is CREATE_DOMAIN:
            created = body_for(endpoint)["id"]
            refused(await domain.api.get(f"{API}/domains/{created}"), 404, "not_found")
    # The holder never noticed anything.
    await world.mine.holder.heartbeat(1)
    assert world.mine.holder.close_code is None
    assert tried >= 2


@pytest.mark.parametrize("role", ["wallboard", "domain admin", "server admin"])
async def test_allowed_requests_succeed(world: World, role: str) -> None:
    harness = world.harness
    allowed = [e for e in ENDPOINTS if role == "server admin" or expected_refusal(role, e) is None]
    # Each request gets a fresh target: deleting the pool or the user, or
    # releasing the lease, must find them there.
    for endpoint in allowed:
        target = await make_target(harness)
        if role == "server admin":
            api = harness.admin
        else:
            api = harness.api(await target.domain.token(role.removeprefix("domain ")))
        ok(await send(api, endpoint, target), endpoint.success)
    expected = {"wallboard": 1, "domain admin": len(ENDPOINTS) - 2, "server admin": len(ENDPOINTS)}
    assert len(allowed) == expected[role]
