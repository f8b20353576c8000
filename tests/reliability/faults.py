"""Fault runs under a churning fleet of devices (see `churn.py`).

`kill_loop` kills the SQLite server with SIGKILL again and again on the same
database while devices log in and out, and after every restart checks that no
acknowledged grant was lost: each holder whose connection died with the
server finds its lease in presence right after the restart, and logging in
again from the same device gets the same seat with a higher fencing token.
The whole history then goes through the per-seat checker.

`node_faults` does the same kind of run on two nodes sharing PostgreSQL: a
node killed, a node paused past the lease TTL, and the database stopped and
started again under load.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from servers import ServerProcess, free_port, new_admin_token

from .churn import Choices, churners, live_grants, seat_pool
from .fleet import Fleet, PresencePoller, poll_until
from .history import Grant, Verdict, check
from .lines import clock

Say = Callable[[str], None]


def quiet(text: str) -> None:
    del text


async def presence(base_url: str, admin_token: str, domain: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(headers=headers, trust_env=False, timeout=5.0) as http:
        answer = await http.get(f"{base_url}/api/v1/domains/{domain}/presence")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


def holders(snapshot: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {
        (pool["id"], holder["seat"]): holder["lease_id"]
        for pool in snapshot["pools"]
        for holder in pool["holders"]
    }


@dataclass
class Cycle:
    """One fault and what followed it."""

    fault: str
    at: float = 0.0  # when it was injected, on the clients' clock
    live: int = 0  # acknowledged grants whose holders' connections died with it
    missing: list[str] = field(default_factory=list)  # not in presence after the restart
    not_reclaimed: list[str] = field(default_factory=list)
    down_seconds: float = 0.0  # from the fault until the server answered again
    reclaim_seconds: float = 0.0  # from the restart until the last holder had its seat back
    notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return len(self.missing) + len(self.not_reclaimed)


@dataclass
class Run:
    """A fault run's figures."""

    name: str
    users: int
    seats: int
    lease_ttl: float
    cycles: list[Cycle] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    verdict: Verdict = field(default_factory=Verdict)
    presence_faults: list[str] = field(default_factory=list)
    snapshots: int = 0
    seconds: float = 0.0
    grants: list[Grant] = field(default_factory=list)  # everything the clients were told

    def record(self, fleet: Fleet, poller: PresencePoller, seconds: float) -> None:
        """Take what the clients saw, and the history checker's verdict on it."""
        self.counts = fleet.counts
        self.presence_faults = poller.faults
        self.snapshots = poller.snapshots
        self.grants = fleet.grants
        self.verdict = check(fleet.grants, fleet.proofs)
        self.seconds = seconds

    @property
    def lost(self) -> int:
        return sum(cycle.lost for cycle in self.cycles)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.verdict.ok and not self.presence_faults

    def problems(self) -> list[str]:
        found = [f"{c.fault}: {m}" for c in self.cycles for m in c.missing + c.not_reclaimed]
        return [
            *found,
            *self.verdict.double_holders,
            *self.verdict.overlaps,
            *self.verdict.fencing,
            *self.presence_faults,
        ]


def next_grant(fleet: Fleet, grant: Grant, after: float) -> Grant | None:
    """The first grant of `grant`'s user welcomed after `after`."""
    later = [g for g in fleet.grants if g.user == grant.user and g.welcomed > after]
    return min(later, key=lambda g: g.welcomed, default=None)


async def reclaims(
    fleet: Fleet, live: list[Grant], since: float, timeout: float, cycle: Cycle
) -> None:
    """Each live grant's holder must get the same seat back, from the same device."""
    await poll_until(lambda: all(next_grant(fleet, g, since) for g in live), timeout)
    latest = since
    for grant in live:
        again = next_grant(fleet, grant, since)
        holder = f"{grant.user} seat {grant.seat} (token {grant.fencing_token})"
        if again is None:
            cycle.not_reclaimed.append(f"{holder}: no welcome within {timeout:.0f} s")
        elif (again.seat, again.device) != (grant.seat, grant.device):
            cycle.not_reclaimed.append(f"{holder}: got seat {again.seat} on {again.device}")
        elif again.fencing_token <= grant.fencing_token:
            cycle.not_reclaimed.append(f"{holder}: token {again.fencing_token} not higher")
        else:
            latest = max(latest, again.welcomed)
    cycle.reclaim_seconds = latest - since


async def kill_loop(
    workdir: Path,
    cycles: int,
    *,
    users: int = 30,
    seats: int = 10,
    lease_ttl: int = 5,
    churn: tuple[float, float] = (2.0, 4.0),
    seed: int = 7,
    say: Say = quiet,
) -> Run:
    """SIGKILL the SQLite server `cycles` times under load; see the module docstring."""
    started = clock()
    run = Run("kill -9 of the SQLite server", users, seats, lease_ttl)
    process = ServerProcess(workdir, lease_ttl=lease_ttl)
    rng = random.Random(seed)
    await asyncio.to_thread(process.start)
    fleet: Fleet | None = None
    poller: PresencePoller | None = None
    try:
        server = process.server
        domain, members = await seat_pool(process, users, seats)
        fleet = Fleet([server.base_url])
        poller = PresencePoller(fleet, server.admin_token, domain)
        churners(fleet, members, Choices())
        poller.start()
        for number in range(1, cycles + 1):
            await asyncio.sleep(rng.uniform(*churn))  # the load runs
            cycle = Cycle(f"kill {number}", clock())
            run.cycles.append(cycle)
            fleet.hold_back()
            killed = clock()
            await asyncio.to_thread(process.kill)
            if not await fleet.lines_closed(10.0):
                cycle.notes.append("some connections outlived the server")
            live = live_grants(fleet)
            cycle.live = len(live)
            await asyncio.to_thread(process.start)
            restarted = clock()
            cycle.down_seconds = restarted - killed
            seen = holders(await presence(server.base_url, server.admin_token, domain))
            for grant in live:
                if seen.get(grant.seat_key) != grant.lease_id:
                    cycle.missing.append(
                        f"lease {grant.lease_id} of {grant.user} on seat {grant.seat} "
                        f"(token {grant.fencing_token}) missing; presence shows "
                        f"{seen.get(grant.seat_key)}"
                    )
            fleet.resume()
            await reclaims(fleet, live, restarted, lease_ttl, cycle)
            say(
                f"  {cycle.fault}: {cycle.live} live grants, {cycle.lost} lost, restart "
                f"{cycle.down_seconds:.2f} s, reclaimed in {cycle.reclaim_seconds:.2f} s"
            )
    finally:
        try:
            if poller is not None:
                await poller.stop()
            if fleet is not None:
                await fleet.stop()
                await fleet.close_lines()
        finally:
            await asyncio.to_thread(process.stop)
    run.record(fleet, poller, clock() - started)
    return run


# Two nodes on PostgreSQL.


class Postgres:
    """A PostgreSQL server of the run's own, which can be stopped and started
    again on the same data directory and port (see `tests/pg.py`)."""

    def __init__(self) -> None:
        from pg import _bindir, _initdb, _owner

        self.bindir, self.owner = _bindir(), _owner()
        # Not under the run's directory: the server may run as another user.
        self.root = root = Path(tempfile.mkdtemp(prefix="presence-pg-"))
        self.port = free_port()
        self.log = root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None
        if self.owner:
            os.chown(root, self.owner["user"], self.owner["group"])
        _initdb(self.bindir, root / "data", self.owner)

    def start(self) -> None:
        from pg import SETTINGS, PostgresServer, _wait_until_ready

        options = [arg for key, value in SETTINGS.items() for arg in ("-c", f"{key}={value}")]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.bindir / "postgres",
                    "-D",
                    self.root / "data",
                    "-p",
                    str(self.port),
                    "-k",
                    self.root,
                    *options,
                ],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                **self.owner,
            )
        _wait_until_ready(PostgresServer(self.bindir, self.root, self.port), self.process)

    def stop(self) -> None:
        """Fast shutdown: every client is disconnected."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        from pg import PostgresServer

        return PostgresServer(self.bindir, self.root, self.port).create_database()


async def healthy(url: str, timeout: float) -> float | None:
    """Seconds until `url`/healthz answers 200, or None."""
    started = clock()
    async with httpx.AsyncClient(trust_env=False, timeout=1.0) as http:
        while clock() - started < timeout:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return clock() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling the node
    return None


async def node_faults(
    workdir: Path,
    faults: list[str],
    *,
    users: int = 30,
    seats: int = 10,
    lease_ttl: int = 3,
    churn: tuple[float, float] = (2.0, 4.0),
    seed: int = 11,
    say: Say = quiet,
) -> Run:
    """Faults on two nodes sharing PostgreSQL, one after the other, under load.

    `faults` are `kill` (SIGKILL node A, start it again), `pause` (SIGSTOP node A
    for lease_ttl + 2 s, then SIGCONT) and `database:SECONDS` (stop PostgreSQL,
    start it again after SECONDS, by default the lease TTL). The nodes' logs are
    in `workdir`/node-a and node-b.
    """
    started = clock()
    run = Run("two nodes on PostgreSQL", users, seats, lease_ttl)
    postgres = Postgres()
    admin_token = new_admin_token()
    nodes: dict[str, ServerProcess] = {}
    rng = random.Random(seed)
    fleet: Fleet | None = None
    poller: PresencePoller | None = None
    try:
        await asyncio.to_thread(postgres.start)
        database = await asyncio.to_thread(postgres.create_database)
        for name in "ab":
            nodes[name] = ServerProcess(
                workdir / f"node-{name}",
                database=database,
                admin_token=admin_token,
                lease_ttl=lease_ttl,
            )
            nodes[name].launch()
        for node in nodes.values():
            await asyncio.to_thread(node.wait_until_healthy)
        domain, members = await seat_pool(nodes["a"], users, seats)
        fleet = Fleet([node.base_url for node in nodes.values()])
        poller = PresencePoller(fleet, admin_token, domain)
        churners(fleet, members, Choices())
        poller.start()
        for number, fault in enumerate(faults, 1):
            await asyncio.sleep(rng.uniform(*churn))  # the load runs
            cycle = Cycle(f"{fault} {number}", clock())
            run.cycles.append(cycle)
            if fault == "kill":
                await _kill_node(fleet, nodes["a"], cycle, lease_ttl)
            elif fault == "pause":
                await _pause_node(fleet, nodes["a"], cycle, lease_ttl)
            else:
                outage = float(fault.partition(":")[2] or lease_ttl)
                await _restart_database(fleet, postgres, list(nodes.values()), cycle, outage)
            say(
                f"  {cycle.fault}: {cycle.live} live grants, {cycle.lost} lost, back in "
                f"{cycle.down_seconds:.2f} s{'; ' if cycle.notes else ''}"
                f"{'; '.join(cycle.notes)}"
            )
        await asyncio.sleep(rng.uniform(*churn))  # the load runs on the healed cluster
        welcomes = fleet.counts["welcomes"]
        await poll_until(lambda: fleet.counts["welcomes"] > welcomes, 10.0)
        if fleet.counts["welcomes"] == welcomes:
            run.cycles[-1].notes.append("no device logged in after the last fault")
    finally:
        try:
            if poller is not None:
                await poller.stop()
            if fleet is not None:
                await fleet.stop()
                await fleet.close_lines()
        finally:
            for node in nodes.values():
                await asyncio.to_thread(node.stop)
            await asyncio.to_thread(postgres.remove)
    run.record(fleet, poller, clock() - started)
    return run


async def _kill_node(fleet: Fleet, node: ServerProcess, cycle: Cycle, lease_ttl: int) -> None:
    """SIGKILL node A: its devices log in again through B and keep their seats;
    then A starts again and takes devices again."""
    fleet.hold_back()
    killed = clock()
    fleet.urls.remove(node.server.base_url)
    await asyncio.to_thread(node.kill)
    if not await fleet.lines_closed(10.0, node.server.base_url):
        cycle.notes.append("some connections outlived node A")
    live = live_grants(fleet)
    cycle.live = len(live)
    fleet.resume()
    await reclaims(fleet, live, killed, lease_ttl, cycle)
    await asyncio.to_thread(node.start)
    cycle.down_seconds = clock() - killed
    fleet.urls.append(node.base_url)


async def _pause_node(fleet: Fleet, node: ServerProcess, cycle: Cycle, lease_ttl: int) -> None:
    """SIGSTOP node A past the lease TTL: its devices give up on it and log in
    through B; when A runs again it must not serve the seats it lost."""
    paused = clock()
    await asyncio.to_thread(node.pause)
    try:
        await asyncio.sleep(lease_ttl + 2.0)  # the fault's length, not a wait for a condition
    finally:
        await asyncio.to_thread(node.resume)
    back = await healthy(node.server.base_url, 30.0)
    cycle.down_seconds = clock() - paused
    if back is None:
        cycle.notes.append("node A never answered again after the pause")


async def _restart_database(
    fleet: Fleet, postgres: Postgres, nodes: list[ServerProcess], cycle: Cycle, outage: float
) -> None:
    """Stop PostgreSQL under load for `outage` s; the nodes must serve again after."""
    stopped = clock()
    await asyncio.to_thread(postgres.stop)
    await asyncio.sleep(outage)  # the fault's length, not a wait for a condition
    await asyncio.to_thread(postgres.start)
    waits = [await healthy(node.server.base_url, 60.0) for node in nodes]
    cycle.down_seconds = clock() - stopped
    if any(wait is None for wait in waits):
        cycle.notes.append("a node never reported healthy again")
    welcomes = fleet.counts["welcomes"]
    if not await poll_until(lambda: fleet.counts["welcomes"] > welcomes, 30.0):
        cycle.notes.append("no device could log in within 30 s of the database's return")
