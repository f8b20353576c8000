"""A receiver that is down, failing or hanging: retries, their waits, nothing lost, disabling.

Each test runs a server of its own with retry waits scaled down
(`PRESENCE_WEBHOOK_RETRY_SCALE`), so that the contract's schedule (5 s, 30 s,
2 min, 10 min, 30 min, then hourly, for 24 h) runs in seconds. The deliveries
log (`GET .../deliveries`) gives every attempt's time; the gaps between the
attempts of one event must be at least the scheduled wait, and not much
longer than that wait plus the attempts' own durations.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from server.client import Harness, Message
from servers import ServerProcess

from .conftest import webhook_env
from .hooks import (
    ReceiverProcess,
    Webhooks,
    check_attempt,
    check_stream,
    events_after,
    last_event_id,
    moment,
    visit,
    wait_until,
)

#: The contract's waits before each retry, in seconds (then hourly).
SCHEDULE = (5, 30, 120, 600, 1800, 3600)
DAY = 86400
#: How much longer than scheduled a retry may come: the server's own delays.
SLACK = 0.5
#: Rounding of the `at` times (milliseconds).
ROUNDING = 0.002
#: How much sooner than scheduled a retry may seem to come: the `at` times
#: are cut to milliseconds.
EARLY = ROUNDING


def scheduled_wait(attempt: int, scale: float) -> float:
    """The wait after failed attempt number `attempt` (from 1)."""
    return SCHEDULE[min(attempt, len(SCHEDULE)) - 1] * scale


def check_waits(attempts: list[Message], scale: float) -> None:
    """`attempts` (one event's, oldest first) are numbered from 1 and spaced as scheduled."""
    assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1)), attempts
    for before, after in itertools.pairwise(attempts):
        gap = moment(after["at"]) - moment(before["at"])
        wait = scheduled_wait(before["attempt"], scale)
        longest = wait + (before["duration_ms"] + after["duration_ms"]) / 1000 + SLACK
        assert wait - EARLY <= gap <= longest, (
            f"attempt {after['attempt']} came {gap:.3f} s after the one before, "
            f"scheduled {wait:.3f} s: {before} {after}"
        )


def attempts_of(attempts: list[Message], event_id: int) -> list[Message]:
    """One event's attempts, oldest first, from the log (newest first)."""
    return [a for a in reversed(attempts) if a["event_id"] == event_id]


async def test_an_outage_delays_but_loses_nothing(
    own_server: Callable[..., ServerProcess], receiver: ReceiverProcess
) -> None:
    scale = 0.0005  # waits of 2.5 ms, 15 ms, 60 ms, 300 ms, 0.9 s, then 1.8 s
    server = own_server(env=webhook_env(scale))
    async with Harness(server.server) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()
        hooks = Webhooks(domain)
        before = await last_event_id(domain)
        created = await hooks.create(receiver.url())
        await visit(harness, member)
        delivered_before = await events_after(domain, before)
        await receiver.wait_delivered("hook", [e["id"] for e in delivered_before])

        receiver.stop()
        await visit(harness, member)
        stuck = (await events_after(domain, delivered_before[-1]["id"]))[0]
        await hooks.wait_attempts(
            created["id"],
            lambda log: len(attempts_of(log, stuck["id"])) >= 2,
            "two attempts while the receiver is down",
        )
        receiver.start(mode="fail")
        await receiver.wait_requests("hook", 1, status=500)
        await visit(harness, member)
        await receiver.set_mode("hang")
        await receiver.wait_requests("hook", 1, status=None)
        await receiver.set_mode("ok")
        await visit(harness, member)

        events = await events_after(domain, before)
        assert len(events) == 8, events
        received = await receiver.wait_delivered("hook", [e["id"] for e in events], timeout=20)
        check_stream(received, events, created["secret"])
        failed = [r for r in receiver.requests("hook") if r.status != 200]
        assert {r.webhook_id for r in failed} == {str(stuck["id"])}, failed

        requests = receiver.requests("hook")
        answered = [r for r in requests if r.status is not None]
        log = await hooks.wait_attempts(
            created["id"],
            lambda log: sum(a["status"] is not None for a in log) >= len(answered),
            "every answered attempt logged",
        )
        for attempt in log:
            check_attempt(attempt)
        tried = attempts_of(log, stuck["id"])
        check_waits(tried, scale)
        statuses = [a["status"] for a in tried]
        refused_while_down = list(itertools.takewhile(lambda s: s is None, statuses))
        assert len(refused_while_down) >= 2, tried
        rest = statuses[len(refused_while_down) :]
        hung = [r for r in requests if r.status is None]
        assert rest == [500] * (len(rest) - 2) + [None, 200], tried
        assert len(hung) == 1 and len(rest) - 2 >= 1, (tried, requests)
        timed_out = tried[-2]
        assert 900 <= timed_out["duration_ms"] <= 3000, timed_out
        assert "500" in tried[len(refused_while_down)]["error"], tried
        for later in events[1:]:
            if later["id"] != stuck["id"]:
                assert [a["attempt"] for a in attempts_of(log, later["id"])] == [1], later


async def test_failing_for_a_day_disables_the_endpoint(
    own_server: Callable[..., ServerProcess], receiver: ReceiverProcess
) -> None:
    scale = 0.0001  # a day is 8.64 s; waits of 0.5 ms, 3 ms, 12 ms, 60 ms, 180 ms, then 360 ms
    server = own_server(env=webhook_env(scale))
    async with Harness(server.server) as harness:
        domain = await harness.new_domain()
        hooks = Webhooks(domain)
        await receiver.set_mode("fail", "dead")
        before = await last_event_id(domain)
        dead = await hooks.create(receiver.url("dead"))
        watch = await hooks.create(receiver.url("watch"))
        await visit(harness, await domain.named_user())
        first = (await events_after(domain, before))[0]

        async def disabled() -> Message | None:
            shown = await hooks.get(dead["id"])
            return shown if shown["enabled"] is False else None

        shown = await wait_until(disabled, "the endpoint disabled", timeout=DAY * scale + 10)
        assert "secret" not in shown

        events = await events_after(domain, before)
        [gone] = [e for e in events if e["type"] == "webhook_disabled"]
        assert [e["type"] for e in events] == ["named_login", "named_logout", "webhook_disabled"]
        check_stream(
            await receiver.wait_delivered("watch", [e["id"] for e in events]),
            events,
            watch["secret"],
        )
        log = await hooks.deliveries(dead["id"], limit=1000)
        for attempt in log:
            check_attempt(attempt)
        tried = attempts_of(log, first["id"])
        assert tried == log[::-1], "attempts of another event than the first"
        assert len(tried) >= 20 and all(a["status"] == 500 for a in tried), tried
        check_waits(tried, scale)
        failing_for = moment(gone["at"]) - moment(tried[0]["at"])
        assert DAY * scale - ROUNDING <= failing_for <= DAY * scale + 0.36 + 1.5, (tried, gone)
        dead_requests = receiver.requests("dead")
        assert len(dead_requests) == len(tried)
        assert max(r.received_at for r in dead_requests) <= moment(gone["at"]) + 0.1

        # enabled again while still failing: a fresh schedule, not a day already spent
        assert (await hooks.patch(dead["id"], enabled=True))["enabled"] is True
        again = (await receiver.wait_requests("dead", len(dead_requests) + 3))[len(dead_requests) :]
        assert {r.event_id for r in again} == {first["id"]}, again
        assert again[2].received_at - again[0].received_at < scheduled_wait(6, scale), again
        assert (await hooks.get(dead["id"]))["enabled"] is True
        await receiver.set_mode("ok", "dead")
        received = await receiver.wait_delivered("dead", [e["id"] for e in events])
        check_stream(received, events, dead["secret"])
        assert (await hooks.get(dead["id"]))["enabled"] is True
