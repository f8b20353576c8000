"""Does presence agree with the devices? Checks of presence snapshots against
what the devices of a fleet know, with no knowledge of the server's insides.

`held_twice`: a seat or a seat user shown twice. `disagreements`: where
presence and the live devices disagree. `settle`: after a run, when every
device is gone, the wait (bounded) until nothing is held or queued.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from .lines import Message, Phase, clock

if TYPE_CHECKING:
    from .fleet import Fleet


def held_twice(snapshot: Message) -> list[str]:
    """What a presence snapshot shows held twice: a seat with two holders, or a
    user on two seats (of one pool or two)."""
    found = []
    seats: Counter[tuple[str, int]] = Counter()
    users: Counter[str] = Counter()
    for pool in snapshot["pools"]:
        for holder in pool["holders"]:
            seats[(pool["id"], holder["seat"])] += 1
            users[holder["user"]["id"]] += 1
    for (pool_id, seat), n in seats.items():
        if n > 1:
            found.append(f"presence shows seat {seat} of {pool_id} held {n} times")
    for user, n in users.items():
        if n > 1:
            found.append(f"presence shows user {user} on {n} seats")
    return found


def disagreements(snapshot: Message, fleet: Fleet) -> dict[str, str]:
    """Where presence and the live devices disagree, or something is held twice."""
    found: dict[str, str] = {}
    lines = list(fleet.lines)
    if any(line.phase is Phase.ASKING for line in lines):
        found["asking"] = "a hello or acquire is still unanswered"
    seated = {
        line.grant.lease_id: line for line in lines if line.phase is Phase.SEATED and line.grant
    }
    queued = Counter(line.pool for line in lines if line.phase is Phase.QUEUED)
    named = Counter((line.member.id, line.device) for line in lines if line.phase is Phase.NAMED)
    # The devices' side: nothing believed held twice.
    seats = Counter((line.pool, line.grant.seat) for line in seated.values() if line.grant)
    users = Counter(line.member.id for line in seated.values())
    for (pool, number), n in seats.items():
        if n > 1:
            found[f"devices on seat {pool}/{number}"] = (
                f"{n} live devices hold seat {number} of {pool}"
            )
    for user, n in users.items():
        if n > 1:
            found[f"devices of user {user}"] = f"user {user} holds seats on {n} live devices"
    for (user, device), n in named.items():
        if n > 1:
            found[f"named {user} {device}"] = (
                f"{n} live named sessions of user {user} on one device ({device})"
            )
    for text in held_twice(snapshot):
        found[text] = text
    # Presence against the live devices.
    for pool in snapshot["pools"]:
        holders = pool["holders"]
        if pool["occupied"] != len(holders):
            found[f"occupied {pool['id']}"] = (
                f"{pool['id']} shows {pool['occupied']} occupied and {len(holders)} holders"
            )
        for holder in holders:
            line = seated.pop(holder["lease_id"], None)
            where = f"seat {holder['seat']} of {pool['id']}"
            if line is None:
                found[f"lease {holder['lease_id']}"] = (
                    f"{where} is held by lease {holder['lease_id']} of {holder['user']['name']} "
                    f"on device {holder['device']['id']}, which no live device holds "
                    f"({fleet.story_of(holder['user']['id'], holder['device']['id'])})"
                )
            elif line.grant is not None and (line.pool, line.grant.seat) != (
                pool["id"],
                holder["seat"],
            ):
                found[f"lease {holder['lease_id']}"] = (
                    f"{where} is shown held by lease {holder['lease_id']}, which its device "
                    f"was welcomed to on seat {line.grant.seat} of {line.pool}"
                )
        if pool["queued"] != queued[pool["id"]]:
            found[f"queue of {pool['id']}"] = (
                f"{pool['id']} shows {pool['queued']} queued, while {queued[pool['id']]} live "
                "devices wait in its queue"
            )
        if pool["free"] > 0 and pool["queued"] > 0:
            found[f"stalled {pool['id']}"] = (
                f"{pool['id']} has {pool['free']} free seats and {pool['queued']} devices queued"
            )
    for lease_id, line in seated.items():
        assert line.grant is not None
        found[f"lease {lease_id}"] = (
            f"{line.member.name} on device {line.device} holds seat {line.grant.seat} of "
            f"{line.pool} (lease {lease_id}), which presence does not show"
        )
    shown = {
        (entry["user"]["id"], device["id"])
        for entry in snapshot["named"]
        for device in entry["devices"]
    }
    for user, device in shown - set(named):
        found[f"named {user} {device}"] = (
            f"named user {user} is shown on device {device}, which has no live named session"
        )
    for user, device in set(named) - shown:
        found[f"named {user} {device}"] = (
            f"named user {user} is logged in on device {device}, which presence does not show"
        )
    return found


# After a run: every device is gone, so nothing may stay held or queued.

#: Seconds within which seats are free once their devices are gone and the
#: server saw them go (on loopback it sees a dropped connection at once).
PROMPT = 2.0
#: Seconds past `lease_ttl` within which even a lease the server forgot has
#: expired: its ticker's period, and a loaded machine.
EXPIRY_MARGIN = 3.0


@dataclass
class Settled:
    """How presence emptied after every device was gone."""

    seconds: float  # until presence showed nothing held or queued, or until given up
    lease_ttl: float
    left: dict[str, str] = field(default_factory=dict)  # still there when given up, by key
    held: int = 0  # seats still held when given up
    queued: int = 0  # queue entries still there when given up

    @property
    def how(self) -> str:
        if self.left:
            return (
                f"never: {self.held} seats held and {self.queued} queue entries still there "
                f"after {self.seconds:.1f} s"
            )
        if self.seconds <= PROMPT:
            return "promptly"
        return f"only by lease expiry (lease_ttl {self.lease_ttl:g} s)"

    def summary(self) -> str:
        return f"settled {self.how}, in {self.seconds:.2f} s" if not self.left else self.how


async def settle(http: httpx.AsyncClient, domain: str, fleet: Fleet, lease_ttl: float) -> Settled:
    """Wait until the domain's presence shows no seat held, nobody queued and no
    named device, at most `lease_ttl` + `EXPIRY_MARGIN` s."""
    started = clock()
    while True:
        answer = await http.get(f"/api/v1/domains/{domain}/presence")
        answer.raise_for_status()
        snapshot = answer.json()
        left = leftovers(snapshot, fleet)
        waited = clock() - started
        if not left or waited > lease_ttl + EXPIRY_MARGIN:
            held = sum(pool["occupied"] for pool in snapshot["pools"])
            queued = sum(pool["queued"] for pool in snapshot["pools"])
            return Settled(waited, lease_ttl, left, held, queued)
        await asyncio.sleep(0.05)  # polling presence


def leftovers(snapshot: Message, fleet: Fleet) -> dict[str, str]:
    """What a presence snapshot shows held or queued, with the story of each
    holder's device; keyed by what it is (`lease <id>`, `queue of <pool>`...)."""
    found = {}
    for pool in snapshot["pools"]:
        for holder in pool["holders"]:
            user, device = holder["user"], holder["device"]["id"]
            found[f"lease {holder['lease_id']}"] = (
                f"seat {holder['seat']} of {pool['id']} held by lease {holder['lease_id']} "
                f"of {user['name']} on device {device} ({fleet.story_of(user['id'], device)})"
            )
        if pool["occupied"] != len(pool["holders"]):
            found[f"occupied {pool['id']}"] = f"{pool['id']} shows {pool['occupied']} occupied"
        if pool["queued"]:
            found[f"queue of {pool['id']}"] = f"{pool['queued']} queue entries in {pool['id']}"
    for entry in snapshot["named"]:
        for device in entry["devices"]:
            found[f"named {entry['user']['id']} {device['id']}"] = (
                f"named user {entry['user']['name']} on device {device['id']}"
            )
    return found
