"""A populated demo domain for the console's screenshots: pools, users, a week
of history (sessions, calls, denials, a queue at the busiest hours) and a few
devices live now.

The history is written before the server starts, through the server's own
storage layer (`presence.storage`: `add_events`, `record_queue`), as the
server would have written it; a seeded random generator makes it the same on
every run. The live part goes through the API and real device WebSockets.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field

from server.client import Domain, Harness

from presence.core.model import Domain as DomainRecord
from presence.core.model import Event, License, Pool, User
from presence.storage import store_for_url

DOMAIN = "northwind"
#: pool id, name, seats, members, the hours (UTC) of its busiest time
POOLS = [
    ("helpdesk", "Help desk", 5, 9, (8, 18)),
    ("field", "Field service", 4, 6, (6, 15)),
    ("night", "Night shift", 3, 4, (20, 30)),
]
PEOPLE = [
    "Ada Lovelace", "Alan Turing", "Barbara Liskov", "Claude Shannon", "Dennis Ritchie",
    "Dorothy Vaughan", "Edsger Dijkstra", "Frances Allen", "Grace Hopper", "Hedy Lamarr",
    "Ivan Sutherland", "John Backus", "Karen Spärck Jones", "Katherine Johnson", "Ken Thompson",
    "Leslie Lamport", "Margaret Hamilton", "Mary Jackson", "Niklaus Wirth", "Radia Perlman",
    "Shafi Goldwasser", "Sophie Wilson", "Tim Berners-Lee", "Vint Cerf", "Whitfield Diffie",
    "Yukihiro Matsumoto", "Adele Goldberg", "Bjarne Stroustrup", "Carol Shaw", "Donald Knuth",
    "Evelyn Boyd Granville", "Fran Bilas", "Guido van Rossum", "Jean Bartik", "Kathleen Booth",
    "Lynn Conway",
]  # fmt: skip
NAMED = 10
STEP = 300.0  # seconds between two looks at demand in the simulation


@dataclass
class Demo:
    users: list[User] = field(default_factory=list)
    members: dict[str, list[User]] = field(default_factory=dict)  # pool id -> its users


def people() -> Demo:
    demo = Demo()
    names = iter(PEOPLE)
    for pool_id, _, _, members, _ in POOLS:
        demo.members[pool_id] = []
        for _ in range(members):
            user = make_user(next(names), License("seat", pool_id))
            demo.users.append(user)
            demo.members[pool_id].append(user)
    for index, name in enumerate(names):
        demo.users.append(make_user(name, License("named") if index < NAMED else License("none")))
    return demo


def make_user(name: str, license: License) -> User:
    email = name.lower().replace(" ", ".").replace("ä", "a") + "@northwind.example"
    return User(DOMAIN, uuid.uuid4().hex, email, name, license)


def demand(seats: int, busy: tuple[int, int], at: float, rng: random.Random) -> float:
    """How many want a seat at `at`: a bell over the pool's busy hours, a quieter weekend."""
    hour = (at % 86400) / 3600
    start, end = busy
    middle, half = (start + end) / 2, (end - start) / 2
    distance = min(abs(hour - middle), abs(hour + 24 - middle), abs(hour - 24 - middle))
    level = math.exp(-((distance / half) ** 2) * 1.6)
    weekday = ((int(at // 86400) + 3) % 7) < 5  # 1970-01-01 was a Thursday
    return seats * 1.35 * level * (1.0 if weekday else 0.45) + rng.uniform(-0.6, 0.6)


async def seed(database: str, now: float, days: int = 7) -> Demo:
    """Write the demo domain, its pools, users and `days` of history up to `now`."""
    rng = random.Random(20261202)
    demo = people()
    events: list[Event] = []
    queues: list[tuple[str, float, int]] = []
    start = (now // 86400 - days) * 86400
    for pool_id, _, seats, _, busy in POOLS:
        held: dict[int, tuple[str, float]] = {}  # seat -> (user id, until)
        members = [u.id for u in demo.members[pool_id]]
        queued = 0
        at = start
        while at < now - 1800:
            for seat, (user_id, until) in list(held.items()):
                if until <= at:
                    events.append(
                        Event(
                            "seat_released",
                            until,
                            DOMAIN,
                            user_id,
                            f"d-{user_id[:6]}",
                            pool_id,
                            seat,
                        )
                    )
                    del held[seat]
            want = max(0, round(demand(seats, busy, at, rng)))
            free_members = [m for m in members if m not in {u for u, _ in held.values()}]
            for seat in range(1, seats + 1):
                if len(held) >= min(want, seats) or not free_members:
                    break
                if seat in held:
                    continue
                user_id = free_members.pop(rng.randrange(len(free_members)))
                begin = at + rng.uniform(0, STEP)
                until = begin + rng.uniform(1200, 7200)
                held[seat] = (user_id, until)
                device = f"d-{user_id[:6]}"
                events.append(Event("seat_granted", begin, DOMAIN, user_id, device, pool_id, seat))
                call = begin + rng.uniform(60, 600)
                while call + 300 < until:
                    length = rng.uniform(120, 1500)
                    if call + length >= until:
                        break
                    events.append(
                        Event("call_started", call, DOMAIN, user_id, device, pool_id, seat)
                    )
                    events.append(
                        Event("call_ended", call + length, DOMAIN, user_id, device, pool_id, seat)
                    )
                    call += length + rng.uniform(60, 900)
            over = max(0, want - seats)
            for _ in range(over):
                user_id = rng.choice(members)
                denied = at + rng.uniform(0, STEP)
                events.append(
                    Event("seat_denied", denied, DOMAIN, user_id, f"d-{user_id[:6]}", pool_id)
                )
            if min(over, 3) != queued:
                queued = min(over, 3)
                queues.append((pool_id, at + rng.uniform(0, STEP / 2), queued))
            at += STEP
        for seat, (user_id, until) in held.items():
            end = min(until, now - 1200)
            events.append(
                Event("seat_released", end, DOMAIN, user_id, f"d-{user_id[:6]}", pool_id, seat)
            )
        if queued:
            queues.append((pool_id, now - 1200, 0))
    events.sort(key=lambda e: e.at)
    queues.sort(key=lambda q: q[1])

    store = store_for_url(database, "demo")
    await store.open(lease_ttl=30)
    try:
        async with store.transaction(DOMAIN) as tx:
            await tx.insert_domain(DomainRecord(DOMAIN, "Northwind Support", "enterprise", 15, 14))
            for pool_id, name, seats, _, _ in POOLS:
                await tx.insert_pool(
                    Pool(DOMAIN, pool_id, name, seats, 1800 if pool_id == "night" else 0)
                )
            for user in demo.users:
                await tx.insert_user(user)
            await tx.add_events(events)
            for pool_id, at, length in queues:
                await tx.record_queue(DOMAIN, pool_id, at, length)
    finally:
        await store.close()
    return demo


async def go_live(harness: Harness, demo: Demo) -> None:
    """Devices logged in now: seats held (one in a call), named users online, one queued."""
    domain = Domain(harness, {"id": DOMAIN})
    kinds = ["desktop", "phone", "glasses", "tablet", "desktop"]
    for pool_id, held in (("helpdesk", 4), ("field", 2)):
        for index, user in enumerate(demo.members[pool_id][:held]):
            token = (await domain.api.post(domain.path("users", user.id, "tokens"))).json()["token"]
            device = await harness.device(
                kind=kinds[index % len(kinds)],
                name=f"{user.name.split()[0]}'s {kinds[index % len(kinds)]}",
            )
            welcome = await device.login(token)
            assert welcome["type"] == "welcome", welcome
            if index == 1:
                await device.call_start("demo-call")
    for user in [u for u in demo.users if u.license.model == "named"][:3]:
        token = (await domain.api.post(domain.path("users", user.id, "tokens"))).json()["token"]
        await (await harness.device(kind="phone")).login(token)
