"""The token lifecycle (spec section 6) against a real server on SQLite.

Ids, labels, lifetimes and the listing; revocation ending every live session
and wallboard opened with the token at once (a held seat freed and announced,
a queued or refused session, a named user's devices), logins racing it
included; deleting a user revokes their tokens; expiry, by editing the stopped
server's file (`expires_in` is a minute at least, and the server has no switch
for tests); a file from before tokens had ids, upgraded in place. The same
across two nodes on PostgreSQL, and a login forced to race a revocation, are
in tests/cluster/test_tokens.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .client import (
    API,
    Device,
    Domain,
    Harness,
    Message,
    fields_of,
    ok,
    parse_utc,
    refused,
)

if TYPE_CHECKING:
    from pathlib import Path

    from servers import ServerProcess

TOKEN_KEYS = frozenset(
    {"id", "role", "label", "user_id", "created_at", "expires_at", "last_used_at"}
)
CREATED_KEYS = frozenset({"id", "token", "role", "label", "created_at", "expires_at"})
TEN_YEARS = 315_576_000
#: Devices logging in over and over with one token while it is revoked.
RACERS = 20


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def the_event(events: list[Message], type_: str) -> Message:
    (found,) = [event for event in events if event["type"] == type_]
    return found


async def revoked_events(domain: Domain) -> list[Message]:
    return [event for event in await domain.all_events() if event["type"] == "token_revoked"]


def assert_token_revoked_event(event: Message, user_id: str) -> None:
    """One event per revocation: the token's user ("" for a domain token), no device,
    pool or seat."""
    where = (event["user_id"], event["device_id"], event["pool"], event["seat"])
    assert where == (user_id, "", None, None), event


def but_last_use(tokens: dict[str, Message]) -> dict[str, Message]:
    """The listing without `last_used_at`, which a refused request may bring up to date."""
    return {key: {**token, "last_used_at": None} for key, token in tokens.items()}


# Creating and listing.


async def test_a_token_shows_its_secret_once_and_is_listed_without_it(harness: Harness) -> None:
    domain = await harness.new_domain()
    ann = await domain.named_user()
    admin = await domain.new_token("admin", label="Ops laptop", expires_in=3600)
    board = await domain.new_token("wallboard")
    phone = await domain.user_token(ann, label="Ann's phone", expires_in=60)
    created = {answer["id"]: answer for answer in (admin, board, phone)}

    for answer in created.values():
        assert set(answer) == CREATED_KEYS, answer
        assert answer["token"].startswith("prs_"), answer
        parse_utc(answer["created_at"])
    lifetime = parse_utc(admin["expires_at"]) - parse_utc(admin["created_at"])
    assert abs(lifetime - timedelta(seconds=3600)) < timedelta(seconds=1), admin
    assert (admin["label"], board["label"], board["expires_at"]) == ("Ops laptop", None, None)
    assert (phone["role"], phone["label"]) == ("user", "Ann's phone")

    answer = await domain.api.get(domain.path("tokens"))
    listed = {token["id"]: token for token in ok(answer)}
    assert listed.keys() == {*created, ann.token_id}
    for token_id, token in listed.items():
        assert set(token) == TOKEN_KEYS, token
        assert token["last_used_at"] is None, token  # none was used yet
        if token_id in created:
            made = created[token_id]
            for key in ("role", "label", "created_at", "expires_at"):
                assert token[key] == made[key], (token, made)
    assert listed[phone["id"]]["user_id"] == listed[ann.token_id]["user_id"] == ann.id
    assert listed[admin["id"]]["user_id"] is None and listed[board["id"]]["user_id"] is None
    secrets = [ann.token, *(made["token"] for made in created.values())]
    for secret in secrets:
        assert secret not in answer.text and sha256(secret) not in answer.text


async def test_the_last_use_is_kept_to_the_minute(harness: Harness) -> None:
    domain = await harness.new_domain()
    admin = await domain.new_token("admin")
    api = harness.api(admin["token"])
    ok(await api.get(domain.path()))
    first = (await domain.tokens())[admin["id"]]["last_used_at"]
    assert parse_utc(first) >= parse_utc(admin["created_at"])
    ok(await api.get(domain.path("pools")))
    # Written when older than a minute, not on every use.
    assert (await domain.tokens())[admin["id"]]["last_used_at"] == first


async def test_bad_token_options_are_refused_and_change_nothing(harness: Harness) -> None:
    domain = await harness.new_domain()
    ann = await domain.named_user()
    before = await domain.tokens()
    bad_domain_tokens: list[tuple[Any, str]] = [
        ({"role": "admin", "expires_in": 59}, "expires_in"),
        ({"role": "admin", "expires_in": TEN_YEARS + 1}, "expires_in"),
        ({"role": "admin", "expires_in": "3600"}, "expires_in"),
        ({"role": "admin", "expires_in": 3600.5}, "expires_in"),
        ({"role": "admin", "expires_in": True}, "expires_in"),
        ({"role": "admin", "label": ""}, "label"),
        ({"role": "admin", "label": "x" * 201}, "label"),
        ({"role": "admin", "label": 7}, "label"),
        ({"role": "admin", "expires": 3600}, "expires"),  # misspelt: never a token for ever
        ({"role": "user"}, "role"),
        ([], "body"),
    ]
    for body, field in bad_domain_tokens:
        refused(await domain.api.post(domain.path("tokens"), body), 400, "bad_request", field)
    bad_user_tokens: list[tuple[Any, str]] = [
        ({"expires_in": 10}, "expires_in"),
        ({"role": "admin"}, "role"),
        ({"label": ["a"]}, "label"),
        ([1], "body"),
    ]
    for body, field in bad_user_tokens:
        answer = await domain.api.post(domain.path("users", ann.id, "tokens"), body)
        refused(answer, 400, "bad_request", field)
    assert await domain.tokens() == before
    # The bounds themselves are allowed.
    await domain.new_token("wallboard", expires_in=60)
    await domain.user_token(ann, expires_in=TEN_YEARS)


# Revoking, through the API.


async def test_who_may_revoke_what(harness: Harness) -> None:
    mine, other = await harness.new_domain(), await harness.new_domain()
    domain_admin = harness.api(await mine.token("admin"))
    board = await mine.new_token("wallboard")
    ann = await mine.named_user()
    theirs = await other.new_token("admin")
    before = await mine.tokens()

    for token in (board["token"], ann.token):  # a wallboard or user token: 403, nothing changed
        api = harness.api(token)
        refused(await api.get(mine.path("tokens")), 403, "forbidden")
        refused(await api.delete(mine.path("tokens", board["id"])), 403, "forbidden")
    # Another domain's token, or none: 404, whoever asks.
    refused(await domain_admin.delete(mine.path("tokens", theirs["id"])), 404, "not_found")
    refused(await harness.admin.delete(mine.path("tokens", theirs["id"])), 404, "not_found")
    refused(await domain_admin.delete(mine.path("tokens", "no-such-token")), 404, "not_found")
    refused(await harness.api(theirs["token"]).get(mine.path("tokens")), 404, "not_found")
    refused(
        await harness.api(theirs["token"]).delete(mine.path("tokens", board["id"])),
        404,
        "not_found",
    )
    assert but_last_use(await mine.tokens()) == but_last_use(before)
    ok(await harness.api(theirs["token"]).get(other.path()))
    ok(await harness.api(board["token"]).get(mine.path("presence")))
    assert await revoked_events(mine) == [] and await revoked_events(other) == []

    ok(await domain_admin.delete(mine.path("tokens", board["id"])), 204)
    refused(await harness.api(board["token"]).get(mine.path("presence")), 401, "unauthorized")
    assert board["id"] not in await mine.tokens()
    refused(await domain_admin.delete(mine.path("tokens", board["id"])), 404, "not_found")
    (event,) = await revoked_events(mine)
    assert_token_revoked_event(event, "")
    # A domain admin may revoke its own token; it is refused from then on.
    own_id = next(t["id"] for t in (await mine.tokens()).values() if t["role"] == "admin")
    ok(await domain_admin.delete(mine.path("tokens", own_id)), 204)
    refused(await domain_admin.get(mine.path()), 401, "unauthorized")


# Revoking ends what was opened with the token, at once.


async def test_revoking_ends_a_seat_session_and_frees_its_seat(steady_harness: Harness) -> None:
    harness = steady_harness  # a long lease TTL: the seat is freed at once, not by expiry
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    ann, bob = await domain.seat_user(pool, "Ann"), await domain.seat_user(pool, "Bob")
    ann_pc = await harness.login(ann)
    bob_pc = await harness.login(bob, kind="phone")
    await bob_pc.expect("availability", occupied=2)

    await domain.revoke(ann.token_id)
    await ann_pc.expect_ended("token_revoked", 4401)
    await bob_pc.expect("availability", occupied=1, free=1)
    entry = await domain.pool_presence(pool)
    assert [holder["user"]["id"] for holder in entry["holders"]] == [bob.id], entry
    events = await domain.all_events()
    assert_token_revoked_event(the_event(events, "token_revoked"), ann.id)
    released = the_event(events, "seat_released")
    assert (released["user_id"], released["seat"], released["device_id"]) == (
        ann.id,
        ann_pc.license["seat"],
        ann_pc.id,
    )
    await harness.unauthorized_hello(ann.token)
    # Another token of hers still logs her in.
    again = await harness.device()
    assert (await again.login((await domain.user_token(ann))["token"]))["type"] == "welcome"


async def test_revoking_ends_a_queued_session(steady_harness: Harness) -> None:
    harness = steady_harness
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    ann, bob = await domain.seat_user(pool), await domain.seat_user(pool)
    bob_pc = await harness.login(bob)
    ann_pc = await harness.queued_login(ann, 1)
    await bob_pc.expect("availability", queued=1)

    await domain.revoke(ann.token_id)
    await ann_pc.expect_ended("token_revoked", 4401)
    await bob_pc.expect("availability", queued=0)
    await bob_pc.logout()
    await domain.wait_pool(pool, occupied=0, queued=0)  # no seat went to the revoked session


async def test_revoking_ends_a_refused_session(steady_harness: Harness) -> None:
    harness = steady_harness
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    ann, bob = await domain.seat_user(pool), await domain.seat_user(pool)
    bob_pc = await harness.login(bob)
    ann_pc = await harness.refused_login(ann, "seat_occupied")

    await domain.revoke(ann.token_id)
    await ann_pc.expect_ended("token_revoked", 4401)
    await bob_pc.heartbeat(1)
    entry = await domain.pool_presence(pool)
    assert [holder["user"]["id"] for holder in entry["holders"]] == [bob.id], entry


async def test_revoking_ends_the_devices_opened_with_that_token_only(harness: Harness) -> None:
    domain = await harness.new_domain()
    ann = await domain.named_user()
    phone = await harness.login(ann, kind="phone")
    desktop = await harness.login(ann, kind="desktop")
    other = await domain.user_token(ann, label="glasses")
    glasses = await harness.device(kind="glasses")
    assert (await glasses.login(other["token"]))["type"] == "welcome"

    await domain.revoke(ann.token_id)
    await phone.expect_ended("token_revoked", 4401)
    await desktop.expect_ended("token_revoked", 4401)
    await glasses.heartbeat(1)
    (named,) = (await domain.presence())["named"]
    assert [device["id"] for device in named["devices"]] == [glasses.id], named
    events = await domain.all_events()
    logged_out = {e["device_id"] for e in events if e["type"] == "named_logout"}
    assert logged_out == {phone.id, desktop.id}, events
    assert_token_revoked_event(the_event(events, "token_revoked"), ann.id)


async def test_revoking_closes_the_wallboards_opened_with_it(harness: Harness) -> None:
    domain = await harness.new_domain()
    revoked, kept = await domain.new_token("wallboard"), await domain.new_token("wallboard")
    doomed = await harness.wallboard(revoked["token"])
    watching = await harness.wallboard(kept["token"])

    await domain.revoke(revoked["id"])
    await doomed.expect_error("unauthorized")
    await doomed.expect_closed(4401)
    feed = await watching.expect("event")
    assert feed["event"]["type"] == "token_revoked", feed
    await harness.unauthorized_wallboard(revoked["token"])
    await watching.send({"type": "ping"})
    await watching.expect("pong")


async def test_deleting_a_user_revokes_their_tokens(harness: Harness) -> None:
    domain = await harness.new_domain()
    ann = await domain.named_user()
    second = await domain.user_token(ann)
    phone = await harness.login(ann, kind="phone")

    ok(await domain.api.delete(domain.path("users", ann.id)), 204)
    await phone.expect_ended("user_deleted", 4411)
    events = await revoked_events(domain)
    assert len(events) == 2, events
    for event in events:
        assert_token_revoked_event(event, ann.id)
    assert {ann.token_id, second["id"]}.isdisjoint(await domain.tokens())
    for token in (ann.token, second["token"]):
        await harness.unauthorized_hello(token)


# Expiry and upgrades: the server is stopped, its file changed, and started again.


def edit(workdir: Path, statement: str, *params: Any) -> None:
    """Change the database file of a stopped server."""
    with contextlib.closing(sqlite3.connect(workdir / "presence.db")) as db:
        db.execute(statement, params)
        db.commit()


async def test_an_expired_token_is_unauthorized(server_process: ServerProcess) -> None:
    async with Harness(server_process.server) as harness:
        domain = await harness.new_domain()
        ann = await domain.named_user()
        user = await domain.user_token(ann, expires_in=60)
        admin = await domain.new_token("admin", expires_in=60)
        board = await domain.new_token("wallboard", expires_in=60)
        lasting = await domain.new_token("admin", expires_in=3600)
    server_process.stop()
    expired = [user["id"], admin["id"], board["id"]]
    marks = ", ".join("?" * len(expired))
    edit(
        server_process.workdir,
        f"UPDATE tokens SET expires_at = ? WHERE id IN ({marks})",
        time.time() - 1,
        *expired,
    )
    server_process.start()
    async with Harness(server_process.server) as harness:
        domain = Domain(harness, domain.data)
        await harness.unauthorized_hello(user["token"])
        refused(await harness.api(admin["token"]).get(domain.path()), 401, "unauthorized")
        await harness.unauthorized_wallboard(board["token"])
        ok(await harness.api(lasting["token"]).get(domain.path()))
        await harness.login(ann)  # with her first token, which never expires
        listed = await domain.tokens()  # expired tokens stay listed, until revoked
        now = datetime.now(UTC)
        assert all(parse_utc(listed[token_id]["expires_at"]) < now for token_id in expired)
        await domain.revoke(admin["id"])
        assert admin["id"] not in await domain.tokens()


TOKENS_BEFORE_IDS = (
    "CREATE TABLE tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, domain_id TEXT, user_id TEXT)"
)


async def test_a_file_from_before_token_ids_is_upgraded_in_place(
    server_process: ServerProcess,
) -> None:
    async with Harness(server_process.server) as harness:
        domain = await harness.new_domain()
        pool = await domain.pool(1)
        ann = await domain.seat_user(pool)
        bob = await domain.named_user()
        admin = await domain.new_token("admin")
    server_process.stop()
    # The tokens table as it was: hash, role, domain and user; no id.
    with contextlib.closing(sqlite3.connect(server_process.workdir / "presence.db")) as db:
        db.executescript(
            f"ALTER TABLE tokens RENAME TO tokens_now; {TOKENS_BEFORE_IDS}; "
            "INSERT INTO tokens SELECT hash, role, domain_id, user_id FROM tokens_now; "
            "DROP TABLE tokens_now;"
        )
    server_process.start()
    async with Harness(server_process.server) as harness:
        domain = Domain(harness, domain.data)
        ann_pc = await harness.login(ann)
        await harness.login(bob)
        ok(await harness.api(admin["token"]).get(domain.path()))
        listed = await domain.tokens()
        assert len(listed) == 3 and not {ann.token_id, bob.token_id} & listed.keys()
        for token in listed.values():
            fields_of(token, TOKEN_KEYS)
            assert token["created_at"] is None and token["last_used_at"] is not None, token
        ann_token = next(t["id"] for t in listed.values() if t["user_id"] == ann.id)
        await domain.revoke(ann_token)
        await ann_pc.expect_ended("token_revoked", 4401)
        await domain.wait_pool(pool, occupied=0)
        new = await domain.new_token("wallboard", label="after the upgrade")
        assert (await domain.tokens())[new["id"]]["label"] == "after the upgrade"
        ok(await harness.admin.get(f"{API}/domains/{domain.id}"))


async def test_logins_racing_a_revocation_all_end(harness: Harness) -> None:
    """Logins whose token is checked as it is revoked must not outlive it."""
    domain = await harness.new_domain()
    ann = await domain.named_user()
    token = await domain.user_token(ann)
    welcomed: list[Device] = []

    async def keep_logging_in() -> None:
        """Log in on new devices, keeping them, until the token is refused.

        A login whose token was judged before the revocation is a live session
        by then: the revocation may end it before its welcome.
        """
        while True:
            device = await harness.device()
            await device.hello(token["token"])
            answer = await device.expect(("welcome", "error", "session_ended"))
            if answer["type"] == "session_ended":
                assert answer["reason"] == "token_revoked", answer
                await device.expect_closed(4401)
                return
            if answer["type"] == "error":
                assert answer["code"] == "unauthorized", answer
                await device.expect_closed(4401)
                return
            device.start_heartbeats()
            welcomed.append(device)

    async def revoke_among_logins() -> None:
        while len(welcomed) < RACERS:
            await asyncio.sleep(0.01)  # polling the racers' progress, not the server
        await domain.revoke(token["id"])

    await asyncio.gather(revoke_among_logins(), *(keep_logging_in() for _ in range(RACERS)))
    for device in welcomed:
        await device.expect_ended("token_revoked", 4401)
