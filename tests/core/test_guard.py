"""The per-address guard: the rule with an injected clock, the gate that keeps
it in one process, and the gate that workers share through the supervisor
(over socket pairs here, in one process; tests/cluster/test_workers.py runs
real workers)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from presence.errors import RateLimited, Unauthorized
from presence.web.guard import WINDOW, Guard, LocalGate, authenticated
from presence.workers import SharedGate, serve_worker

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


# The gate that workers share.


class Supervisor:
    """The supervisor's side, in this process: one gate, a task per worker."""

    def __init__(self) -> None:
        self.gate = LocalGate(Guard(max_connections=3, max_failures=2))
        self.lost: list[SharedGate] = []

    async def worker(self) -> tuple[SharedGate, asyncio.Task[None]]:
        """A worker's gate, and the task answering it."""
        ours, theirs = socket.socketpair()
        serving = asyncio.create_task(serve_worker(self.gate, ours))
        gate = SharedGate(theirs, on_lost=lambda: self.lost.append(gate))
        await gate.start()
        return gate, serving


async def test_workers_share_the_cap() -> None:
    supervisor = Supervisor()
    (a, serving_a), (b, serving_b) = await supervisor.worker(), await supervisor.worker()
    assert await a.connect("x") and await a.connect("x")
    assert await b.connect("x")
    assert not await b.connect("x") and not await a.connect("x")
    assert await b.connect("y")
    a.disconnect("x")
    assert await a.connect("x")
    # A worker that is gone lets go of what it held.
    await a.stop()
    await serving_a
    assert await b.connect("x") and await b.connect("x")
    assert not await b.connect("x")
    await b.stop()
    await serving_b
    for _ in range(3):
        assert supervisor.gate.guard.connect("x")
    assert supervisor.lost == []


async def test_workers_share_the_brake() -> None:
    supervisor = Supervisor()
    (a, serving_a), (b, serving_b) = await supervisor.worker(), await supervisor.worker()
    assert await a.admit("x") and await b.admit("x")
    waiting = asyncio.create_task(b.admit("x"))  # two under way: it waits
    a.judged("x", failed=True)
    b.judged("x", failed=False)  # one failure; the waiter goes
    assert await asyncio.wait_for(waiting, WAIT)
    waiting = asyncio.create_task(a.admit("x"))  # one failure, one under way
    # b is gone with its authentication under way: that is no failure.
    await b.stop()
    await serving_b
    assert await asyncio.wait_for(waiting, WAIT)
    a.judged("x", failed=True)
    assert await a.admit("x") is False
    await a.stop()
    await serving_a


async def test_a_worker_whose_supervisor_is_gone_lets_everyone_in() -> None:
    supervisor = Supervisor()
    gate, serving = await supervisor.worker()
    for _ in range(3):
        assert await gate.connect("x")
    serving.cancel()  # the supervisor dies
    await asyncio.gather(serving, return_exceptions=True)
    assert await asyncio.wait_for(until_lost(supervisor), WAIT) == [gate]
    assert await gate.connect("x") and await gate.admit("x")
    await gate.stop()


async def until_lost(supervisor: Supervisor) -> list[SharedGate]:
    while not supervisor.lost:
        await asyncio.sleep(0.01)  # polling for the gate to read the end
    return supervisor.lost
