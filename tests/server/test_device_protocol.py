"""The device WebSocket protocol (spec sections 1 and 3), against a real server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed

from .client import (
    AVAILABILITY_KEYS,
    Harness,
    fields_of,
    is_number,
    ok,
    parse_utc,
)

# Login and the welcome


async def test_welcome_for_a_named_user(harness: Harness) -> None:
    domain = await harness.new_domain()
    ada = await domain.named_user("Ada Lovelace")

    device = await harness.login(ada, kind="phone")

    welcome = device.welcome
    assert welcome is not None
    assert isinstance(welcome["session_id"], str) and welcome["session_id"]
    assert fields_of(welcome["user"], {"id", "name"}) == {
        "id": ada.id,
        "name": "Ada Lovelace",
    }
    assert fields_of(welcome["license"], {"model"}) == {"model": "named"}
    assert welcome["heartbeat_interval"] == harness.server.heartbeat_interval
    assert welcome["lease_ttl"] == harness.server.lease_ttl


async def test_welcome_for_a_seat_user(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3, name="Help desk")
    grace = await domain.seat_user(pool, "Grace Hopper")
    alan = await domain.seat_user(pool, "Alan Turing")

    first = await harness.login(grace)
    second = await harness.login(alan)

    welcome = first.welcome
    assert welcome is not None
    assert fields_of(welcome["user"], {"id", "name"}) == {
        "id": grace.id,
        "name": "Grace Hopper",
    }
    assert welcome["heartbeat_interval"] == harness.server.heartbeat_interval
    assert welcome["lease_ttl"] == harness.server.lease_ttl
    keys = {"model", "pool", "seat", "lease_id", "fencing_token"}
    license = fields_of(first.license, keys)
    assert license["model"] == "seat"
    assert fields_of(license["pool"], {"id", "name"}) == {
        "id": pool["id"],
        "name": "Help desk",
    }
    assert license["seat"] in (1, 2, 3)
    assert isinstance(license["lease_id"], str) and license["lease_id"]
    assert isinstance(license["fencing_token"], int)
    assert second.license["seat"] in (1, 2, 3)
    assert second.license["seat"] != license["seat"]
    assert second.license["lease_id"] != license["lease_id"]
    assert second.welcome is not None
    assert second.welcome["session_id"] != welcome["session_id"]


async def test_device_id_of_64_characters_is_accepted(harness: Harness) -> None:
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user(), device_id="d" * 64)
    assert device.license["model"] == "named"


# Heartbeats and the lease


async def test_heartbeat_is_acknowledged(harness: Harness) -> None:
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user())

    ack = await device.heartbeat(seq=7)

    assert ack["seq"] == 7
    assert is_number(ack["expires_in"])
    assert 0 < ack["expires_in"] <= harness.server.lease_ttl


async def test_heartbeats_keep_the_lease_past_its_ttl(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    device = await harness.login(await domain.seat_user(pool), heartbeats=False)
    ttl = harness.server.lease_ttl

    # Pacing a real device's heartbeats for twice the lease TTL.
    for seq in range(int(ttl * 4)):
        await asyncio.sleep(0.5)
        ack = await device.heartbeat(seq)
        assert ack["expires_in"] > 0

    assert device.received("session_ended") == []
    entry = await domain.pool_presence(pool)
    assert entry["occupied"] == 1
    assert entry["holders"][0]["lease_id"] == device.license["lease_id"]


async def test_lease_expires_without_heartbeats(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    device = await harness.login(await domain.seat_user(pool), heartbeats=False)
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")
    ttl = harness.server.lease_ttl
    started = asyncio.get_running_loop().time()

    await device.expect_ended("lease_expired", 4408, timeout=ttl + 3)

    assert asyncio.get_running_loop().time() - started >= ttl / 2
    await waiting.expect("availability", occupied=0, free=1)
    assert (await domain.pool_presence(pool))["holders"] == []


# Logout and lost connections


async def test_logout_frees_the_seat(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    leaving = await harness.login(await domain.seat_user(pool))
    staying = await harness.login(await domain.seat_user(pool))
    await staying.expect("availability", occupied=2, free=0)

    await leaving.logout()

    entry = await domain.pool_presence(pool)
    assert entry["occupied"] == 1
    assert [h["lease_id"] for h in entry["holders"]] == [staying.license["lease_id"]]
    await staying.expect("availability", occupied=1, free=1)


@pytest.mark.parametrize("how", ["closed", "lost"])
async def test_ended_connection_frees_the_seat_at_once(steady_harness: Harness, how: str) -> None:
    # A long lease TTL, so that only the end of the connection can free the seat.
    domain = await steady_harness.new_domain()
    pool = await domain.pool(1)
    holder = await steady_harness.login(await domain.seat_user(pool))
    member = await domain.seat_user(pool)
    waiting = await steady_harness.refused_login(member, "seat_occupied")
    await waiting.expect("availability", occupied=1, free=0)

    if how == "closed":
        await holder.close()
    else:
        holder.drop()

    await waiting.expect("availability", occupied=0, free=1)
    answer = await waiting.acquire()
    assert answer["type"] == "welcome", answer
    assert waiting.license["seat"] == 1


# Refusals: seat_occupied, already_logged_in, takeover, replaced


async def test_seat_occupied_names_the_holder(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    await harness.login(await domain.seat_user(pool, "Grace Hopper"), kind="glasses")

    second = await harness.device()
    error = await second.login((await domain.seat_user(pool, "Alan Turing")).token)

    assert error["type"] == "error" and error["code"] == "seat_occupied", error
    assert "Grace Hopper" in error["message"]
    assert "glasses" in error["message"]
    await second.expect("availability", pool=pool["id"], occupied=1, free=0)


async def test_refused_session_stays_open_and_acquires_later(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")
    await waiting.expect("availability", occupied=1, free=0)

    again = await waiting.acquire()
    assert again["type"] == "error" and again["code"] == "seat_occupied", again
    assert (await waiting.heartbeat(seq=1))["seq"] == 1
    await holder.logout()
    await waiting.expect("availability", occupied=0, free=1)
    answer = await waiting.acquire()

    assert answer["type"] == "welcome", answer
    assert waiting.license["seat"] == 1
    assert waiting.license["fencing_token"] > holder.license["fencing_token"]
    await waiting.expect("availability", occupied=1, free=0)


async def test_second_device_of_a_seat_user_is_already_logged_in(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    first = await harness.login(member)

    second = await harness.refused_login(member, "already_logged_in", kind="phone")

    await second.expect("availability", pool=pool["id"], occupied=1, free=1)
    assert (await second.heartbeat(seq=3))["seq"] == 3
    [holder] = (await domain.pool_presence(pool))["holders"]
    assert holder["device"]["id"] == first.id
    assert (await first.heartbeat(seq=4))["seq"] == 4


async def test_takeover_moves_the_seat_to_the_new_device(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    member = await domain.seat_user(pool)
    first = await harness.login(member, kind="desktop")

    second = await harness.login(member, kind="phone", takeover=True)

    await first.expect_ended("taken_over", 4409)
    assert second.license["seat"] == first.license["seat"]
    assert second.license["fencing_token"] > first.license["fencing_token"]
    [holder] = (await domain.pool_presence(pool))["holders"]
    assert holder["device"]["id"] == second.id
    assert holder["device"]["kind"] == "phone"


async def test_refused_device_can_acquire_with_takeover(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    member = await domain.seat_user(pool)
    first = await harness.login(member)
    second = await harness.refused_login(member, "already_logged_in")

    answer = await second.acquire(takeover=True)

    assert answer["type"] == "welcome", answer
    await first.expect_ended("taken_over", 4409)
    assert second.license["seat"] == first.license["seat"]
    assert second.license["fencing_token"] > first.license["fencing_token"]


async def test_same_device_replaces_its_old_session(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    member = await domain.seat_user(pool)
    old = await harness.login(member)

    new = await harness.login(member, device_id=old.id)

    await old.expect_ended("replaced", 4409)
    assert new.license["seat"] == old.license["seat"]
    assert new.license["fencing_token"] > old.license["fencing_token"]
    entry = await domain.pool_presence(pool)
    assert entry["occupied"] == 1
    assert entry["holders"][0]["device"]["id"] == old.id


async def test_fencing_tokens_increase_with_every_grant(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    ann = await domain.seat_user(pool)
    bob = await domain.seat_user(pool)

    tokens = []
    for member in (ann, bob, ann, bob):
        device = await harness.login(member)
        assert device.license["seat"] == 1
        tokens.append(device.license["fencing_token"])
        await device.logout()
    old = await harness.login(ann)
    tokens.append(old.license["fencing_token"])
    new = await harness.login(ann, device_id=old.id)
    tokens.append(new.license["fencing_token"])

    assert all(isinstance(token, int) for token in tokens)
    assert tokens == sorted(set(tokens)), tokens


# Calls


async def test_one_call_at_a_time_on_a_seat(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    device = await harness.login(await domain.seat_user(pool))

    await device.call_start("c1")
    started = await device.expect("call_started", call_id="c1")
    parse_utc(started["started_at"])
    entry = await domain.pool_presence(pool)
    assert entry["in_call"] == 1
    assert entry["holders"][0]["in_call"] is True

    await device.call_start("c2")
    await device.expect_error("call_in_progress")
    await device.call_end("c2")
    await device.expect_error("unknown_call")
    await device.call_end("c1")
    ended = await device.expect("call_ended", call_id="c1")
    assert is_number(ended["duration"]) and ended["duration"] >= 0
    entry = await domain.pool_presence(pool)
    assert entry["in_call"] == 0
    assert entry["holders"][0]["in_call"] is False

    await device.call_end("c1")
    await device.expect_error("unknown_call")
    await device.call_start("c3")
    await device.expect("call_started", call_id="c3")


async def test_named_user_on_several_devices_with_a_call_each(harness: Harness) -> None:
    domain = await harness.new_domain()
    ada = await domain.named_user("Ada Lovelace")
    devices = [await harness.login(ada, kind=kind) for kind in ("desktop", "phone", "glasses")]
    assert all(device.license["model"] == "named" for device in devices)

    for number, device in enumerate(devices):
        await device.call_start(f"call-{number}")
        await device.expect("call_started", call_id=f"call-{number}")
    await devices[1].call_start("call-extra")
    await devices[1].expect_error("call_in_progress")
    await devices[1].call_end("call-1")
    await devices[1].expect("call_ended", call_id="call-1")

    snapshot = await domain.presence()
    [entry] = [e for e in snapshot["named"] if e["user"]["id"] == ada.id]
    seen = {d["id"]: (d["kind"], d["in_call"]) for d in entry["devices"]}
    assert seen == {
        devices[0].id: ("desktop", True),
        devices[1].id: ("phone", False),
        devices[2].id: ("glasses", True),
    }


# Availability


async def test_availability_is_pushed_on_login_and_every_change(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    first = await harness.login(await domain.seat_user(pool))

    update = await first.expect("availability", occupied=1)
    assert fields_of(update, AVAILABILITY_KEYS) == {
        "pool": pool["id"],
        "seats": 3,
        "occupied": 1,
        "in_call": 0,
        "free": 2,
        "queued": 0,
    }
    second = await harness.login(await domain.seat_user(pool))
    for device in (first, second):
        await device.expect("availability", occupied=2, free=1, in_call=0)
    await first.call_start("c1")
    for device in (first, second):
        await device.expect("availability", occupied=2, in_call=1)
    await first.call_end("c1")
    for device in (first, second):
        await device.expect("availability", occupied=2, in_call=0)
    await second.logout()
    update = await first.expect("availability", occupied=1)
    assert fields_of(update, AVAILABILITY_KEYS) == {
        "pool": pool["id"],
        "seats": 3,
        "occupied": 1,
        "in_call": 0,
        "free": 2,
        "queued": 0,
    }


async def test_availability_is_only_sent_to_the_pool(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(2)
    night = await domain.pool(2)
    watcher = await harness.login(await domain.seat_user(night))
    await watcher.expect("availability", pool=night["id"], occupied=1)

    at_desk = await harness.login(await domain.seat_user(desk))
    await at_desk.expect("availability", pool=desk["id"], occupied=1)
    await at_desk.logout()
    # A change in the watcher's own pool reaches it; nothing came from the desk.
    await harness.login(await domain.seat_user(night))
    await watcher.expect("availability", pool=night["id"], occupied=2)
    assert all(m["pool"] == night["id"] for m in watcher.received("availability"))


# License changes end sessions


async def test_license_change_ends_the_seat_session(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    device = await harness.login(member)

    license = {"model": "named"}
    ok(await harness.admin.put(domain.path("users", member.id, "license"), license))

    await device.expect_ended("license_changed", 4411)
    await domain.wait_pool(pool, occupied=0, holders=[])
    again = await harness.login(member, device_id=device.id)
    assert fields_of(again.license, {"model"}) == {"model": "named"}


async def test_license_change_ends_every_device_of_a_named_user(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    devices = [await harness.login(member, kind=kind) for kind in ("desktop", "phone")]

    license = {"model": "none"}
    ok(await harness.admin.put(domain.path("users", member.id, "license"), license))

    for device in devices:
        await device.expect_ended("license_changed", 4411)
    again = await harness.device()
    error = await again.login(member.token)
    assert error["type"] == "error" and error["code"] == "no_license", error
    await again.expect_closed(4403)


async def test_moving_to_another_pool_ends_the_session(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    night = await domain.pool(1, name="Night")
    member = await domain.seat_user(desk)
    device = await harness.login(member)

    license = {"model": "seat", "pool": night["id"]}
    ok(await harness.admin.put(domain.path("users", member.id, "license"), license))

    await device.expect_ended("license_changed", 4411)
    again = await harness.login(member)
    assert again.license["pool"]["id"] == night["id"]
    assert (await domain.pool_presence(desk))["occupied"] == 0


async def test_deleting_the_user_ends_the_session(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    device = await harness.login(member)

    ok(await harness.admin.delete(domain.path("users", member.id)), 204)

    await device.expect_ended("user_deleted", 4411)
    await domain.wait_pool(pool, occupied=0, holders=[])
    again = await harness.device()
    error = await again.login(member.token)
    assert error["type"] == "error" and error["code"] == "unauthorized", error
    await again.expect_closed(4401)


# Shrinking a pool (S9)


async def test_shrinking_a_pool_keeps_holders_until_below_size(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    holders = [await harness.login(await domain.seat_user(pool)) for _ in range(3)]
    newcomer = await domain.seat_user(pool)

    path = domain.path("pools", pool["id"])
    shrunk = ok(await harness.admin.patch(path, {"seats": 1}))
    assert (shrunk["seats"], shrunk["occupied"]) == (1, 3)

    entry = await domain.pool_presence(pool)
    assert entry["occupied"] == 3
    leases = {device.license["lease_id"] for device in holders}
    assert {holder["lease_id"] for holder in entry["holders"]} == leases
    for seq, device in enumerate(holders):
        assert (await device.heartbeat(seq))["seq"] == seq
    waiting = await harness.refused_login(newcomer, "seat_occupied")
    for leaving, occupied in zip(holders[:2], (2, 1), strict=True):
        await leaving.logout()
        await waiting.expect("availability", occupied=occupied)
        answer = await waiting.acquire()
        assert answer["type"] == "error" and answer["code"] == "seat_occupied", answer
    await holders[2].logout()
    await waiting.expect("availability", occupied=0)
    answer = await waiting.acquire()
    assert answer["type"] == "welcome", answer
    assert waiting.license["seat"] == 1


# Error codes and close codes


@pytest.mark.parametrize("token", ["not-a-token", None])
async def test_bad_or_missing_token_is_unauthorized(harness: Harness, token: str | None) -> None:
    device = await harness.device()

    await device.hello(token)

    await device.expect_error("unauthorized")
    await device.expect_closed(4401)


async def test_token_of_another_role_cannot_open_a_session(harness: Harness) -> None:
    domain = await harness.new_domain()
    for token in (harness.server.admin_token, await domain.token("wallboard")):
        device = await harness.device()
        await device.hello(token)
        await device.expect_error("unauthorized")
        await device.expect_closed(4401)


async def test_user_without_license_gets_no_license(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.user({"model": "none"})
    device = await harness.device()

    await device.hello(member.token)

    await device.expect_error("no_license")
    await device.expect_closed(4403)


async def test_bad_messages_are_reported_and_the_fifth_closes(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user())

    for bad in ("not json", "[1, 2]", '{"type": "dance"}', '{"type": "call_start"}'):
        await device.send_text(bad)
        await device.expect_error("bad_message")
    assert (await device.heartbeat(seq=1))["seq"] == 1
    await device.send_text('{"no": "type"}')

    await device.expect_closed(4400)
    errors = device.received("error")
    assert len(errors) in (4, 5), errors
    assert all(error["code"] == "bad_message" for error in errors), errors


@pytest.mark.parametrize(
    "device_fields",
    [
        {"kind": "toaster"},
        {"id": "d" * 65},
        {"id": ""},
        {"id": 42},
        {"kind": None},
    ],
)
async def test_hello_with_a_bad_device_is_bad_message(
    harness: Harness, device_fields: dict[str, object]
) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    device = await harness.device()

    await device.hello(member.token, **device_fields)

    await device.expect_error("bad_message")
    await device.send({"type": "heartbeat"})
    await device.expect_error("not_logged_in")
    assert (await domain.pool_presence(pool))["occupied"] == 0


async def test_hello_without_a_device_is_bad_message(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    device = await harness.device()

    await device.send({"type": "hello", "token": member.token})

    await device.expect_error("bad_message")
    await device.send({"type": "heartbeat"})
    await device.expect_error("not_logged_in")


async def test_frame_over_64_kib_is_too_large(harness: Harness) -> None:
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user())

    await device.send({"type": "heartbeat", "padding": "x" * (64 * 1024)})

    await device.expect_closed(1009)
    errors = device.received("error")
    assert all(error["code"] == "too_large" for error in errors), errors


async def test_more_than_50_messages_a_second_is_rate_limited(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    device = await harness.login(await domain.named_user(), heartbeats=False)

    try:
        for seq in range(60):
            await device.send({"type": "heartbeat", "seq": seq})
    except ConnectionClosed:
        pass

    await device.expect_closed(4429)
    assert [e["code"] for e in device.received("error")] == ["rate_limited"]
    assert len(device.received("heartbeat_ack")) <= 50


async def test_no_hello_within_5_seconds_is_hello_timeout(harness: Harness) -> None:
    device = await harness.device()
    started = asyncio.get_running_loop().time()

    await device.expect_error("hello_timeout", timeout=5 + 3)
    await device.expect_closed(4408)

    assert asyncio.get_running_loop().time() - started >= 4


async def test_message_before_welcome_is_not_logged_in(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    device = await harness.device()

    for message in ({"type": "heartbeat"}, {"type": "call_start", "call_id": "c"}):
        await device.send(message)
        await device.expect_error("not_logged_in")
    answer = await device.login(member.token)

    assert answer["type"] == "welcome", answer
