"""`presence serve --workers N`: N nodes in N processes behind one port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from pg import PostgresServer
from server.client import Api, Device, Harness, refused
from servers import ServerProcess
from websockets.exceptions import ConnectionClosed

WORKERS = 2


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(line) for line in found.stdout.split()]


async def test_workers_share_one_port_and_every_rule(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database_url = postgres.create_database()
    node = ServerProcess(tmp_path, database=database_url, flags=("--workers", str(WORKERS)))
    try:
        node.start()
        assert node.process is not None
        assert len(children(node.process.pid)) >= WORKERS  # the workers (and spawn's helper)
        async with Harness(node.server) as harness:
            domain = await harness.new_domain()
            pool = await domain.pool(3)
            members = [await domain.seat_user(pool) for _ in range(12)]
            devices = await asyncio.gather(*(harness.device() for _ in members))
            await asyncio.gather(*(d.hello(m.token) for d, m in zip(devices, members, strict=True)))
            answers = await asyncio.gather(*(d.outcome(15) for d in devices))
            outcomes = Counter(a.get("code", a["type"]) for a in answers)
            assert outcomes == {"welcome": 3, "seat_occupied": 9}
            winner = next(d for d in devices if d.welcome is not None)
            await winner.logout()
            # Every refused device hears of the freed seat, whichever worker holds it.
            for device in devices:
                if device.welcome is None:
                    await device.expect("availability", occupied=2, free=1)
        node.terminate()  # every worker stops, within the shutdown timeout
    finally:
        node.stop()
        postgres.drop_database(database_url)


# The per-address limits hold for the node, whichever worker a client reaches.

CAP = 4
FAILURES = 3
WAIT = 15.0


def workers_of(pid: int) -> list[int]:
    """The worker processes of a supervisor (not spawn's resource tracker)."""
    found = []
    for child in children(pid):
        with contextlib.suppress(FileNotFoundError):
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
    return found


def connections_by_worker(workers: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to `port` each worker holds (from /proc)."""
    established: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                established.add(f"socket:[{fields[9]}]")
    counts = {}
    for pid in workers:
        fds = Path(f"/proc/{pid}/fd")
        counts[pid] = sum(1 for fd in fds.iterdir() if _link(fd) in established)
    return counts


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except FileNotFoundError:  # closed meanwhile
        return ""


async def admitted(device: Device) -> bool:
    """Whether the node let this WebSocket stay open (else: rate_limited, 4429)."""
    with contextlib.suppress(ConnectionClosed):  # refused at once, over the cap
        await device.send({"type": "heartbeat"})
    answer = await device.expect("error", WAIT)
    if answer["code"] == "rate_limited":
        await device.expect_closed(4429)
        return False
    assert answer["code"] == "not_logged_in", answer
    return True


def start_workers(
    postgres: PostgresServer, tmp_path: Path, *flags: str
) -> tuple[ServerProcess, str]:
    database_url = postgres.create_database()
    node = ServerProcess(tmp_path, database=database_url, flags=("--workers", str(WORKERS), *flags))
    node.start()
    return node, database_url


async def test_the_connection_cap_holds_across_workers(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    node, database_url = start_workers(
        postgres, tmp_path, "--max-connections-per-address", str(CAP)
    )
    port = int(node.server.base_url.rsplit(":", 1)[1])
    try:
        async with Harness(node.server) as harness:
            # Three times the cap at once, spread over the workers as the kernel likes.
            devices = await asyncio.gather(
                *(harness.device(heartbeats=False) for _ in range(3 * CAP))
            )
            verdicts = await asyncio.gather(*(admitted(device) for device in devices))
            spread = connections_by_worker(workers_of(node.process.pid), port)
            print(f"\nadmitted {sum(verdicts)} of {len(devices)}; by worker: {spread}")
            assert sum(verdicts) == CAP
            assert sum(spread.values()) == CAP, spread
            held = [device for device, ok in zip(devices, verdicts, strict=True) if ok]

            # With the busiest worker paused, the other takes every new
            # connection, however few it holds itself: all refused.
            busiest = max(spread, key=lambda pid: spread[pid])
            os.kill(busiest, signal.SIGSTOP)
            try:
                more = await asyncio.gather(*(harness.device(heartbeats=False) for _ in range(CAP)))
                assert not any(await asyncio.gather(*(admitted(device) for device in more)))
            finally:
                os.kill(busiest, signal.SIGCONT)

            # A worker killed with connections counted: its count is let go.
            os.kill(busiest, signal.SIGKILL)
            survivors = [device for device in held if await still_open(device)]
            assert len(survivors) == CAP - spread[busiest]
            fresh = await admitted_until(harness, CAP - len(survivors))
            assert not await admitted(await harness.device(heartbeats=False))
            assert len(survivors) + len(fresh) == CAP
    finally:
        node.stop()
        postgres.drop_database(database_url)


async def still_open(device: Device) -> bool:
    try:
        await device.send({"type": "heartbeat"})
        await device.expect_error("not_logged_in", WAIT)
    except (ConnectionClosed, AssertionError):
        return False
    return True


async def admitted_until(harness: Harness, count: int) -> list[Device]:
    """`count` new WebSockets admitted, once the node has let go of closed ones."""
    deadline = time.monotonic() + WAIT
    fresh: list[Device] = []
    while len(fresh) < count:
        device = await harness.device(heartbeats=False)
        if await admitted(device):
            fresh.append(device)
            continue
        assert time.monotonic() < deadline, f"{len(fresh)} of {count} admitted in {WAIT} s"
        await asyncio.sleep(0.1)  # polling: the node has not let go yet
    return fresh


async def test_the_failure_brake_holds_across_workers(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    node, database_url = start_workers(
        postgres, tmp_path, "--auth-failures-per-minute", str(FAILURES)
    )
    try:
        async with Harness(node.server) as harness:
            domain = await harness.new_domain()
            member = await domain.named_user()
            admin_path = domain.path()

            # An office behind one address logs in at once: waits, never refusals.
            office = await asyncio.gather(*(harness.device() for _ in range(30)))
            answers = await asyncio.gather(*(d.login(member.token) for d in office))
            assert Counter(a["type"] for a in answers) == {"welcome": 30}

            # Guesses at once, on both WebSockets and the API: FAILURES are judged.
            guesses = await asyncio.gather(
                *(harness.device(heartbeats=False) for _ in range(4 * FAILURES))
            )
            wrong = harness.api("prs_wrong")
            outcomes = await asyncio.gather(
                *(guess_on_device(d) for d in guesses),
                *(guess_on_api(wrong, admin_path) for _ in range(4 * FAILURES)),
            )
            print(f"\nguesses: {Counter(outcomes)}")
            assert Counter(outcomes) == {
                "unauthorized": FAILURES,
                "rate_limited": 8 * FAILURES - FAILURES,
            }
            # Now every authentication from this address is refused, good ones too.
            late = await harness.device(heartbeats=False)
            assert (await late.login(member.token))["code"] == "rate_limited"
            refused(await harness.admin.get(admin_path), 429, "rate_limited")
            for device in office:  # and those already in carry on
                await device.heartbeat(1)
    finally:
        node.stop()
        postgres.drop_database(database_url)


async def guess_on_device(device: Device) -> str:
    await device.hello("prs_" + os.urandom(16).hex())
    answer = await device.outcome(WAIT)
    code: str = answer["code"]
    await device.expect_closed({"unauthorized": 4401, "rate_limited": 4429}[code])
    return code


async def guess_on_api(api: Api, path: str) -> str:
    answer = await api.get(path)
    code: str = answer.json()["error"]["code"]
    assert answer.status_code == {"unauthorized": 401, "rate_limited": 429}[code], answer.text
    return code


async def test_workers_stop_when_their_supervisor_is_gone(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """No worker outlives a supervisor killed with SIGKILL, holding the port."""
    node, database_url = start_workers(postgres, tmp_path)
    try:
        workers = workers_of(node.process.pid)
        assert len(workers) == WORKERS
        node.kill()
        deadline = time.monotonic() + WAIT
        while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists()]:
            assert time.monotonic() < deadline, f"workers {alive} still run"
            await asyncio.sleep(0.1)  # polling for the exits
    finally:
        node.stop()
        postgres.drop_database(database_url)
