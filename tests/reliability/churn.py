"""Devices that log in and out continuously, recording everything they observe.

A `Fleet` runs one actor per seat user of a pool. Each actor logs in on its
home device, holds the seat for a while proving now and then that its lease
exists (a call started and ended), then logs out, drops its connection, or
takes the seat over from its other device. Refused, it waits a moment and
tries again. When its connection is lost (the server was killed) it waits for
the fleet to be `resume`d and logs in again from the same device, which
reclaims the seat it held.

Every `welcome` becomes a `history.Grant` and every lease proof a
`history.Proof`; a poller adds the leases it sees in presence snapshots. The
faults in `faults.py` kill and restart servers under the fleet and check the
history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .history import Grant, Proof

#: The longest a live server takes to answer; past it a line counts as lost.
ANSWER_TIMEOUT = 3.0
HEARTBEAT_PERIOD = 0.5
CLOSED = {"type": "closed"}


def clock() -> float:
    return time.monotonic()


@dataclass(frozen=True)
class Member:
    """A seat user of the fleet's pool."""

    id: str
    name: str
    token: str


class Line:
    """One device connection: reads everything, heartbeats, records grants."""

    def __init__(
        self, fleet: Fleet, member: Member, device: str, url: str, ws: ClientConnection
    ) -> None:
        self.fleet = fleet
        self.url = url
        self.member = member
        self.device = device
        self.ws = ws
        self.grant: Grant | None = None
        self.asked = 0.0
        self.closed_at: float | None = None
        self.answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._sent: dict[Any, float] = {}
        self._seq = 0
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._beat())]

    @property
    def open(self) -> bool:
        return self.closed_at is None

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._on(json.loads(raw), clock())
        except ConnectionClosed:
            pass
        finally:
            now = clock()
            self.closed_at = now
            grant = self.grant
            if grant is not None and grant.ended is None and grant.let_go is None:
                code = self.ws.close_code
                if code is not None and code != 1006:
                    # The server closed the session itself (e.g. 1011, its database
                    # out of reach): the device knows the session is over.
                    grant.ended = now
                    grant.end_reason = f"closed:{code}"
                else:
                    grant.lost = now
            self.answers.put_nowait(CLOSED)

    def _on(self, message: dict[str, Any], now: float) -> None:
        kind = message.get("type")
        grant = self.grant
        if kind == "welcome":
            license = message["license"]
            self.grant = Grant(
                self.member.id,
                self.device,
                license["pool"]["id"],
                license["seat"],
                license["lease_id"],
                license["fencing_token"],
                self.asked,
                now,
                lease_ttl=float(message["lease_ttl"]),
            )
            self.fleet.grants.append(self.grant)
        elif kind == "heartbeat_ack":
            sent = self._sent.pop(message.get("seq"), None)
            if grant is not None and sent is not None and sent >= grant.asked:
                grant.promised = max(grant.promised, sent + float(message["expires_in"]))
            return
        elif kind in ("call_started", "call_ended"):
            sent = self._sent.pop(message.get("call_id"), None)
            if grant is not None and sent is not None:
                self.fleet.proofs.append(Proof(grant.lease_id, sent, kind))
        elif kind in ("session_ended", "bye"):
            if grant is not None and grant.ended is None:
                grant.ended = now
                grant.end_reason = message.get("reason", "logout")
            self.fleet.count(f"ended:{message.get('reason', 'logout')}")
        if kind not in ("availability", "queued"):
            self.answers.put_nowait(message)

    async def _beat(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(HEARTBEAT_PERIOD)  # pacing, as a device does
                self._seq += 1
                self._sent[self._seq] = clock()
                await self.ws.send(json.dumps({"type": "heartbeat", "seq": self._seq}))

    async def send(self, message: dict[str, Any], key: Any = None) -> None:
        if key is not None:
            self._sent[key] = clock()
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))

    async def answer(self, *kinds: str) -> dict[str, Any]:
        """The next message of `kinds` (or an error, or `CLOSED`); `CLOSED` on timeout,
        after dropping the line: a server that does not answer is as good as gone."""
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                while True:
                    message = await self.answers.get()
                    if message is CLOSED or message["type"] in (*kinds, "error"):
                        return message
        except TimeoutError:
            self.fleet.count("timeouts")
            self.drop(let_go=False)
            return CLOSED

    async def login(self, takeover: bool) -> dict[str, Any]:
        self.asked = clock()
        hello = {
            "type": "hello",
            "token": self.member.token,
            "device": {"id": self.device, "kind": "desktop"},
            "takeover": takeover,
        }
        await self.send(hello)
        return await self.answer("welcome")

    async def prove(self) -> bool:
        """Start and end a call: each answer proves the lease existed."""
        call_id = f"call-{random.getrandbits(48):x}"
        for kind, answered in (("call_start", "call_started"), ("call_end", "call_ended")):
            await self.send({"type": kind, "call_id": call_id}, key=call_id)
            answer = await self.answer(answered)
            if answer is CLOSED or answer["type"] == "error":
                return False
        self.fleet.count("proofs")
        return True

    async def logout(self) -> None:
        if self.grant is not None:
            self.grant.let_go = clock()
        await self.send({"type": "logout"})
        await self.answer("bye")
        await self.close()

    def drop(self, let_go: bool = True) -> None:
        """Lose the connection abruptly, as a device that crashed."""
        if let_go and self.grant is not None and self.grant.let_go is None:
            self.grant.let_go = clock()
        self.ws.transport.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await self.ws.close()
        self.drop(let_go=False)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class Choices:
    """How actors behave; probabilities of the end of a hold."""

    hold: tuple[float, float] = (0.1, 0.6)  # seconds between proofs while holding
    proofs: tuple[int, int] = (1, 3)
    logout: float = 0.6
    drop: float = 0.15  # the rest: take over from the other device
    backoff: tuple[float, float] = (0.1, 0.5)  # after a refusal or a lost line


class Actor:
    """One user, with a home and an alternative device."""

    def __init__(self, fleet: Fleet, member: Member) -> None:
        self.fleet = fleet
        self.member = member
        self.devices = (f"{member.id[:8]}-home", f"{member.id[:8]}-alt")
        self.device = self.devices[0]
        self.line: Line | None = None
        self.ambiguous = False  # a takeover was asked and not answered
        self.rng = random.Random(member.id)

    async def run(self) -> None:
        while not self.fleet.stopping:
            await self.fleet.resumed.wait()
            if self.fleet.stopping:
                break
            try:
                await self._step()
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                self.fleet.count("connect_failures")
                await self._pause()
        if self.line is not None and self.line.open:
            await self.line.logout()

    async def _pause(self) -> None:
        await asyncio.sleep(self.rng.uniform(*self.fleet.choices.backoff))  # pacing

    async def _open(self, device: str) -> Line:
        url = self.rng.choice(self.fleet.urls)
        ws = await connect(
            url.replace("http://", "ws://", 1) + "/ws/device",
            proxy=None,
            compression=None,
            ping_interval=None,
            open_timeout=ANSWER_TIMEOUT,
            close_timeout=1,
        )
        return Line(self.fleet, self.member, device, url, ws)

    async def _step(self) -> None:
        if self.line is None or not self.line.open:
            self.line = None
            line = await self._open(self.device)
            takeover = self.ambiguous
            self.fleet.count("logins")
            answer = await line.login(takeover=takeover)
            self.ambiguous = False
            if answer.get("type") != "welcome":
                self.fleet.count(f"refused:{answer.get('code', 'closed')}")
                await line.close()
                await self._pause()
                return
            self.fleet.count("welcomes")
            self.line = line
        await self._hold(self.line)

    async def _hold(self, line: Line) -> None:
        choices = self.fleet.choices
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
        answer = await new.login(takeover=True)
        if answer.get("type") == "welcome":
            self.ambiguous = False
            self.line, self.device = new, other
            ended = await line.answer("session_ended")
            if ended is CLOSED or ended.get("reason") != "taken_over":
                self.fleet.count("takeovers_not_told")
            await line.close()
        else:
            self.fleet.count(f"refused:{answer.get('code', 'closed')}")
            if answer is not CLOSED:
                self.ambiguous = False
            await new.close()


@dataclass
class Fleet:
    """Actors for `members` against servers at `urls` (mutable: nodes come and go)."""

    urls: list[str]
    members: list[Member]
    choices: Choices = field(default_factory=Choices)
    grants: list[Grant] = field(default_factory=list)
    proofs: list[Proof] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.resumed = asyncio.Event()
        self.resumed.set()
        self.actors = [Actor(self, member) for member in self.members]
        self._tasks: list[asyncio.Task[None]] = []

    def count(self, what: str) -> None:
        self.counts[what] += 1

    def start(self) -> None:
        self._tasks = [asyncio.create_task(actor.run()) for actor in self.actors]

    def hold_back(self) -> None:
        """Actors that lose their line wait for `resume` before trying again."""
        self.resumed.clear()

    def resume(self) -> None:
        self.resumed.set()

    async def stop(self) -> None:
        self.stopping = True
        self.resumed.set()
        try:
            async with asyncio.timeout(4 * ANSWER_TIMEOUT):
                await asyncio.gather(*self._tasks)
        except TimeoutError:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for actor in self.actors:
            if actor.line is not None:
                await actor.line.close()

    def lines(self) -> list[Line]:
        return [a.line for a in self.actors if a.line is not None]

    async def lines_closed(self, timeout: float, url: str | None = None) -> bool:
        """Wait until every line (to `url`, if given) has seen its connection close."""
        return await poll_until(
            lambda: not any(line.open for line in self.lines() if url in (None, line.url)),
            timeout,
        )

    def live_grants(self) -> list[Grant]:
        """Grants whose holders lost their line without letting go or being told
        of an end: the server must keep them. Users with an unanswered takeover
        are left out: which of their devices holds the seat is unknown."""
        live = []
        for actor in self.actors:
            grant = actor.line.grant if actor.line is not None else None
            if actor.ambiguous or grant is None:
                continue
            if grant.ended is None and grant.let_go is None and grant.lost is not None:
                live.append(grant)
        return live


class PresencePoller:
    """Reads presence every `period` s: each lease seen is a proof, and each
    snapshot must show at most one holder per seat and one seat per user."""

    def __init__(self, fleet: Fleet, admin_token: str, domain: str, period: float = 0.25) -> None:
        self.fleet = fleet
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        self.domain = domain
        self.period = period
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

    def _check(self, snapshot: dict[str, Any], sent: float) -> None:
        self.snapshots += 1
        for pool in snapshot["pools"]:
            seats = [h["seat"] for h in pool["holders"]]
            users = [h["user"]["id"] for h in pool["holders"]]
            if len(set(seats)) != len(seats) or len(set(users)) != len(users):
                self.faults.append(f"presence shows a seat or user twice: {pool['holders']}")
            if pool["occupied"] > pool["seats"]:
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
