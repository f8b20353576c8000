"""Webhooks delivered at least once across kill -9 (spec section 8), and the
checker of what a receiver got.

`kill_campaign` runs the SQLite server (`PRESENCE_WEBHOOK_ALLOW_PRIVATE=1`)
with one endpoint at the receiver of `tests/webhooks/receiver.py`, a process
of its own that outlives every server, while seat users churn (`churn.py`)
and keep the event log growing. It kills the server with SIGKILL while it
delivers and starts it again on the same database, N times, in turn: while
the receiver holds a request unanswered (mode `hang`: that event was not
delivered and must come again), and at a random moment right after the
receiver logged a request it answered 200 (the server may die before noting
it). Then the devices go, and it waits until every event the domain logged
after the endpoint's creation has reached the receiver.

`check` judges what an endpoint got against the events that had to reach it,
on plain records, so the cluster tests (`tests/cluster/test_webhooks.py`) use
it too:

- lost: an event of the log that no 2xx-answered request carried (none allowed);
- disorder: first arrivals not in id order (none allowed);
- wrong: a request that is not the event as the events API gives it, not
  signed with the endpoint's secret, or of an event the endpoint was not to get;
- duplicates: an event that arrived more than once. Only a crash may cause
  one: between two arrivals of an event a node must have been killed, and the
  earlier arrival must have come at most `NEAR` s before that kill (the node
  delivered it and died before it noted so). Any other is `unexplained`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from server.client import Domain, Harness, Message, ok, parse_utc
from servers import ServerProcess
from standardwebhooks.webhooks import Webhook
from webhooks.hooks import Received, ReceiverProcess, Webhooks, events_after, last_event_id

from .agreement import Settled, settle
from .churn import Choices, churners, seat_pool
from .faults import Say, quiet
from .fleet import Fleet, poll_until

#: Seconds before a kill within which an event that arrives again after the
#: restart must first have arrived: what the killed node delivered and had not
#: noted yet. Generous: a node notes each delivery within milliseconds.
NEAR = 2.0
#: Seconds the receiver may take to log a request a node sent just before it
#: was killed (the receiver stamps a request when it has read it).
LAG = 0.5
#: Requests logged later than this after a kill (s) came from the restarted
#: node, not from the one killed (whose last one the receiver may log late).
RESUMED_AFTER = 0.05
#: Seconds after the load ends within which every event must have arrived.
DRAIN_TIMEOUT = 60.0
#: Seconds to wait for the receiver to log a request before a kill.
DELIVERING_TIMEOUT = 10.0
#: Where the campaign's endpoint points, under the receiver's prefix.
HOOK = "hook"
ALLOW_PRIVATE = {"PRESENCE_WEBHOOK_ALLOW_PRIVATE": "1"}


@dataclass(frozen=True)
class Kill:
    """A node killed with SIGKILL: dead at `at` (epoch seconds, the clock the
    receiver stamps requests with)."""

    at: float
    label: str


@dataclass
class Verdict:
    """What `check` found."""

    events: int = 0  # events that had to arrive
    requests: int = 0  # requests answered 2xx
    lost: list[int] = field(default_factory=list)
    disorder: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    duplicates: Counter[int] = field(default_factory=Counter)  # event id: extra arrivals
    unexplained: list[str] = field(default_factory=list)
    explained_by: Counter[str] = field(default_factory=Counter)  # kill label: duplicates
    #: For each explained duplicate, how long before its kill the earlier arrival came.
    before_kill: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.disorder or self.wrong or self.unexplained)

    def problems(self) -> list[str]:
        lost = [f"event {event_id} never arrived" for event_id in self.lost]
        return [*lost, *self.disorder, *self.wrong, *self.unexplained]

    def summary(self) -> str:
        extra = sum(self.duplicates.values())
        return (
            f"{self.events} events, {self.requests} requests answered 2xx, "
            f"{len(self.lost)} lost, {len(self.disorder)} out of order, {len(self.wrong)} wrong, "
            f"{extra} duplicates ({len(self.unexplained)} not explained by a kill)"
        )


def signed(received: Received, secret: str) -> bool:
    """Whether a `v1` signature of `received` is the one `secret` makes (checked
    without the verifier's five-minute window, so that a long run's requests
    can be checked at its end)."""
    if not (received.webhook_id and received.timestamp and received.signature):
        return False
    try:
        moment = datetime.fromtimestamp(int(received.timestamp), UTC)
    except ValueError:
        return False
    expected = Webhook(secret).sign(received.webhook_id, moment, received.body)
    return expected in received.signature.split(" ")


def fault_in(received: Received, event: Message, secret: str) -> str | None:
    """What is wrong with `received` as the delivery of `event`, or None."""
    if received.method != "POST":
        return f"method {received.method}"
    if not received.headers.get("content-type", "").startswith("application/json"):
        return f"content-type {received.headers.get('content-type')!r}"
    if not signed(received, secret):
        return "signature does not verify"
    try:
        payload = received.payload
        same_time = parse_utc(payload["timestamp"]) == parse_utc(event["at"])
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        return f"body {received.body[:200]!r}: {exc!r}"
    if set(payload) != {"type", "timestamp", "data"}:
        return f"body keys {sorted(payload)}"
    if payload["data"] != event:
        return f"data {payload['data']} is not the logged {event}"
    if payload["type"] != event["type"] or not same_time:
        return f"type {payload['type']!r} at {payload['timestamp']!r} for {event}"
    return None


def check(
    events: Sequence[Message],
    received: Sequence[Received],
    secret: str,
    kills: Sequence[Kill] = (),
    *,
    near: float = NEAR,
) -> Verdict:
    """Judge the requests one endpoint `received` (oldest first) against the
    `events` that had to reach it (the log after its creation), given the
    nodes `kills`; see the module docstring."""
    verdict = Verdict(events=len(events))
    logged = {event["id"]: event for event in events}
    last_logged = max(logged, default=0)
    arrivals: defaultdict[int, list[Received]] = defaultdict(list)
    firsts: list[int] = []
    for request in received:
        if request.status is None or not 200 <= request.status < 300:
            continue
        verdict.requests += 1
        try:
            event_id = int(request.webhook_id or "")
        except ValueError:
            verdict.wrong.append(f"webhook-id {request.webhook_id!r}: {request.body[:200]!r}")
            continue
        event = logged.get(event_id)
        if event is None and event_id > last_logged:
            # Logged after `events` was read (a capacity alert of the last
            # second): the request must hold what it says, signed.
            try:
                late = request.payload["data"]
                fault = fault_in(request, late, secret) or (
                    None if late["id"] == event_id else f"data of event {late['id']}"
                )
            except (ValueError, KeyError, TypeError, AssertionError) as exc:
                fault = f"body {request.body[:200]!r}: {exc!r}"
            if fault is not None:
                verdict.wrong.append(f"event {event_id}, logged late: {fault}")
            continue
        if event is None:
            verdict.wrong.append(f"event {event_id} is not one the endpoint had to get")
            continue
        fault = fault_in(request, event, secret)
        if fault is not None:
            verdict.wrong.append(f"event {event_id}: {fault}")
        if not arrivals[event_id]:
            firsts.append(event_id)
        arrivals[event_id].append(request)
    verdict.lost = sorted(set(logged) - set(arrivals))
    for before, after in zip(firsts, firsts[1:], strict=False):
        if after < before:
            verdict.disorder.append(f"event {after} first arrived after event {before}")
    ordered_kills = sorted(kills, key=lambda kill: kill.at)
    for event_id, got in arrivals.items():
        verdict.duplicates[event_id] = len(got) - 1
        for earlier, later in zip(got, got[1:], strict=False):
            why = _unexplained(earlier.received_at, later.received_at, ordered_kills, near)
            if isinstance(why, str):
                verdict.unexplained.append(f"event {event_id} arrived again: {why}")
            else:
                verdict.explained_by[why.label] += 1
                verdict.before_kill.append(why.at - earlier.received_at)
    verdict.duplicates = +verdict.duplicates
    return verdict


def _unexplained(earlier: float, later: float, kills: Sequence[Kill], near: float) -> Kill | str:
    """The kill that explains a second arrival at `later` of what arrived at
    `earlier`, or why none does."""
    kill = next((k for k in kills if k.at + LAG >= earlier), None)
    if kill is None or kill.at >= later:
        return f"at +{later - earlier:.3f} s, with no kill in between"
    if earlier < kill.at - near:
        return (
            f"after {kill.label}, which came {kill.at - earlier:.2f} s after the earlier "
            f"arrival (more than {near:g} s)"
        )
    return kill


# The campaign.


@dataclass
class Cycle:
    """One kill and what followed it."""

    kill: Kill
    in_flight: bool  # killed with a request unanswered, else right after one answered
    delivering: bool = False  # the receiver had just logged such a request when it came
    recent: int = 0  # requests the receiver logged in the second before the kill
    down_seconds: float = 0.0  # from the kill until the server answered again
    resumed_seconds: float | None = None  # from the kill until the next request came
    duplicates: int = 0  # duplicates this kill explains


@dataclass
class Campaign:
    """A kill campaign's figures."""

    lease_ttl: float
    cycles: list[Cycle] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    by_type: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)  # the fleet's
    settled: Settled | None = None
    drained: bool = False  # every event arrived within DRAIN_TIMEOUT
    drain_seconds: float = 0.0  # from the end of the load until then
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.drained and self.verdict.ok

    def problems(self) -> list[str]:
        stuck = [] if self.drained else [f"not all delivered within {DRAIN_TIMEOUT:g} s"]
        return [*stuck, *self.verdict.problems()]

    def summary(self) -> str:
        extra = sum(self.verdict.duplicates.values())
        return (
            f"{self.verdict.events} events, {len(self.cycles)} kills, "
            f"{len(self.verdict.lost)} lost, {extra} duplicates"
        )


async def kill_campaign(
    workdir: Path,
    kills: int,
    *,
    users: int = 12,
    seats: int = 4,
    lease_ttl: float = 3.0,
    load: tuple[float, float] = (1.0, 3.0),
    seed: int | None = None,
    say: Say = quiet,
) -> Campaign:
    """SIGKILL the SQLite server `kills` times while it delivers; see the module docstring."""
    started = time.monotonic()
    rng = random.Random(seed)
    campaign = Campaign(lease_ttl)
    receiver = ReceiverProcess(workdir / "receiver")
    process = ServerProcess(workdir / "server", lease_ttl=lease_ttl, env=ALLOW_PRIVATE)
    fleet: Fleet | None = None
    try:
        await asyncio.to_thread(receiver.start)
        await asyncio.to_thread(process.start)
        domain_id, members = await seat_pool(process, users, seats)
        async with Harness(process.server) as harness:
            domain = Domain(harness, {"id": domain_id})
            # Alerts every second: more kinds of events, logged by the node's own watcher.
            body = {"alert_interval_s": 1, "alert_threshold_pct": 75}
            ok(await domain.api.patch(domain.path("pools", "desk"), body))
            after = await last_event_id(domain)
            endpoint = await Webhooks(domain).create(receiver.url(HOOK))
        fleet = Fleet([process.base_url])
        churners(fleet, members, Choices())
        for number in range(1, kills + 1):
            await _deliver_a_while(receiver, rng.uniform(*load))
            in_flight = number % 2 == 1
            cycle = await _kill(process, receiver, fleet, f"kill {number}", rng, in_flight)
            campaign.cycles.append(cycle)
            how = ("with a request in flight" if in_flight else "right after a 200") + (
                "" if cycle.delivering else ", FOUND NO REQUEST TO KILL AT"
            )
            say(f"  {cycle.kill.label} {how}, restarted in {cycle.down_seconds:.2f} s")
        await _deliver_a_while(receiver, rng.uniform(*load))
        await fleet.stop()
        await fleet.close_lines()
        load_ended = time.monotonic()
        async with Harness(process.server) as harness:
            domain = Domain(harness, {"id": domain_id})
            headers = {"Authorization": f"Bearer {process.server.admin_token}"}
            async with httpx.AsyncClient(
                base_url=process.base_url, headers=headers, trust_env=False, timeout=10.0
            ) as http:
                campaign.settled = await settle(http, domain_id, fleet, lease_ttl)
            events = await drain(domain, receiver, after)
        campaign.drained = events is not None
        campaign.drain_seconds = time.monotonic() - load_ended
        if events is None:
            async with Harness(process.server) as harness:
                events = await events_after(Domain(harness, {"id": domain_id}), after)
    finally:
        try:
            if fleet is not None:
                await fleet.stop()
                await fleet.close_lines()
        finally:
            await asyncio.to_thread(process.stop)
            await asyncio.to_thread(receiver.stop)
    received = receiver.requests(HOOK)
    kills_seen = [cycle.kill for cycle in campaign.cycles]
    campaign.verdict = check(events, received, endpoint["secret"], kills_seen)
    campaign.by_type = Counter(event["type"] for event in events)
    assert fleet is not None
    campaign.counts = fleet.counts
    _per_cycle(campaign, received)
    campaign.seconds = time.monotonic() - started
    return campaign


async def _deliver_a_while(receiver: ReceiverProcess, seconds: float) -> None:
    """Let the load run until the server delivers, and `seconds` more. (A node
    started again takes the endpoint over once the dead one's claim ran out,
    lease_ttl after its last renewal.)"""
    await _delivering(receiver, DELIVERING_TIMEOUT)
    await asyncio.sleep(seconds)  # the load runs, and is delivered


async def _kill(
    process: ServerProcess,
    receiver: ReceiverProcess,
    fleet: Fleet,
    label: str,
    rng: random.Random,
    in_flight: bool,
) -> Cycle:
    """Kill the server while it delivers, and start it again on the same database.

    `in_flight`: while the receiver holds a request unanswered (its event must
    come again); otherwise right after the receiver logged a request it
    answered 200 (a duplicate may follow, if the server had not noted it)."""
    if in_flight:
        await receiver.set_mode("hang")
        delivering = await _holding(receiver, DELIVERING_TIMEOUT)
    else:
        delivering = await _delivering(receiver, DELIVERING_TIMEOUT)
        await asyncio.sleep(rng.uniform(0.0, 0.02))  # where in a delivery the kill falls
    fleet.hold_back()
    killed = time.monotonic()
    await asyncio.to_thread(process.kill)
    cycle = Cycle(Kill(time.time(), label), in_flight, delivering)
    if in_flight:
        await receiver.set_mode("ok")
    await fleet.lines_closed(10.0)
    await asyncio.to_thread(process.start)
    cycle.down_seconds = time.monotonic() - killed
    fleet.resume()
    return cycle


async def _holding(receiver: ReceiverProcess, timeout: float) -> bool:
    """Wait until the receiver holds a request it logged from now on, unanswered."""
    start = _size(receiver.log)

    def held() -> bool:
        with receiver.log.open("rb") as log:
            log.seek(start)
            lines = log.read().splitlines(keepends=True)
        entries = [json.loads(line) for line in lines if line.endswith(b"\n")]
        return any(e["kind"] == "request" and e["status"] is None for e in entries)

    return await poll_until(held, timeout, period=0.005)


async def _delivering(receiver: ReceiverProcess, timeout: float) -> bool:
    """Wait until the receiver logs something new: the server is delivering."""
    size = _size(receiver.log)
    return await poll_until(lambda: _size(receiver.log) > size, timeout, period=0.005)


def _size(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return path.stat().st_size
    return 0


async def drain(
    domain: Domain,
    receiver: ReceiverProcess,
    after: int,
    timeout: float = DRAIN_TIMEOUT,
    name: str = HOOK,
) -> list[Message] | None:
    """Wait until the log stopped growing and every event of it after id `after`
    was answered 2xx at the receiver's path `name`; those events, or None after
    `timeout`."""
    deadline = time.monotonic() + timeout
    known = -1
    while time.monotonic() < deadline:
        events = await events_after(domain, after)
        delivered = {r.webhook_id for r in receiver.delivered(name)}
        if len(events) == known and all(str(e["id"]) in delivered for e in events):
            return events
        known = len(events)
        await asyncio.sleep(0.1)  # polling the log and the receiver
    return None


def _per_cycle(campaign: Campaign, received: list[Received]) -> None:
    """Each kill's figures that only the whole record tells."""
    for cycle in campaign.cycles:
        at = cycle.kill.at
        cycle.recent = sum(at - 1.0 <= r.received_at <= at for r in received)
        later = [r.received_at for r in received if r.received_at > at + RESUMED_AFTER]
        cycle.resumed_seconds = min(later) - at if later else None
        cycle.duplicates = campaign.verdict.explained_by[cycle.kill.label]
