"""The seat queue (spec section 3, `queue: true`), against a real server."""

from __future__ import annotations

import asyncio

import pytest

from .client import Device, Harness, fields_of, ok

WAITERS = 10


async def test_hello_with_queue_waits_in_line(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    first = await harness.device()

    queued = await first.enqueue((await domain.seat_user(pool)).token)
    second = await harness.queued_login(await domain.seat_user(pool), 2)

    assert fields_of(queued, {"pool", "position"}) == {"pool": pool["id"], "position": 1}
    for device in (holder, first, second):
        await device.expect("availability", pool=pool["id"], occupied=1, free=0, queued=2)
    entry = await domain.pool_presence(pool)
    assert (entry["occupied"], entry["queued"]) == (1, 2)
    assert [h["lease_id"] for h in entry["holders"]] == [holder.license["lease_id"]]
    assert first.received("welcome") == [] and second.received("welcome") == []


async def test_acquire_with_queue_after_a_refusal(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    queued = await waiting.enqueue()

    assert fields_of(queued, {"pool", "position"}) == {"pool": pool["id"], "position": 1}
    await holder.expect("availability", queued=1)
    await holder.logout()
    welcome = await waiting.granted()
    assert welcome["license"]["seat"] == 1
    assert welcome["license"]["fencing_token"] > holder.license["fencing_token"]


async def test_freed_seat_goes_to_the_head_of_the_queue(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    head = await harness.queued_login(await domain.seat_user(pool), 1)
    behind = await harness.queued_login(await domain.seat_user(pool), 2)

    await holder.logout()
    newcomer = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    welcome = await head.granted()
    assert welcome["license"]["seat"] == 1
    await behind.expect("queued", pool=pool["id"], position=1)
    await newcomer.expect("availability", occupied=1, free=0, queued=1)
    [held] = (await domain.pool_presence(pool))["holders"]
    assert held["lease_id"] == head.license["lease_id"]
    assert held["device"]["id"] == head.id


async def test_logins_racing_a_freed_seat_lose_to_the_queue(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.queued_login(await domain.seat_user(pool), 1)
    members = [await domain.seat_user(pool) for _ in range(5)]
    newcomers = await asyncio.gather(*(harness.device() for _ in members))

    await asyncio.gather(
        holder.logout(),
        *(device.hello(m.token) for device, m in zip(newcomers, members, strict=True)),
    )

    welcome = await waiting.granted()
    assert welcome["license"]["seat"] == 1
    for device in newcomers:
        answer = await device.outcome()
        assert answer["type"] == "error" and answer["code"] == "seat_occupied", answer
    [held] = (await domain.pool_presence(pool))["holders"]
    assert held["device"]["id"] == waiting.id


@pytest.mark.parametrize("how", ["closed", "lost"])
async def test_waiter_that_disconnects_leaves_the_queue(harness: Harness, how: str) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    first = await harness.queued_login(await domain.seat_user(pool), 1)
    leaving = await harness.queued_login(await domain.seat_user(pool), 2)
    last = await harness.queued_login(await domain.seat_user(pool), 3)
    await holder.expect("availability", queued=3)

    if how == "closed":
        await leaving.close()
    else:
        await leaving.stop_heartbeats()
        leaving.drop()

    await last.expect("queued", position=2)
    await holder.expect("availability", queued=2)
    assert (await domain.pool_presence(pool))["queued"] == 2
    await holder.logout()
    await first.granted()
    await last.expect("queued", position=1)
    await first.logout()
    welcome = await last.granted()
    assert welcome["license"]["seat"] == 1
    entry = await domain.wait_pool(pool, occupied=1, queued=0)
    assert [h["device"]["id"] for h in entry["holders"]] == [last.id]


async def test_waiters_get_seats_strictly_in_the_order_they_asked(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(3)
    holders = [await harness.login(await domain.seat_user(pool)) for _ in range(3)]
    waiters = [
        await harness.queued_login(await domain.seat_user(pool), position)
        for position in range(1, WAITERS + 1)
    ]
    await holders[0].expect("availability", occupied=3, queued=WAITERS)

    # Free the seats one at a time: every freed seat goes to the next waiter.
    seated: list[Device] = list(holders)
    for turn, waiter in enumerate(waiters):
        leaving = seated.pop(0)
        freed = leaving.license["seat"]
        await leaving.logout()
        welcome = await waiter.granted()
        assert welcome["license"]["seat"] == freed, f"turn {turn}: {welcome}"
        seated.append(waiter)
        for behind, still in enumerate(waiters[turn + 1 :], 1):
            await still.expect("queued", position=behind)

    tokens = [waiter.license["fencing_token"] for waiter in waiters]
    assert tokens == sorted(set(tokens)), f"granted out of order: {tokens}"
    for waiter in waiters:
        assert len(waiter.received("welcome")) == 1, waiter.received("welcome")
    entry = await domain.pool_presence(pool)
    assert (entry["occupied"], entry["queued"]) == (3, 0)
    assert {h["device"]["id"] for h in entry["holders"]} == {w.id for w in waiters[-3:]}


async def test_growing_the_pool_serves_the_queue_at_once(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    first = await harness.queued_login(await domain.seat_user(pool), 1)
    second = await harness.queued_login(await domain.seat_user(pool), 2)
    third = await harness.queued_login(await domain.seat_user(pool), 3)

    grown = ok(await harness.admin.patch(domain.path("pools", pool["id"]), {"seats": 3}))
    assert grown["seats"] == 3

    seats = [(await device.granted())["license"]["seat"] for device in (first, second)]
    assert sorted(seats) == [2, 3]
    assert first.license["fencing_token"] < second.license["fencing_token"]
    await third.expect("queued", position=1)
    await holder.expect("availability", seats=3, occupied=3, free=0, queued=1)
    assert third.received("welcome") == []
