"""The fleet: device connections (`lines.Line`) against one or more nodes,
what they recorded, and the actors that drive them.

A `Fleet` runs actors: each actor's `step` is awaited again and again until
the fleet stops. `quiet` parks every actor at the end of its step, so that a
run can be checked at a quiet point; `resume` lets them go on.
`PresencePoller` reads presence meanwhile: each lease it sees is a proof, and
no snapshot may show a seat or a seat user twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from websockets.asyncio.client import connect

from .agreement import held_twice
from .history import Grant, Proof
from .lines import ANSWER_TIMEOUT, Line, Member, Message, clock


class Actor(Protocol):
    """Something a fleet runs: `step` is awaited again and again until the fleet stops."""

    async def step(self) -> None: ...


@dataclass
class Fleet:
    """Lines against servers at `urls` (mutable: nodes come and go), what they
    recorded, and the actors that drive them."""

    urls: list[str]
    grants: list[Grant] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # hello or acquire to its answer
    answers: Counter[str] = field(default_factory=Counter)  # those answers, by type or code
    unanswered: list[str] = field(default_factory=list)  # stories of lines left waiting
    # The open lines, in the order they were opened (so that a seed makes the same choices).
    lines: dict[Line, None] = field(default_factory=dict)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.began = clock()
        # The stories (`Line.describe`) of the last closed connections of each
        # device (user id, device id): a line is not kept once closed.
        self.stories: defaultdict[tuple[str, str], deque[Callable[[], str]]] = defaultdict(
            lambda: deque(maxlen=2)
        )
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.actors: list[Actor] = []
        self._parked = 0
        self._tasks: list[asyncio.Task[None]] = []

    def count(self, what: str) -> None:
        self.counts[what] += 1

    async def open(self, member: Member, device: str, url: str) -> Line:
        """Connect as `device` of `member` to the node at `url` (nothing sent yet)."""
        ws = await connect(
            url.replace("http://", "ws://", 1) + "/ws/device",
            proxy=None,
            compression=None,
            ping_interval=None,
            open_timeout=ANSWER_TIMEOUT,
            close_timeout=1,
        )
        return Line(self, member, device, url, ws)

    def lines_of(self, member: Member) -> list[Line]:
        return [line for line in self.lines if line.member.id == member.id]

    def story_of(self, user_id: str, device: str) -> str:
        """What the last two connections of a device did and saw, for a report."""
        lines = [line for line in self.lines if (line.member.id, line.device) == (user_id, device)]
        told = [describe() for describe in self.stories[(user_id, device)]]
        told += [line.describe() for line in lines]
        return "; ".join(told[-2:]) or "never connected"

    def start(self, actors: Iterable[Actor]) -> None:
        self.actors = list(actors)
        self._tasks = [asyncio.create_task(self._run(actor)) for actor in self.actors]

    async def _run(self, actor: Actor) -> None:
        while not self.stopping:
            if self.resumed.is_set():
                await actor.step()
                continue
            self._parked += 1
            try:
                await self.resumed.wait()
            finally:
                self._parked -= 1

    def hold_back(self) -> None:
        """Actors park at the end of their step until `resume`."""
        self.resumed.clear()

    def resume(self) -> None:
        self.resumed.set()

    async def quiet(self, timeout: float) -> bool:
        """Hold back, and wait until every actor is parked; False if one was
        still busy after `timeout`."""
        self.hold_back()
        return await poll_until(
            lambda: self._parked == sum(not task.done() for task in self._tasks), timeout
        )

    async def stop(self, *, abruptly: bool = False) -> None:
        """Stop the actors at the end of their step (or cancel them after a while).

        `abruptly`: first drop every open line, in the middle of whatever its
        actor does (and then those the actors opened meanwhile); they are
        counted as `dropped at the end`. Re-raises what an actor raised: a
        fault of the test, not of the server.
        """
        self.stopping = True
        self.resumed.set()
        if abruptly:
            self._drop_all()
        if self._tasks:
            await self._wait_for_actors()
        if abruptly:
            self._drop_all()

    def _drop_all(self) -> None:
        for line in list(self.lines):
            line.drop()
            self.count("dropped at the end")

    async def _wait_for_actors(self) -> None:
        _, busy = await asyncio.wait(self._tasks, timeout=4 * ANSWER_TIMEOUT)
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
        for task in self._tasks:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error

    async def close_lines(self, drop: Callable[[Line], bool] = lambda line: False) -> Counter[str]:
        """Close every open line, cleanly, or abruptly where `drop(line)`; returns
        how many went each way."""
        ways: Counter[str] = Counter()
        closing = []
        for line in list(self.lines):
            if drop(line):
                line.drop()
                ways["drop"] += 1
            else:
                closing.append(line.close())
                ways["close"] += 1
        await asyncio.gather(*closing)
        return ways

    async def lines_closed(self, timeout: float, url: str | None = None) -> bool:
        """Wait until every line (to `url`, if given) has seen its connection close."""
        return await poll_until(
            lambda: not any(line.url == url or url is None for line in self.lines), timeout
        )


class PresencePoller:
    """Reads presence every `period` s: each lease seen is a proof, and each
    snapshot must show at most one holder per seat and one seat per user.

    Unless `resized` (pools shrink during the run, S9), no pool may show more
    seats occupied than it has.
    """

    def __init__(
        self,
        fleet: Fleet,
        admin_token: str,
        domain: str,
        period: float = 0.25,
        resized: bool = False,
    ) -> None:
        self.fleet = fleet
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.domain = domain
        self.period = period
        self.resized = resized
        self.snapshots = 0
        self.faults: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(headers=self.headers, trust_env=False, timeout=2.0) as http:
            while True:
                await asyncio.sleep(self.period)  # pacing of the poll
                for url in list(self.fleet.urls):
                    sent = clock()
                    try:
                        answer = await http.get(f"{url}/api/v1/domains/{self.domain}/presence")
                    except httpx.HTTPError:
                        continue
                    if answer.status_code == 200:
                        self._check(answer.json(), sent)

    def _check(self, snapshot: Message, sent: float) -> None:
        self.snapshots += 1
        self.faults.extend(held_twice(snapshot))
        for pool in snapshot["pools"]:
            if not self.resized and pool["occupied"] > pool["seats"]:
                self.faults.append(f"presence shows {pool['occupied']} of {pool['seats']} seats")
            for holder in pool["holders"]:
                self.fleet.proofs.append(Proof(holder["lease_id"], sent, "presence"))


async def poll_until(condition: Callable[[], bool], timeout: float, period: float = 0.05) -> bool:
    """Wait until `condition()` holds; False if it did not within `timeout`."""
    deadline = clock() + timeout
    while not condition():
        if clock() > deadline:
            return False
        await asyncio.sleep(period)
    return True


def percentiles(seconds: list[float]) -> str:
    """p50, p99 and max of a list of durations, in ms."""
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms"
