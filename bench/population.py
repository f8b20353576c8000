"""The customers, users and tokens of a run, made through the admin HTTP API.

The held sessions belong to tenant domains of up to 1,000 sessions each, as a
multi-tenant node serves many customers: half are seat users in pools of
:data:`POOL_SEATS` seats (every one gets a seat), half are the devices of
named users, :data:`NAMED_DEVICES` each. ``race`` has one pool of a few seats
and many users; ``fan`` has a one-seat pool whose holder's comings and goings
are announced to its refused users' devices (:data:`FAN_DEVICES` each) and to
wallboards.
"""

from __future__ import annotations

import math
from typing import Any

from .servers import AdminApi

TENANT_SESSIONS = 1000
POOL_SEATS = 100
NAMED_DEVICES = 4
NAMED_KINDS = ("desktop", "phone", "tablet", "glasses")
FAN_DEVICES = 10

Hello = dict[str, Any]


def hello(token: str, device_id: str, kind: str = "desktop") -> Hello:
    return {"type": "hello", "token": token, "device": {"id": device_id, "kind": kind}}


def tenants(
    api: AdminApi, sessions: int, size: int = TENANT_SESSIONS, name: str = "tenant"
) -> tuple[list[Hello], list[str]]:
    """Tenant domains of ``size`` sessions for ``sessions`` held sessions (named
    ``name-0``, ``name-1``...): their hellos, named and seat interleaved so that
    every step of the hold has both kinds, and the seat users' tokens."""
    held: list[Hello] = []
    seat_users: list[str] = []
    for tenant, start in enumerate(range(0, sessions, size)):
        named, seat, tokens = _tenant(api, f"{name}-{tenant}", min(size, sessions - start))
        for n in range(max(len(named), len(seat))):
            held.extend(named[n : n + 1] + seat[n : n + 1])
        seat_users.extend(tokens)
    return held, seat_users


def race(api: AdminApi, seats: int, contenders: int) -> list[Hello]:
    """``contenders`` users of one pool of ``seats`` seats."""
    tokens = _seat_users(api, "race", [seats], contenders)
    return [hello(token, f"race-{n}") for n, token in enumerate(tokens)]


def fan(api: AdminApi, devices: int) -> tuple[Hello, list[Hello], str]:
    """The holder of a one-seat pool, ``devices`` devices of its other users, and
    a wallboard token of the domain."""
    holder, *users = _seat_users(api, "fan", [1], 1 + math.ceil(devices / FAN_DEVICES))
    subscribers = [hello(users[n // FAN_DEVICES], f"fan-{n}") for n in range(devices)]
    board = api.call("POST", "/domains/fan/tokens", {"role": "wallboard"})
    return hello(holder, "fan-holder"), subscribers, board["token"]


def _tenant(
    api: AdminApi, domain: str, sessions: int
) -> tuple[list[Hello], list[Hello], list[str]]:
    seat_sessions = sessions // 2
    named_users = math.ceil((sessions - seat_sessions) / NAMED_DEVICES)
    pools = [min(POOL_SEATS, seat_sessions - n) for n in range(0, seat_sessions, POOL_SEATS)]
    seat_tokens = _seat_users(api, domain, pools, seat_sessions, named_licenses=named_users)
    named_tokens = [_user(api, domain, n, {"model": "named"}) for n in range(named_users)]
    named = [
        hello(named_tokens[n // NAMED_DEVICES], f"{domain}-named-{n}", NAMED_KINDS[n % 4])
        for n in range(sessions - seat_sessions)
    ]
    seat = [hello(token, f"{domain}-seat-{n}") for n, token in enumerate(seat_tokens)]
    return named, seat, seat_tokens


def _seat_users(
    api: AdminApi, domain: str, pools: list[int], users: int, named_licenses: int = 0
) -> list[str]:
    """A domain with ``pools`` (their sizes) and ``users`` seat users dealt over them."""
    api.call("POST", "/domains", {
        "id": domain, "name": domain, "plan": "enterprise",
        "named_licenses": named_licenses, "seat_licenses": sum(pools),
    })  # fmt: skip
    for n, size in enumerate(pools):
        api.call("POST", f"/domains/{domain}/pools", {"id": f"p{n}", "name": f"Pool {n}",
                                                      "seats": size})  # fmt: skip
    tokens: list[str] = []
    for n in range(users):
        pool = _pool_of(n, pools)
        tokens.append(_user(api, domain, len(tokens), {"model": "seat", "pool": f"p{pool}"}))
    return tokens


def _pool_of(user: int, pools: list[int]) -> int:
    """Fill the pools in order, then deal the rest round-robin."""
    for pool, size in enumerate(pools):
        if user < size:
            return pool
        user -= size
    return user % len(pools)


def _user(api: AdminApi, domain: str, n: int, license: dict[str, str]) -> str:
    kind = license["model"]
    user = api.call("POST", f"/domains/{domain}/users", {
        "email": f"{kind}-{n}@{domain}.example", "name": f"{kind.title()} user {n}",
        "license": license,
    })  # fmt: skip
    grant = api.call("POST", f"/domains/{domain}/users/{user['id']}/tokens")
    token: str = grant["token"]
    return token
