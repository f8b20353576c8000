"""Restarts (S10) and graceful shutdown, with the server as a real process.

Each test has a server of its own (`server_process`, lease TTL 3 s) that it
kills or stops and starts again on the same SQLite file and port.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .client import Device, Domain, Harness, Member, Message

if TYPE_CHECKING:
    from servers import ServerProcess

#: How long a graceful shutdown may take, from SIGTERM to the process's exit.
SHUTDOWN_LIMIT = 10.0
#: Beyond the lease TTL, how long a seat left by a holder may take to be freed.
EXPIRY_SLACK = 3.0


@dataclass
class Held:
    """A pool whose seats are all held, and one more member of it."""

    domain: Domain
    pool: Message
    members: list[Member]
    devices: list[Device]
    other: Member


async def hold_seats(harness: Harness, seats: int) -> Held:
    domain = await harness.new_domain()
    pool = await domain.pool(seats)
    members = [await domain.seat_user(pool) for _ in range(seats)]
    kinds = ("desktop", "phone", "glasses", "tablet")
    devices = [
        await harness.login(member, kind=kinds[number % len(kinds)])
        for number, member in enumerate(members)
    ]
    return Held(domain, pool, members, devices, await domain.seat_user(pool))


async def reclaim(harness: Harness, member: Member, old: Device) -> Device:
    """Log `member` in again from the device `old` was; it must get its seat back."""
    again = await harness.login(member, device_id=old.id, kind=old.kind)
    assert again.license["seat"] == old.license["seat"], (again.license, old.license)
    assert again.license["fencing_token"] > old.license["fencing_token"], (
        again.license,
        old.license,
    )
    return again


def leases(entry: Message) -> dict[int, str]:
    return {holder["seat"]: holder["lease_id"] for holder in entry["holders"]}


async def test_leases_survive_sigkill(server_process: ServerProcess) -> None:
    ttl = server_process.server.lease_ttl
    async with Harness(server_process.server) as harness:
        held = await hold_seats(harness, 3)
        before = leases(await held.domain.pool_presence(held.pool))
        assert len(before) == 3

        await asyncio.to_thread(server_process.kill)
        await asyncio.to_thread(server_process.start)
        restarted = time.monotonic()

        # (a) Right after the restart, the seats are still held for their holders.
        intruder = await harness.refused_login(held.other, "seat_occupied")
        assert leases(await held.domain.pool_presence(held.pool)) == before
        assert time.monotonic() - restarted < ttl, "restarted too slowly to check exclusion"
        # (b) Holders coming back on the same devices reclaim the same seats.
        for member, old in zip(held.members[:2], held.devices[:2], strict=True):
            await reclaim(harness, member, old)
        # (c) The seat of the holder that does not come back is freed after the TTL.
        gone = held.devices[2]
        await intruder.expect("availability", occupied=2, free=1, timeout=ttl + EXPIRY_SLACK)
        assert time.monotonic() - restarted < ttl + EXPIRY_SLACK
        answer = await intruder.acquire()
        assert answer["type"] == "welcome", answer
        assert intruder.license["seat"] == gone.license["seat"]
        assert intruder.license["fencing_token"] > gone.license["fencing_token"]
        entry = await held.domain.pool_presence(held.pool)
        assert {h["device"]["id"] for h in entry["holders"]} == {
            *(device.id for device in held.devices[:2]),
            intruder.id,
        }
        expired = [e for e in await held.domain.all_events() if e["type"] == "lease_expired"]
        assert [e["device_id"] for e in expired] == [gone.id], expired


async def test_fencing_tokens_never_go_back_across_restarts(
    server_process: ServerProcess,
) -> None:
    async with Harness(server_process.server) as harness:
        held = await hold_seats(harness, 2)
        devices = held.devices
        for _ in range(2):
            await asyncio.to_thread(server_process.kill)
            await asyncio.to_thread(server_process.start)
            devices = [
                await reclaim(harness, member, old)
                for member, old in zip(held.members, devices, strict=True)
            ]
        # A new grant after restarts is above every token granted before.
        await devices[0].logout()
        newcomer = await harness.login(held.other)
        tokens = [d.license["fencing_token"] for d in [*held.devices, *devices]]
        assert newcomer.license["fencing_token"] > max(tokens)


async def test_sigterm_ends_sessions_and_keeps_seats_for_reclaim(
    server_process: ServerProcess,
) -> None:
    async with Harness(server_process.server) as harness:
        held = await hold_seats(harness, 2)
        refused = await harness.refused_login(held.other, "seat_occupied")
        named_member = await held.domain.named_user()
        named = await harness.login(named_member, kind="phone")
        before = leases(await held.domain.pool_presence(held.pool))

        stopped = time.monotonic()
        exiting = asyncio.create_task(asyncio.to_thread(server_process.terminate))
        for device in [*held.devices, refused, named]:
            await device.expect_ended("server_shutdown", 1001, timeout=SHUTDOWN_LIMIT)
        status = await exiting
        assert time.monotonic() - stopped < SHUTDOWN_LIMIT
        assert status in (0, -signal.SIGTERM), f"exit status {status}"

        await asyncio.to_thread(server_process.start)
        assert leases(await held.domain.pool_presence(held.pool)) == before
        await harness.refused_login(held.other, "seat_occupied")
        for member, old in zip(held.members, held.devices, strict=True):
            await reclaim(harness, member, old)
        again = await harness.login(named_member, device_id=named.id, kind="phone")
        assert again.license["model"] == "named"
