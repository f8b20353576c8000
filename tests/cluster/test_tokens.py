"""The token lifecycle (spec section 6) across two nodes sharing PostgreSQL.

A token revoked through node A ends what was opened with it on either node; an
expired token is refused by both nodes, while what was opened with it before
keeps running. Expiry is reached by moving a token's `expires_at` into the
past with SQL while the nodes run: `expires_in` is a minute at least, and the
server has no switch for tests. A login that reads its token just before the
revocation commits, and hears of it before its session is in place, is forced
by holding the token's row lock while the revocation and the login queue up
for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from pg import PostgresServer
from server.client import WAIT, Domain, Harness, Message, ok, refused

from .conftest import Cluster

#: Bounds a wait for statements to queue up on a row lock; only a failure waits this long.
LOCK_WAIT = 10.0


def seen_from(harness: Harness, domain: Domain) -> Domain:
    return Domain(harness, domain.data)


def revocations(events: list[Message]) -> list[str]:
    """The users of the `token_revoked` events ("" for a domain token), in order."""
    revoked = [e for e in events if e["type"] == "token_revoked"]
    assert all((e["device_id"], e["pool"], e["seat"]) == ("", None, None) for e in revoked)
    return [e["user_id"] for e in revoked]


async def test_a_token_revoked_on_one_node_ends_its_sessions_on_both(
    on_a: Harness, on_b: Harness
) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(1)
    ann, bob, dave = [await domain.seat_user(pool, name) for name in ("Ann", "Bob", "Dave")]
    carl = await domain.named_user("Carl")
    board_token = await domain.new_token("wallboard")
    ann_b = await on_b.login(ann)  # holds the seat, through B
    bob_a = await on_a.queued_login(bob, 1)  # waits for it, through A
    dave_a = await on_a.refused_login(dave, "seat_occupied")  # refused, stays open
    carl_a = await on_a.login(carl, kind="phone")
    carl_b = await on_b.login(carl, kind="desktop")
    board_b = await on_b.wallboard(board_token["token"])
    await dave_a.expect("availability", occupied=1, queued=1)

    await domain.revoke(board_token["id"])  # every revocation through A
    await board_b.expect_error("unauthorized")
    await board_b.expect_closed(4401)
    await domain.revoke(carl.token_id)
    await carl_a.expect_ended("token_revoked", 4401)
    await carl_b.expect_ended("token_revoked", 4401)
    await domain.revoke(bob.token_id)
    await bob_a.expect_ended("token_revoked", 4401)
    await dave_a.expect("availability", occupied=1, queued=0)
    await domain.revoke(ann.token_id)
    await ann_b.expect_ended("token_revoked", 4401)
    await dave_a.expect("availability", occupied=0, free=1)  # freed on B, announced on A

    events = await seen_from(on_b, domain).all_events()
    assert revocations(events) == ["", carl.id, bob.id, ann.id]
    released = [e for e in events if e["type"] in ("seat_released", "lease_expired")]
    assert [(e["type"], e["user_id"]) for e in released] == [("seat_released", ann.id)]
    for harness in (on_a, on_b):
        await harness.unauthorized_hello(ann.token)
        await harness.unauthorized_wallboard(board_token["token"])
    assert (await dave_a.acquire())["type"] == "welcome"


async def test_an_expired_token_is_refused_and_what_it_opened_keeps_running(
    cluster: Cluster, postgres: PostgresServer, on_a: Harness, on_b: Harness
) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(1)
    ann = await domain.seat_user(pool)
    user = await domain.user_token(ann, expires_in=60)
    board = await domain.new_token("wallboard", expires_in=60)
    admin = await domain.new_token("admin", expires_in=60)
    ann_a = await on_a.device()
    assert (await ann_a.login(user["token"]))["type"] == "welcome"
    board_b = await on_b.wallboard(board["token"])
    ok(await on_b.api(admin["token"]).get(domain.path()))

    expired = ", ".join(f"'{token['id']}'" for token in (user, board, admin))
    postgres.sql(
        "UPDATE tokens SET expires_at = extract(epoch FROM clock_timestamp()) - 1 "
        f"WHERE id IN ({expired})",
        cluster.a.database,
    )
    for harness in (on_a, on_b):
        await harness.unauthorized_hello(user["token"])
        await harness.unauthorized_wallboard(board["token"])
        refused(await harness.api(admin["token"]).get(domain.path()), 401, "unauthorized")
    # Opened before the tokens expired: still running.
    await ann_a.heartbeat(1)
    await ann_a.call_start("c-1")
    await ann_a.expect("call_started", call_id="c-1")
    await board_b.send({"type": "ping"})
    await board_b.expect("pong")
    entry = await seen_from(on_b, domain).pool_presence(pool)
    assert [holder["user"]["id"] for holder in entry["holders"]] == [ann.id], entry


async def waiting_on_the_token(database: asyncpg.Connection[Any], statements: int) -> None:
    """Wait until `statements` of the nodes wait for a row lock (the token's)."""
    deadline = asyncio.get_running_loop().time() + LOCK_WAIT
    while True:
        waiting = await database.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event IN ('transactionid', 'tuple') AND application_name LIKE 'presence %'"
        )
        if waiting == statements:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{waiting} waiting, not {statements}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("endpoint", ["device", "wallboard"])
async def test_a_login_checked_as_its_token_is_revoked_does_not_outlive_it(
    cluster: Cluster, on_a: Harness, on_b: Harness, endpoint: str
) -> None:
    """Node B reads the token before its revocation commits, and hears of the
    revocation before the session (or wallboard) is in place: it must end all
    the same."""
    domain = await on_a.new_domain()
    if endpoint == "device":
        token = await domain.user_token(await domain.named_user())
    else:
        token = await domain.new_token("wallboard")
    database = await asyncpg.connect(cluster.a.database)
    try:
        # Hold the token's row: the revocation waits for it, then B's login,
        # which notes the token's first use.
        holding = database.transaction()
        await holding.start()
        await database.execute("SELECT FROM tokens WHERE id = $1 FOR UPDATE", token["id"])
        revoking = asyncio.create_task(domain.revoke(token["id"]))  # through A
        await waiting_on_the_token(database, 1)
        opened = await on_b.device(path=f"/ws/{endpoint}", heartbeats=False)
        await opened.send(
            {"type": "hello", "token": token["token"], "device": {"id": "d", "kind": "phone"}}
        )
        await waiting_on_the_token(database, 2)
        await holding.rollback()  # the revocation commits; B has read the token
        await revoking
    finally:
        await database.close()
    answer = await opened.expect(("welcome", "snapshot", "session_ended", "error"))
    if answer["type"] in ("welcome", "snapshot"):  # in place before B heard of the revocation
        answer = await opened.expect(("session_ended", "error"))
    if answer["type"] == "session_ended":  # ended as it logged in, or after
        assert answer["reason"] == "token_revoked", answer
    else:
        assert answer["code"] == "unauthorized", answer
    await opened.expect_closed(4401)
    # Nothing it may have been granted is left held.
    deadline = asyncio.get_running_loop().time() + WAIT
    while (await domain.presence())["named"]:
        assert asyncio.get_running_loop().time() < deadline, await domain.presence()
        await asyncio.sleep(0.05)
