"""Half-open connections: a device that stops sending and reading, without
closing, loses its seat when its lease expires, within `lease_ttl` + 1 s of its
last message, and someone else can have it."""

from __future__ import annotations

import asyncio
import time

from server.client import Harness

#: The spec's bound past the lease TTL.
SLACK = 1.0


async def test_a_half_open_device_loses_its_seat_within_the_lease_ttl(harness: Harness) -> None:
    ttl = harness.server.lease_ttl
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(pool))
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    # The holder's last message; then it neither sends nor reads, and never closes.
    await holder.stop_heartbeats()
    last_message = time.monotonic()
    await holder.heartbeat(1)
    holder.ws.transport.pause_reading()

    give_up = last_message + ttl + SLACK + 2.0
    while (await domain.pool_presence(pool))["occupied"] != 0:
        assert time.monotonic() < give_up, "the seat of the half-open device was never freed"
        await asyncio.sleep(0.05)  # polling presence
    freed_after = time.monotonic() - last_message
    assert freed_after <= ttl + SLACK, f"freed {freed_after:.2f} s after the last message"
    assert freed_after >= ttl - 0.2, f"freed {freed_after:.2f} s after the last message: too early"

    await waiting.expect("availability", free=1)
    answer = await waiting.acquire()
    assert answer["type"] == "welcome", answer
    assert waiting.license["fencing_token"] > holder.license["fencing_token"]
    events = [e["type"] for e in await domain.all_events() if e["device_id"] == holder.id]
    assert events[-1] == "lease_expired", events
