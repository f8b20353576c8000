"""An administrator releasing a held seat (`DELETE .../leases/{lease_id}`)."""

from __future__ import annotations

import contextlib

from websockets.exceptions import ConnectionClosed

from .client import Harness, ok


async def test_released_seat_goes_to_another_user(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    member = await domain.seat_user(pool)
    holder = await harness.login(member)
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    ok(await harness.admin.delete(domain.path("leases", holder.license["lease_id"])), 204)

    await holder.expect_ended("released_by_admin", 4412)
    await waiting.expect("availability", occupied=0, free=1)
    answer = await waiting.acquire()
    assert answer["type"] == "welcome", answer
    assert waiting.license["seat"] == 1
    assert waiting.license["fencing_token"] > holder.license["fencing_token"]
    [released] = [e for e in await domain.all_events() if e["type"] == "released_by_admin"]
    assert released["user_id"] == member.id
    assert released["device_id"] == holder.id
    assert (released["pool"], released["seat"]) == (pool["id"], 1)


async def test_released_seat_goes_to_the_head_of_the_queue(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.queued_login(await domain.seat_user(pool), 1)

    ok(await harness.admin.delete(domain.path("leases", holder.license["lease_id"])), 204)

    await holder.expect_ended("released_by_admin", 4412)
    welcome = await waiting.granted()
    assert welcome["license"]["seat"] == 1


async def test_released_device_cannot_keep_using_the_seat(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))

    ok(await harness.admin.delete(domain.path("leases", holder.license["lease_id"])), 204)
    # The device has not read its end yet and goes on using the seat.
    with contextlib.suppress(ConnectionClosed):
        await holder.call_start("after-release")

    await holder.expect_ended("released_by_admin", 4412)
    assert holder.received("call_started") == [], holder.received("call_started")
    entry = await domain.pool_presence(pool)
    assert (entry["occupied"], entry["in_call"], entry["holders"]) == (0, 0, [])
    types = [e["type"] for e in await domain.all_events()]
    assert "call_started" not in types, types
