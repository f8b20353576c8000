"""The per-address guard: the rule with an injected clock, and the gate that
keeps it in one process."""

from __future__ import annotations

import asyncio

import pytest

from presence.errors import RateLimited, Unauthorized
from presence.web.guard import WINDOW, Guard, LocalGate, authenticated

#: Bounds a wait that only runs out if the gate is broken.
WAIT = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(guard: Guard, address: str) -> None:
    assert guard.admit(address) is True
    guard.judged(address, failed=True)


# The rule.


def test_connections_are_capped_per_address() -> None:
    guard = Guard(max_connections=2, max_failures=10)
    assert guard.connect("a") and guard.connect("a")
    assert not guard.connect("a")
    assert guard.connect("b")
    guard.disconnect("a")
    assert guard.connect("a")


def test_failed_authentications_block_an_address_for_a_minute() -> None:
    clock = Clock()
    guard = Guard(max_connections=10, max_failures=3, clock=clock)
    for _ in range(2):
        fail(guard, "a")
    assert guard.admit("a") is True
    guard.judged("a", failed=False)
    fail(guard, "a")
    assert guard.admit("a") is False
    assert guard.admit("b") is True
    clock.now += WINDOW + 0.1
    assert guard.admit("a") is True


def test_failures_age_out_one_by_one() -> None:
    clock = Clock()
    guard = Guard(max_connections=10, max_failures=2, clock=clock)
    fail(guard, "a")
    clock.now += WINDOW / 2
    fail(guard, "a")
    assert guard.admit("a") is False
    clock.now += WINDOW / 2 + 0.1
    assert guard.admit("a") is True


def test_authentications_under_way_count_as_failures_until_judged() -> None:
    guard = Guard(max_connections=10, max_failures=2)
    assert guard.admit("a") is True and guard.admit("a") is True
    assert guard.admit("a") is None  # both could still fail
    assert guard.admit("b") is True
    guard.judged("a", failed=False)
    assert guard.admit("a") is True
    guard.judged("a", failed=True)
    assert guard.admit("a") is None  # one failure, one under way
    guard.judged("a", failed=True)
    assert guard.admit("a") is False


# The gate of one process.


async def judge_at_once(gate: LocalGate, verdicts: list[bool]) -> tuple[list[str], int]:
    """Authenticate once per verdict (False: the token is wrong), all at once
    from one address; return the outcomes and the most judged at one time."""
    judging = 0
    most = 0
    release = asyncio.Event()

    async def authenticate(good: bool) -> None:
        nonlocal judging, most
        judging += 1
        most = max(most, judging)
        await release.wait()
        judging -= 1
        if not good:
            raise Unauthorized("wrong")

    async def attempt(good: bool) -> str:
        try:
            await authenticated(gate, "office", lambda: authenticate(good))
        except (Unauthorized, RateLimited) as exc:
            return exc.code
        return "ok"

    tasks = [asyncio.create_task(attempt(good)) for good in verdicts]
    while judging < min(len(verdicts), gate.guard.max_failures):
        if all(task.done() for task in tasks):  # all refused
            break
        await asyncio.sleep(0)  # until the first ones are under way
    release.set()
    return list(await asyncio.gather(*tasks)), most


async def test_honest_logins_at_once_wait_and_all_pass() -> None:
    gate = LocalGate(Guard(max_connections=10, max_failures=3))
    outcomes, most = await judge_at_once(gate, [True] * 50)
    assert outcomes == ["ok"] * 50
    assert most == 3


async def test_guesses_at_once_are_judged_up_to_the_limit() -> None:
    gate = LocalGate(Guard(max_connections=10, max_failures=3))
    outcomes, _ = await judge_at_once(gate, [False] * 20)
    assert outcomes == ["unauthorized"] * 3 + ["rate_limited"] * 17
    outcomes, _ = await judge_at_once(gate, [True])
    assert outcomes == ["rate_limited"]


async def test_a_waiter_that_gives_up_holds_no_turn() -> None:
    gate = LocalGate(Guard(max_connections=10, max_failures=1))
    assert await gate.admit("a")
    waiting = asyncio.create_task(gate.admit("a"))
    await asyncio.sleep(0)  # it queues
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    gate.judged("a", failed=False)
    assert await asyncio.wait_for(gate.admit("a"), WAIT)


async def test_a_waiter_cancelled_as_its_turn_comes_gives_it_back() -> None:
    gate = LocalGate(Guard(max_connections=10, max_failures=1))
    assert await gate.admit("a")
    waiting = asyncio.create_task(gate.admit("a"))
    await asyncio.sleep(0)  # it queues
    gate.judged("a", failed=False)  # its turn: admitted...
    waiting.cancel()  # ...but cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await asyncio.wait_for(gate.admit("a"), WAIT)
