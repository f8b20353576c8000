"""S1 under contention: many seat users of a small pool log in at once."""

from __future__ import annotations

import asyncio
from collections import Counter

from .client import Harness

ROUNDS = 20
USERS = 50
SEATS = 5
#: Fifty logins at once may take the server a while; this bounds a failure only.
RACE_WAIT = 15.0


async def test_only_as_many_logins_as_seats_win(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(SEATS)
    members = [await domain.seat_user(pool) for _ in range(USERS)]
    last_token: dict[int, int] = {}

    for round_ in range(ROUNDS):
        devices = await asyncio.gather(*(harness.device() for _ in members))
        await asyncio.gather(
            *(device.hello(member.token) for device, member in zip(devices, members, strict=True))
        )
        answers = await asyncio.gather(*(device.outcome(RACE_WAIT) for device in devices))

        outcomes = Counter(answer.get("code", answer["type"]) for answer in answers)
        assert outcomes == {"welcome": SEATS, "seat_occupied": USERS - SEATS}, (
            f"round {round_}: {outcomes}"
        )
        winners = [device for device in devices if device.welcome is not None]
        seats = sorted(winner.license["seat"] for winner in winners)
        assert seats == list(range(1, SEATS + 1)), f"round {round_}: seats {seats}"
        entry = await domain.pool_presence(pool)
        assert entry["occupied"] == SEATS, f"round {round_}: {entry}"
        assert {holder["lease_id"] for holder in entry["holders"]} == {
            winner.license["lease_id"] for winner in winners
        }
        for winner in winners:
            seat, token = winner.license["seat"], winner.license["fencing_token"]
            assert token > last_token.get(seat, -1), f"round {round_}: seat {seat}"
            last_token[seat] = token

        await asyncio.gather(*(winner.logout() for winner in winners))
        await asyncio.gather(*(device.close() for device in devices))
        await domain.wait_pool(pool, occupied=0, holders=[])
