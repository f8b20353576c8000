"""The I/O-level randomized run of issue 12: real devices doing random things
against real servers, and dropping out at random points of every step.

One domain with three pools (`solo` of 1 seat, `pair` of 2, `team` of 4),
their seat users and a few named users, each user with three devices. A
`Person` per user does random device operations on its own connections
(`fleet.Line`): log in (asking to queue or to take over, or not; on a device
it already uses, which replaces that session, S3), acquire again after a
refusal, calls, logout; and it disconnects, by a clean close or an abrupt TCP
drop (`transport.abort()`), at random points: before `hello`, right after
sending it, after `queued`, after a refusal, during a call, during `logout`,
during a takeover. `Admin`s race the devices: a seat granted from the queue
while the queued devices drop (the holder logs out, drops or is released at
that moment), an admin release while the holder drops, a license change while
the user's devices drop, and pool resizes.

What is checked, with no knowledge of the server's insides:

- at quiet points (every actor parked after its step; the server given up to
  `lease_ttl` + a margin to agree): every lease held in presence belongs to a
  live device session that was welcomed to that seat, and every live holder
  is shown; each pool's `occupied` and `queued` equal its live holders and
  live waiting devices; named devices likewise; no pool has a free seat and a
  queue; nothing is held twice, on the devices' side either;
- every presence snapshot of the run: no seat or seat user twice;
- the per-seat history of every grant the devices saw (`history.check`);
- every `hello`, `acquire` and call answered within `ANSWER_TIMEOUT`
  (`unavailable` is a quick answer like any refusal);
- after the run, once every device is gone (closed or dropped): no seat held,
  nobody queued, no named device, promptly or at worst within `lease_ttl` +
  a margin (which of the two is reported).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from server.client import Harness
from servers import ServerProcess, start_all, stop_all
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .agreement import EXPIRY_MARGIN, PROMPT, Settled, disagreements, settle
from .fleet import Fleet, PresencePoller, percentiles
from .history import Verdict, check
from .lines import ANSWER_TIMEOUT, LIVE, Line, Member, Message, Phase, clock

#: The servers' lease TTL for these runs: short, so that a lease the server
#: forgot would expire within the bound of a check.
LEASE_TTL = 3
POOLS = {"solo": 1, "pair": 2, "team": 4}
SEAT_USERS = {"solo": 4, "pair": 5, "team": 8}
NAMED_USERS = 4
DEVICES = 3
#: Open connections a person keeps at most.
MAX_LINES = 4
ADMINS = 2
#: Seconds an actor thinks between two operations, at most.
THINK = 0.05
#: Seconds of load between two quiet points.
QUIET_EVERY = (1.0, 2.5)
#: Share of disconnects that are abrupt drops; the rest are clean closes.
DROPS = 0.6
NAMED = {"model": "named"}
NONE = {"model": "none"}


def seat(pool: str) -> dict[str, str]:
    return {"model": "seat", "pool": pool}


@dataclass
class Report:
    """What a randomized run did and found."""

    backend: str
    seed: int
    seconds: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)  # "point (drop|close)"
    violations: dict[str, str] = field(default_factory=dict)  # one per distinct fault
    quiet_waits: list[float] = field(default_factory=list)  # until the server agreed
    settled: Settled | None = None
    verdict: Verdict = field(default_factory=Verdict)
    snapshots: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violate(self, key: str, text: str) -> None:
        self.violations.setdefault(key, text)

    def ended(self) -> dict[str, int]:
        """Sessions ended by the server (or by a logout: `logout`), by reason."""
        return {
            key.removeprefix("ended:"): n
            for key, n in sorted(self.counts.items())
            if key.startswith("ended:")
        }

    def text(self) -> str:
        """The run's figures, for a person."""
        waits = sorted(self.quiet_waits)
        slow = sum(wait > PROMPT for wait in waits)
        lines = [
            f"randomized run on {self.backend}, seed {self.seed}: {self.seconds:.1f} s, "
            f"{sum(self.operations.values())} operations, "
            f"{sum(self.disconnects.values())} disconnects injected, "
            f"{len(self.violations)} violations",
            f"  operations: {dict(sorted(self.operations.items()))}",
            f"  disconnects: {dict(sorted(self.disconnects.items()))}",
            f"  answers to hello/acquire: {dict(self.answers.most_common())}, "
            f"in {percentiles(self.latencies)}; unanswered: {self.counts['timeouts']}",
            f"  quiet points: {len(waits)}, server agreed within "
            f"{waits[-1] if waits else 0:.2f} s at worst ({slow} needed more than {PROMPT:g} s)",
            f"  sessions the server ended: {self.ended()}",
            f"  {self.verdict.summary()}; {self.snapshots} presence snapshots",
            f"  after the run: {self.settled.summary() if self.settled else 'not reached'}",
        ]
        shown = list(self.violations.values())
        lines += [f"  VIOLATION: {text}" for text in shown[:40]]
        if len(shown) > 40:
            lines.append(f"  ... and {len(shown) - 40} more")
        return "\n".join(lines)


@dataclass
class Person:
    """A user of the run's domain, as the test knows it."""

    member: Member
    home: dict[str, str]  # the license it was created with
    license: dict[str, str]  # the license the admins set last

    @property
    def devices(self) -> list[str]:
        return [f"{self.member.id[:8]}-{n}" for n in range(1, DEVICES + 1)]


class Scene:
    """The run's shared state: the fleet, the domain, the report, the admin API."""

    def __init__(
        self, fleet: Fleet, http: list[httpx.AsyncClient], domain: str, report: Report
    ) -> None:
        self.fleet = fleet
        self.http = http  # one admin client per node
        self.domain = domain
        self.report = report
        self.people: list[Person] = []

    def path(self, *parts: str) -> str:
        return "/".join([f"/api/v1/domains/{self.domain}", *parts])

    def did(self, operation: str) -> None:
        self.report.operations[operation] += 1

    async def disconnect(self, rng: random.Random, line: Line, point: str) -> None:
        """End `line` from the device's side: an abrupt drop, or a clean close."""
        if rng.random() < DROPS:
            self.report.disconnects[f"{point} (drop)"] += 1
            line.drop()
        else:
            self.report.disconnects[f"{point} (close)"] += 1
        await line.close()

    async def presence(self) -> Message:
        answer = await self.http[0].get(self.path("presence"))
        answer.raise_for_status()
        result: Message = answer.json()
        return result


class Player:
    """Shared by persons and admins: a seeded choice of weighted operations."""

    def __init__(self, scene: Scene, rng: random.Random) -> None:
        self.scene = scene
        self.fleet = scene.fleet
        self.rng = rng

    def url(self) -> str:
        return self.rng.choice(self.fleet.urls)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    async def step(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, THINK))  # pacing: a person thinks
        operations = self.operations()
        if not operations:
            return
        (chosen,) = self.rng.choices(
            [op for op, _ in operations], weights=[weight for _, weight in operations]
        )
        try:
            await chosen()
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            self.fleet.count("connect_failures")

    def operations(self) -> list[tuple[Callable[[], Awaitable[None]], int]]:
        raise NotImplementedError


class User(Player):
    """One person's devices, doing random things and dropping out at random points."""

    def __init__(self, scene: Scene, rng: random.Random, person: Person) -> None:
        super().__init__(scene, rng)
        self.person = person

    def lines(self, phases: Collection[Phase]) -> list[Line]:
        """This person's open lines in `phases` that no request of its own waits on."""
        return [
            line
            for line in self.fleet.lines_of(self.person.member)
            if line.idle and line.phase in phases
        ]

    def operations(self) -> list[tuple[Callable[[], Awaitable[None]], int]]:
        mine = self.lines(LIVE)
        refused = self.lines({Phase.REFUSED})
        holding = self.lines({Phase.SEATED, Phase.NAMED})
        found: list[tuple[Callable[[], Awaitable[None]], int]] = [(self.silent, 1)]
        if len(self.fleet.lines_of(self.person.member)) < MAX_LINES:
            found.append((self.log_in, 5))
        if refused:
            found.append((lambda: self.acquire(self.rng.choice(refused)), 2))
        if holding:
            found.append((lambda: self.call(self.rng.choice(holding)), 3))
        if mine:
            found.append((lambda: self.log_out(self.rng.choice(mine)), 2))
            found.append((lambda: self.drop(self.rng.choice(mine)), 1))
        return found

    async def silent(self) -> None:
        """Connect, and go before saying hello."""
        self.scene.did("connect, no hello")
        line = await self.fleet.open(
            self.person.member, self.rng.choice(self.person.devices), self.url()
        )
        await self.scene.disconnect(self.rng, line, "before hello")

    async def log_in(self) -> None:
        device = self.rng.choice(self.person.devices)
        takeover, queue = self.chance(0.3), self.chance(0.5)
        others = [
            line
            for line in self.fleet.lines_of(self.person.member)
            if line.phase is Phase.SEATED and line.device != device
        ]
        line = await self.fleet.open(self.person.member, device, self.url())
        self.scene.did("hello" + (" takeover" if takeover else "") + (" queue" if queue else ""))
        await line.send_hello(takeover=takeover, queue=queue)
        if takeover and others and self.chance(0.3):
            await self.scene.disconnect(self.rng, self.rng.choice(others), "during a takeover")
        if self.chance(0.15):
            await self.scene.disconnect(self.rng, line, "right after hello")
            return
        await line.answer()
        await self.after_answer(line)

    async def acquire(self, line: Line) -> None:
        takeover, queue = self.chance(0.3), self.chance(0.5)
        self.scene.did("acquire" + (" takeover" if takeover else "") + (" queue" if queue else ""))
        await line.send_acquire(takeover=takeover, queue=queue)
        if self.chance(0.15):
            await self.scene.disconnect(self.rng, line, "right after acquire")
            return
        await line.answer()
        await self.after_answer(line)

    async def after_answer(self, line: Line) -> None:
        if line.phase is Phase.QUEUED and self.chance(0.3):
            await self.scene.disconnect(self.rng, line, "after queued")
        elif line.phase is Phase.REFUSED and self.chance(0.3):
            await self.scene.disconnect(self.rng, line, "after a refusal")

    async def call(self, line: Line) -> None:
        self.scene.did("call")
        call_id = f"call-{self.rng.getrandbits(48):x}"
        await line.send_call("call_start", call_id)
        if self.chance(0.2):
            await self.scene.disconnect(self.rng, line, "call asked")
            return
        if (await line.answer())["type"] != "call_started":
            return
        if self.chance(0.3):
            await self.scene.disconnect(self.rng, line, "during a call")
            return
        await line.send_call("call_end", call_id)
        await line.answer()

    async def log_out(self, line: Line) -> None:
        self.scene.did("logout")
        await line.logout(wait=False)
        if self.chance(0.4):
            await self.scene.disconnect(self.rng, line, "during logout")
            return
        await line.until(lambda: line.phase is Phase.CLOSED, ANSWER_TIMEOUT)
        await line.close()

    async def drop(self, line: Line) -> None:
        self.scene.did("disconnect")
        await self.scene.disconnect(self.rng, line, "idle")


class Admin(Player):
    """Admin operations racing the devices."""

    def operations(self) -> list[tuple[Callable[[], Awaitable[None]], int]]:
        return [
            (self.grant_race, 4),
            (self.release, 2),
            (self.change_license, 2),
            (self.resize, 1),
        ]

    async def call(self, method: str, path: str, body: Message | None = None) -> int:
        """Call the admin API through a random node; returns the status. An
        error of the server (5xx) or no answer is a violation: the admin API
        stays answerable whatever the devices do."""
        try:
            answer = await self.rng.choice(self.scene.http).request(method, path, json=body)
        except httpx.HTTPError as exc:
            self.scene.report.violate(f"admin {exc!r}", f"{method} {path} failed: {exc!r}")
            return 0
        if answer.status_code >= 500:
            self.scene.report.violate(
                f"admin {answer.status_code}",
                f"{method} {path} answered {answer.status_code}: {answer.text[:200]}",
            )
        return answer.status_code

    def seated(self, pool: str | None = None) -> list[Line]:
        return [
            line
            for line in self.fleet.lines
            if line.phase is Phase.SEATED and pool in (None, line.pool)
        ]

    async def grant_race(self) -> None:
        """A seat freed (logout, drop or admin release of its holder) while the
        devices waiting for it drop: the grant races the drops."""
        pool = self.rng.choice(list(POOLS))
        holders = self.seated(pool)
        if not holders:
            return
        waiting = [
            line for line in self.fleet.lines if line.phase is Phase.QUEUED and line.pool == pool
        ]
        if len(waiting) < 2:
            waiting += await self.queue_up(pool)
        if not waiting:
            return
        self.scene.did("grant race")
        holder = self.rng.choice(holders)
        how = self.rng.choice(["logout", "disconnect", "release"])
        moves: list[Awaitable[Any]] = [
            self.scene.disconnect(self.rng, line, "queued, as a seat is granted")
            for line in waiting
            if self.chance(0.8)
        ]
        if how == "logout":
            moves.append(holder.logout(wait=False))
        elif how == "disconnect":
            moves.append(self.scene.disconnect(self.rng, holder, "holder, as its seat is granted"))
        else:
            assert holder.grant is not None
            moves.append(self.call("DELETE", self.scene.path("leases", holder.grant.lease_id)))
        self.rng.shuffle(moves)
        await asyncio.gather(*moves)

    async def queue_up(self, pool: str) -> list[Line]:
        """Devices of users of `pool` holding nothing ask to queue."""
        people = [
            person
            for person in self.scene.people
            if person.license == seat(pool)
            and not any(line.phase is Phase.SEATED for line in self.fleet.lines_of(person.member))
        ]
        queued = []
        for person in self.rng.sample(people, min(3, len(people))):
            used = {line.device for line in self.fleet.lines_of(person.member)}
            free = [device for device in person.devices if device not in used]
            if not free:
                continue
            line = await self.fleet.open(person.member, self.rng.choice(free), self.url())
            self.scene.did("hello queue (to wait for a seat)")
            await line.hello(queue=True)
            if line.phase is Phase.QUEUED:
                queued.append(line)
        return queued

    async def release(self) -> None:
        """An admin releases a lease while (sometimes) its holder drops."""
        holders = self.seated()
        if not holders:
            return
        self.scene.did("admin release")
        holder = self.rng.choice(holders)
        assert holder.grant is not None
        moves: list[Awaitable[Any]] = [
            self.call("DELETE", self.scene.path("leases", holder.grant.lease_id))
        ]
        if self.chance(0.5):
            moves.append(self.scene.disconnect(self.rng, holder, "during an admin release"))
        self.rng.shuffle(moves)
        await asyncio.gather(*moves)

    async def change_license(self) -> None:
        """An admin changes a user's license while (some of) its devices drop."""
        person = self.rng.choice(self.scene.people)
        if person.license != person.home and self.chance(0.6):
            license = person.home
        else:
            options = [seat(pool) for pool in POOLS] + [NAMED, NONE]
            license = self.rng.choice([o for o in options if o != person.license])
        self.scene.did("license change")
        put = self.call("PUT", self.scene.path("users", person.member.id, "license"), license)
        moves: list[Awaitable[Any]] = [put]
        for line in self.fleet.lines_of(person.member):
            if self.chance(0.5):
                moves.append(self.scene.disconnect(self.rng, line, "during a license change"))
        self.rng.shuffle(moves)
        status = next(r for r in await asyncio.gather(*moves) if isinstance(r, int))
        if status == 200:
            person.license = license
        else:
            self.fleet.count(f"license change refused {status}")

    async def resize(self) -> None:
        pool = self.rng.choice(list(POOLS))
        seats = self.rng.randint(1, POOLS[pool])
        self.scene.did("pool resize")
        status = await self.call("PATCH", self.scene.path("pools", pool), {"seats": seats})
        if status != 200:
            self.fleet.count(f"resize refused {status}")


async def build(scene: Scene, server: ServerProcess) -> None:
    """Make the run's domain (id `scene.domain`), its pools and users."""
    async with Harness(server.server) as harness:
        people = sum(SEAT_USERS.values()) + NAMED_USERS
        domain = await harness.new_domain(named_licenses=people, seat_licenses=sum(POOLS.values()))
        scene.domain = domain.id
        for pool, seats in POOLS.items():
            await domain.pool(seats, pool_id=pool)
        homes = [seat(pool) for pool, n in SEAT_USERS.items() for _ in range(n)]
        for home in [*homes, *[NAMED] * NAMED_USERS]:
            user = await domain.user(home)
            scene.people.append(Person(Member(user.id, user.name, user.token), home, home))


async def quiet_point(scene: Scene, number: int, lease_ttl: float) -> None:
    """Park every actor, then wait (bounded) until presence agrees with the
    devices, but for what an earlier quiet point already found (a seat held
    forever is reported once, and does not slow every later quiet point)."""
    report = scene.report
    if not await scene.fleet.quiet(4 * ANSWER_TIMEOUT):
        scene.fleet.count("quiet points with a busy actor")
    started = clock()
    while True:
        found = disagreements(await scene.presence(), scene.fleet)
        found = {key: text for key, text in found.items() if key not in report.violations}
        waited = clock() - started
        if not found:
            break
        if waited > lease_ttl + EXPIRY_MARGIN:
            for key, text in found.items():
                report.violate(key, f"quiet point {number}, after {waited:.1f} s: {text}")
            break
        await asyncio.sleep(0.05)  # polling presence
    report.quiet_waits.append(waited)
    scene.fleet.resume()


async def randomized_run(
    nodes: Sequence[ServerProcess], seconds: float, seed: int, backend: str
) -> Report:
    """Run the randomized operations on `nodes` (started here, stopped at the end)
    for `seconds`, with the choices of `seed`; see the module docstring."""
    rng = random.Random(seed)
    report = Report(backend, seed)
    lease_ttl = nodes[0].lease_ttl
    admin = nodes[0].server.admin_token
    await asyncio.to_thread(start_all, nodes)
    fleet = Fleet([node.base_url for node in nodes])
    clients = [
        httpx.AsyncClient(
            base_url=node.base_url,
            headers={"Authorization": f"Bearer {admin}"},
            trust_env=False,
            timeout=10.0,
        )
        for node in nodes
    ]
    scene = Scene(fleet, clients, "", report)
    poller: PresencePoller | None = None
    try:
        await build(scene, nodes[0])
        poller = PresencePoller(fleet, admin, scene.domain, resized=True)
        actors: list[Player] = [
            User(scene, random.Random(rng.getrandbits(64)), person) for person in scene.people
        ]
        actors += [Admin(scene, random.Random(rng.getrandbits(64))) for _ in range(ADMINS)]
        started = clock()
        fleet.start(actors)
        poller.start()
        number = 0
        while (left := started + seconds - clock()) > 0:
            await asyncio.sleep(min(left, rng.uniform(*QUIET_EVERY)))  # the load runs
            number += 1
            await quiet_point(scene, number, lease_ttl)
        await fleet.stop()
        report.seconds = clock() - started
        ends = await fleet.close_lines(drop=lambda line: rng.random() < DROPS)
        for how, n in ends.items():
            report.disconnects[f"at the end ({how})"] += n
        report.settled = await settle(clients[0], scene.domain, fleet, lease_ttl)
    finally:
        if poller is not None:
            await poller.stop()
        if not fleet.stopping:
            await fleet.stop()
        await fleet.close_lines()
        for client in clients:
            await client.aclose()
        await asyncio.to_thread(stop_all, nodes)
    judge(report, fleet, poller)
    return report


def judge(report: Report, fleet: Fleet, poller: PresencePoller | None) -> None:
    """Gather the run's figures, and every fault found after it, into `report`."""
    report.counts, report.answers, report.latencies = fleet.counts, fleet.answers, fleet.latencies
    report.verdict = check(fleet.grants, fleet.proofs)
    for text in [*report.verdict.double_holders, *report.verdict.overlaps, *report.verdict.fencing]:
        report.violate(text, f"history: {text}")
    if poller is not None:
        report.snapshots = poller.snapshots
        for text in poller.faults:
            report.violate(text, f"snapshot: {text}")
    for number, story in enumerate(fleet.unanswered):
        report.violate(f"unanswered {number}", f"no answer within {ANSWER_TIMEOUT:g} s: {story}")
    if report.settled is not None:
        for key, text in report.settled.left.items():
            report.violate(
                key, f"{report.settled.seconds:.1f} s after every device was gone: {text}"
            )
