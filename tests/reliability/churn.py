"""Seat users that log in and out continuously (on a `fleet.Fleet`), and the churn of issue 12.

A `Churner` is one seat user with a home and an alternative device. It logs
in on its current device (asking to queue, if it is one of the queuing users),
holds the seat for a while proving now and then that its lease exists (a call
started and ended), then logs out, drops its connection, or takes the seat
over from its other device. Refused, or tired of waiting in the queue, it
leaves (by a close, or a drop) and tries again after a moment. When its
connection is lost (the server was killed) it waits for the fleet to be
`resume`d and logs in again from the same device, which reclaims the seat it
held. The faults in `faults.py` kill and restart servers under churners.

`issue_churn` is the churn of issue 12: 25 seat users of a 6-seat pool, a
third of them queuing and some taking over, half of the sessions ending with
an abrupt drop, then every connection dropped; afterwards nothing may stay
held or queued, and every `hello` must have been answered quickly.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
from server.client import Harness
from servers import ServerProcess, start_all, stop_all
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .agreement import Settled, settle
from .fleet import Fleet, PresencePoller, percentiles
from .history import Grant, Verdict, check
from .lines import ANSWER_TIMEOUT, CLOSED, Line, Member, Phase, clock


@dataclass
class Choices:
    """How churners behave."""

    hold: tuple[float, float] = (0.1, 0.6)  # seconds between proofs while holding
    proofs: tuple[int, int] = (1, 3)
    # How a hold ends: logout, abrupt drop, or (the rest) takeover from the other device.
    logout: float = 0.6
    drop: float = 0.15
    backoff: tuple[float, float] = (0.1, 0.5)  # after a refusal or a lost line
    wait_in_queue: tuple[float, float] = (0.2, 1.5)  # before a queued user gives up
    drop_unseated: float = 0.0  # share of refused or queue-leaving sessions ended by a drop
    patience: float = ANSWER_TIMEOUT  # s a device waits for the answer to its hello


class Churner:
    """One seat user, with a home and an alternative device."""

    def __init__(
        self,
        fleet: Fleet,
        member: Member,
        choices: Choices,
        *,
        queues: bool = False,
        pair: int = 0,
    ) -> None:
        self.fleet = fleet
        self.member = member
        self.choices = choices
        self.queues = queues
        # A user may churn on several pairs of devices at once.
        self.devices = (f"{member.id[:8]}-home{pair}", f"{member.id[:8]}-alt{pair}")
        self.device = self.devices[0]
        self.line: Line | None = None
        self.ambiguous = False  # a takeover was asked and not answered
        self.rng = random.Random(f"{member.id}-{pair}")

    async def step(self) -> None:
        try:
            if self.line is None or self.line.phase is not Phase.SEATED:
                self.line = await self._log_in()
                if self.line is None:
                    await self._pause()
                    return
            await self._hold(self.line)
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            self.fleet.count("connect_failures")
            await self._pause()

    async def _pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.choices.backoff))  # pacing

    async def _open(self, device: str) -> Line:
        return await self.fleet.open(self.member, device, self.rng.choice(self.fleet.urls))

    async def _log_in(self) -> Line | None:
        line = await self._open(self.device)
        self.fleet.count("logins")
        answer = await line.hello(
            takeover=self.ambiguous, queue=self.queues, patience=self.choices.patience
        )
        self.ambiguous = False
        if line.phase is Phase.QUEUED:
            self.fleet.count("queued")
            patience = self.rng.uniform(*self.choices.wait_in_queue)
            await line.until(lambda: line.phase is not Phase.QUEUED, patience)
        if line.phase is Phase.SEATED:
            self.fleet.count("welcomes")
            return line
        if line.phase is Phase.QUEUED:
            self.fleet.count("left_queue")
        else:
            self.fleet.count(f"refused:{line.refusal or answer.get('code', 'closed')}")
        if self.rng.random() < self.choices.drop_unseated:
            self.fleet.count("drops_unseated")
            line.drop()
        await line.close()
        return None

    async def _hold(self, line: Line) -> None:
        choices = self.choices
        for _ in range(self.rng.randint(*choices.proofs)):
            await asyncio.sleep(self.rng.uniform(*choices.hold))  # pacing: holding the seat
            if not await line.prove():
                self.fleet.count("lost_lines")
                return
        roll = self.rng.random()
        if roll < choices.logout:
            self.fleet.count("logouts")
            await line.logout()
            self.line = None
        elif roll < choices.logout + choices.drop:
            self.fleet.count("drops")
            line.drop()
            await line.close()
            self.line = None
        else:
            await self._take_over(line)

    async def _take_over(self, line: Line) -> None:
        other = self.devices[1] if self.device == self.devices[0] else self.devices[0]
        new = await self._open(other)
        self.ambiguous = True
        self.fleet.count("takeovers")
        answer = await new.hello(takeover=True)
        if new.phase is Phase.SEATED:
            self.ambiguous = False
            self.line, self.device = new, other
            await line.until(lambda: not line.live, ANSWER_TIMEOUT)
            if line.grant is None or line.grant.end_reason != "taken_over":
                self.fleet.count("takeovers_not_told")
            await line.close()
        else:
            self.fleet.count(f"refused:{answer.get('code', 'closed')}")
            if answer is not CLOSED:
                self.ambiguous = False
            await new.close()


def churners(
    fleet: Fleet, members: Sequence[Member], choices: Choices, queuing: int = 0, pairs: int = 1
) -> None:
    """Start churners for each of `members`, one per pair of devices; the first
    `queuing` members ask to queue."""
    fleet.start(
        Churner(fleet, member, choices, queues=number < queuing, pair=pair)
        for number, member in enumerate(members)
        for pair in range(pairs)
    )


def live_grants(fleet: Fleet) -> list[Grant]:
    """Grants whose holders lost their line without letting go or being told
    of an end: the server must keep them. Users with an unanswered takeover
    are left out: which of their devices holds the seat is unknown."""
    live = []
    for actor in fleet.actors:
        assert isinstance(actor, Churner)
        grant = actor.line.grant if actor.line is not None else None
        if actor.ambiguous or grant is None:
            continue
        if grant.ended is None and grant.let_go is None and grant.lost is not None:
            live.append(grant)
    return live


async def seat_pool(server: ServerProcess, users: int, seats: int) -> tuple[str, list[Member]]:
    """A domain with one pool of `seats` and `users` seat users of it."""
    async with Harness(server.server) as harness:
        domain = await harness.new_domain(seat_licenses=seats, named_licenses=users)
        pool = await domain.pool(seats, pool_id="desk")
        members = [await domain.seat_user(pool) for _ in range(users)]
    return domain.id, [Member(m.id, m.name, m.token) for m in members]


# The churn of issue 12.

#: The issue's churn: how the 25 users behave. Sessions are short, so that
#: hellos come fast; half of the holds end with a drop, a fifth with a takeover.
ISSUE_CHOICES = Choices(
    hold=(0.0, 0.2),
    proofs=(0, 1),
    logout=0.3,
    drop=0.5,
    backoff=(0.0, 0.1),
    wait_in_queue=(0.1, 1.0),
    drop_unseated=0.5,
)


@dataclass
class ChurnRun:
    """What an `issue_churn` run saw."""

    nodes: int
    users: int
    seats: int
    seconds: float
    lease_ttl: float
    counts: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    settled: Settled | None = None
    verdict: Verdict = field(default_factory=Verdict)
    presence_faults: list[str] = field(default_factory=list)

    @property
    def hellos(self) -> int:
        return self.counts["logins"] + self.counts["takeovers"]

    def problems(self) -> list[str]:
        found = [*self.verdict.double_holders, *self.verdict.overlaps, *self.verdict.fencing]
        found += self.presence_faults
        if self.settled is not None:
            found += [f"after the churn: {left}" for left in self.settled.left.values()]
        found += [f"a device gave up waiting for an answer: {story}" for story in self.unanswered]
        return found

    def summary(self) -> str:
        rate = self.hellos / self.seconds if self.seconds else 0.0
        return (
            f"{self.nodes} node(s), {self.users} users / {self.seats} seats for "
            f"{self.seconds:.0f} s: {self.hellos} hellos ({rate:.0f}/s), "
            f"{self.answers['welcome']} welcomed while waiting, answers "
            f"{dict(self.answers.most_common())}; answer time {percentiles(self.latencies)}, "
            f"{self.counts['timeouts']} unanswered; {self.verdict.grants} grants; "
            f"{self.counts['dropped at the end']} connections dropped at the end, "
            f"{self.settled.summary() if self.settled else 'not settled'}"
        )


async def issue_churn(
    nodes: Sequence[ServerProcess],
    seconds: float,
    *,
    users: int = 25,
    seats: int = 6,
    choices: Choices = ISSUE_CHOICES,
    pairs: int = 1,
) -> ChurnRun:
    """Run the issue's churn on `nodes` (started here, stopped at the end):
    devices spread over every node, a third of the users queuing, each user
    churning on `pairs` pairs of devices at once (more pairs, more hellos)."""
    lease_ttl = nodes[0].lease_ttl
    run = ChurnRun(len(nodes), users, seats, seconds, lease_ttl)
    await asyncio.to_thread(start_all, nodes)
    try:
        domain, members = await seat_pool(nodes[0], users, seats)
        fleet = Fleet([node.base_url for node in nodes])
        poller = PresencePoller(fleet, nodes[0].server.admin_token, domain)
        started = clock()
        churners(fleet, members, choices, queuing=users // 3, pairs=pairs)
        poller.start()
        try:
            await asyncio.sleep(seconds)  # the churn runs
        finally:
            await fleet.stop(abruptly=True)
            run.seconds = clock() - started
            await poller.stop()
        headers = {"Authorization": f"Bearer {nodes[0].server.admin_token}"}
        async with httpx.AsyncClient(
            base_url=nodes[0].base_url, headers=headers, trust_env=False, timeout=10.0
        ) as http:
            run.settled = await settle(http, domain, fleet, lease_ttl)
    finally:
        await asyncio.to_thread(stop_all, nodes)
    run.counts, run.answers, run.latencies = fleet.counts, fleet.answers, fleet.latencies
    run.unanswered = fleet.unanswered
    run.verdict = check(fleet.grants, fleet.proofs)
    run.presence_faults = poller.faults
    return run
