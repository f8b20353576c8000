"""Every rule holds across two nodes sharing one PostgreSQL database.

Devices and admins talk to real server processes (`conftest.py`), some on
node A, some on node B; a node may be killed or paused mid-test.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from pg import PostgresServer
from server.client import Device, Domain, Harness, Message

from .conftest import LEASE_TTL, Cluster

ROUNDS = 20
USERS = 40
SEATS = 4
#: Forty logins at once may take the nodes a while; this bounds a failure only.
RACE_WAIT = 15.0
#: How soon a change on one node reaches a subscriber on another (issue 5).
PUSH_WAIT = 1.0
#: How soon the seats of a dead node are freed and announced.
ORPHAN_WAIT = LEASE_TTL + 2
#: How long a paused node sleeps: past the lease TTL.
PAUSE = LEASE_TTL + 1


def seen_from(harness: Harness, domain: Domain) -> Domain:
    """The same domain, managed through another node."""
    return Domain(harness, domain.data)


def tokens_by_seat(devices: list[Device]) -> dict[int, int]:
    return {d.license["seat"]: d.license["fencing_token"] for d in devices}


def holders(entry: Message) -> set[str]:
    seats = [holder["seat"] for holder in entry["holders"]]
    assert len(seats) == len(set(seats)) == entry["occupied"] <= entry["seats"], entry
    return {holder["lease_id"] for holder in entry["holders"]}


async def test_logins_racing_across_nodes_get_only_the_seats(on_a: Harness, on_b: Harness) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(SEATS)
    members = [await domain.seat_user(pool) for _ in range(USERS)]
    views = [domain, seen_from(on_b, domain)]
    last_token: dict[int, int] = {}

    for round_ in range(ROUNDS):
        devices = await asyncio.gather(*((on_a if n % 2 else on_b).device() for n in range(USERS)))
        await asyncio.gather(
            *(device.hello(member.token) for device, member in zip(devices, members, strict=True))
        )
        answers = await asyncio.gather(*(device.outcome(RACE_WAIT) for device in devices))

        outcomes = Counter(answer.get("code", answer["type"]) for answer in answers)
        assert outcomes == {"welcome": SEATS, "seat_occupied": USERS - SEATS}, (
            f"round {round_}: {outcomes}"
        )
        winners = [device for device in devices if device.welcome is not None]
        tokens = tokens_by_seat(winners)
        assert sorted(tokens) == list(range(1, SEATS + 1)), f"round {round_}: {tokens}"
        for seat, token in tokens.items():
            assert token > last_token.get(seat, 0), f"round {round_}: seat {seat}"
        last_token = tokens
        for view in views:
            entry = await view.pool_presence(pool)
            assert holders(entry) == {w.license["lease_id"] for w in winners}, f"round {round_}"

        await asyncio.gather(*(winner.logout() for winner in winners))
        await asyncio.gather(*(device.close() for device in devices))
        for view in views:
            await view.wait_pool(pool, occupied=0, holders=[])


async def test_a_logout_on_one_node_reaches_a_device_on_the_other(
    on_a: Harness, on_b: Harness
) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(2)
    leaving, staying = await domain.seat_user(pool), await domain.seat_user(pool)
    for there, here in [(on_a, on_b), (on_b, on_a)] * 3:
        watcher = await here.login(staying)
        holder = await there.login(leaving)
        await watcher.expect("availability", occupied=2)
        await holder.send({"type": "logout"})
        await watcher.expect("availability", PUSH_WAIT, occupied=1, free=1)
        await watcher.logout()


async def test_a_killed_node_frees_and_announces_its_seats(
    cluster: Cluster, on_a: Harness, on_b: Harness
) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(2)
    members = [await domain.seat_user(pool) for _ in range(3)]
    lost = [await on_a.login(member) for member in members[:2]]
    waiting = await on_b.refused_login(members[2], "seat_occupied")
    await waiting.expect("availability", occupied=2)

    cluster.a.kill()
    await waiting.expect("availability", ORPHAN_WAIT, occupied=0, free=2)

    answer = await waiting.acquire()
    assert answer["type"] == "welcome", answer
    assert waiting.license["fencing_token"] > max(tokens_by_seat(lost).values())
    on_b_view = seen_from(on_b, domain)
    assert holders(await on_b_view.pool_presence(pool)) == {waiting.license["lease_id"]}
    events = (await on_b.admin.get(domain.path("events"))).json()
    expired = [e for e in events if e["type"] == "lease_expired"]
    assert sorted(e["user_id"] for e in expired) == sorted(m.id for m in members[:2])


async def test_a_paused_node_never_uses_the_seats_it_lost(
    cluster: Cluster, on_a: Harness, on_b: Harness
) -> None:
    domain = await on_a.new_domain()
    pool = await domain.pool(2)
    members = [await domain.seat_user(pool) for _ in range(4)]
    stale = [await on_a.login(member) for member in members[:2]]
    fresh = [await on_b.refused_login(member, "seat_occupied") for member in members[2:]]
    await fresh[0].expect("availability", occupied=2)
    views = [domain, seen_from(on_b, domain)]

    loop = asyncio.get_running_loop()
    cluster.a.pause()
    paused_at = loop.time()
    try:
        await fresh[0].expect("availability", ORPHAN_WAIT, occupied=0, free=2)
        for device in fresh:
            answer = await device.acquire()
            assert answer["type"] == "welcome", answer
        # The pause is the scenario: A sleeps past the TTL of its devices too.
        await asyncio.sleep(paused_at + PAUSE - loop.time())
    finally:
        cluster.a.resume()

    old, new = tokens_by_seat(stale), tokens_by_seat(fresh)
    assert sorted(new) == [1, 2]
    assert all(new[seat] > old.get(seat, 0) for seat in new), (old, new)
    for device in stale:  # the woken node ends what it held: it was taken
        await device.expect_ended("lease_expired", 4408, ORPHAN_WAIT)
    granted = {device.license["lease_id"] for device in fresh}
    for view in views:
        assert holders(await view.pool_presence(pool)) == granted
    again = await on_a.refused_login(members[0], "seat_occupied")
    await again.expect("availability", occupied=2)
    for view in views:
        assert holders(await view.pool_presence(pool)) == granted


async def test_the_admin_api_works_from_either_node(on_a: Harness, on_b: Harness) -> None:
    domain = await on_a.new_domain(seat_licenses=10)
    on_b_view = seen_from(on_b, domain)
    assert await on_b_view.get() == domain.data
    changed = (await on_b.admin.patch(domain.path(), {"name": "Renamed"})).json()
    assert changed["name"] == "Renamed"
    assert (await domain.get())["name"] == "Renamed"

    pool = await on_b_view.pool(3)
    assert list(await domain.pools()) == [pool["id"]]
    member = await domain.seat_user(pool)
    assert member.id in await on_b_view.users()
    device = await on_a.login(member)  # a user token made on A, a device on A

    snapshot = await on_b_view.pool_presence(pool)
    assert holders(snapshot) == {device.license["lease_id"]}
    events = (await on_b.admin.get(domain.path("events"))).json()
    assert [e["type"] for e in events] == ["seat_granted"]
    usage = (await on_b.admin.get(domain.path("usage"))).json()
    assert [entry["pool"] for entry in usage] == [pool["id"]]

    released = await on_b.admin.delete(domain.path("leases", device.license["lease_id"]))
    assert released.status_code == 204, released.text
    await device.expect_ended("released_by_admin", 4412)
    await domain.wait_pool(pool, occupied=0)


async def test_a_node_that_missed_notes_resyncs(
    cluster: Cluster, postgres: PostgresServer, on_a: Harness, on_b: Harness
) -> None:
    """NOTIFY has no replay: a node whose LISTEN connection dropped re-reads state."""
    domain = await on_a.new_domain()
    pool = await domain.pool(1)
    holder = await on_a.login(await domain.seat_user(pool))
    lease_id = holder.license["lease_id"]
    cluster.a.pause()  # A cannot listen again before the release below is announced
    try:
        postgres.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'presence-listen%'"
        )
        released = await on_b.admin.delete(domain.path("leases", lease_id))
        assert released.status_code == 204
    finally:
        cluster.a.resume()
    # The end note for the holder was lost with A's LISTEN connection (B's was
    # cut too, and reconnects at once); A must still learn its lease is gone.
    await holder.expect_ended("lease_expired", 4408, LEASE_TTL + 2)
    taker = await on_a.login(await domain.seat_user(pool))
    assert taker.license["seat"] == 1
