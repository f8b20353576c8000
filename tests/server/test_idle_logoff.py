"""Idle log-off (S8), against a real server.

A seat session with no call for the pool's `idle_logoff_s` is ended with
`idle_logoff` (close 4410); never during a call; the timer restarts when a call
ends. The shared server ticks at least every half second, so a log-off comes
within about `idle_logoff_s` + 0.5 s; waits allow a few seconds more.
"""

from __future__ import annotations

import time

from .client import Harness

IDLE = 1
#: How much earlier than `idle_logoff_s` a log-off may be seen by the test: the
#: server starts the timer at its grant, a little before the test sees `welcome`.
EARLY = 0.25
#: How long an idle log-off may take to come, beyond `idle_logoff_s`.
LATE = 3.0


async def test_idle_seat_session_is_logged_off(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1, idle_logoff_s=2)
    member = await domain.seat_user(pool)
    device = await harness.login(member)
    welcomed = time.monotonic()
    waiting = await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    await device.expect_ended("idle_logoff", 4410, timeout=2 + LATE)

    assert time.monotonic() - welcomed >= 2 - EARLY
    # Heartbeats kept coming and being answered: they do not reset the timer.
    assert len(device.received("heartbeat_ack")) >= 2
    await waiting.expect("availability", occupied=0, free=1)
    assert (await waiting.acquire())["type"] == "welcome"
    events = [e for e in await domain.all_events() if e["device_id"] == device.id]
    assert [e["type"] for e in events] == ["seat_granted", "idle_logoff"]
    assert events[-1]["user_id"] == member.id
    assert (events[-1]["pool"], events[-1]["seat"]) == (pool["id"], 1)


async def test_no_idle_logoff_during_a_call(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1, idle_logoff_s=IDLE)
    device = await harness.login(await domain.seat_user(pool))
    await device.call_start("long-call")
    await device.expect("call_started", call_id="long-call")

    # A call three times the idle time: the session must outlast it.
    await device.expect_no("session_ended", 3 * IDLE)

    assert (await device.heartbeat(seq=1))["seq"] == 1
    [held] = (await domain.pool_presence(pool))["holders"]
    assert held["lease_id"] == device.license["lease_id"] and held["in_call"] is True


async def test_idle_timer_restarts_when_a_call_ends(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1, idle_logoff_s=IDLE)
    device = await harness.login(await domain.seat_user(pool))
    welcomed = time.monotonic()
    await device.call_start("c1")
    await device.expect("call_started", call_id="c1")
    # Hold the call past the idle time counted from login.
    await device.expect_no("session_ended", 2 * IDLE)

    call_end_sent = time.monotonic()
    await device.call_end("c1")
    await device.expect("call_ended", call_id="c1")
    await device.expect_ended("idle_logoff", 4410, timeout=IDLE + LATE)

    ended = time.monotonic()
    assert ended - call_end_sent >= IDLE - EARLY
    assert ended - welcomed >= 3 * IDLE
    await domain.wait_pool(pool, occupied=0, holders=[])
