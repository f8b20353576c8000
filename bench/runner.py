"""The whole benchmark in one command: servers, population, scenarios, report.

    python -m bench [--quick] [--sessions N] [--out DIR] ...

It starts ``python -m presence serve`` on a temporary SQLite file, makes the
domains, pools, users and tokens through the admin API, runs the scenarios
(hold, login storm, contention, fan-out), then the same hold and storm
against the bare servers of :mod:`bench.bare`, then the cluster scenario on
two nodes sharing a throwaway PostgreSQL. It prints the table and writes
``results.json`` and ``heartbeat.png`` to ``--out``. Exit status 1 means a
check failed (a count that must be exact), not that a target was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

from presence.cli import GC_THRESHOLD

from . import census, population, report, scenarios
from .fleet import SOURCES, Fleet, plan_sockets
from .servers import AdminApi, Postgres, Process, bare_server, presence_server, running
from .worker import open_files_limit

SCENARIOS = ("hold", "storm", "contention", "fanout", "bare", "cluster")
QUICK = {"sessions": 200, "logins": 100, "cluster_devices": 200, "contenders": 50,
         "fanout": "50,200",
         "rounds": 1, "interval": 0.5}  # fmt: skip
FULL = {"sessions": 10_000, "logins": 5_000, "cluster_devices": 10_000, "contenders": 1_000,
        "fanout": "1000,10000",
        "rounds": 5, "interval": 10.0}  # fmt: skip
#: Domains the second and third cluster storms are spread over.
CLUSTER_DOMAINS = 20
HOLD_STEPS = (0.1, 0.25, 0.5, 1.0)  # of --sessions, the points of the plot


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of a few seconds: " + ", ".join(
                            f"--{k} {v}" for k, v in QUICK.items()))  # fmt: skip
    parser.add_argument("--sessions", type=int, help="sessions held (10,000)")
    parser.add_argument("--logins", type=int, help="logins of the storm (5,000)")
    parser.add_argument("--cluster-devices", type=int,
                        help="devices of each cluster storm (10,000)")  # fmt: skip
    parser.add_argument("--contenders", type=int, help="users racing for the seats (1,000)")
    parser.add_argument("--seats", type=int, default=10, help="seats they race for (10)")
    parser.add_argument("--fanout", help="subscriber counts, comma-separated (1000,10000)")
    parser.add_argument("--rounds", type=int, help="fan-out rounds of two changes (5)")
    parser.add_argument("--interval", type=float, help="seconds between heartbeats (10)")
    parser.add_argument("--window", type=float, help="seconds measured per hold step (interval)")
    parser.add_argument("--concurrency", type=int, default=100, help="logins in flight (100)")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes (2)")
    parser.add_argument(
        "--sources",
        type=int,
        help="source addresses the workers connect from, 127.0.0.2 on "
        f"({SOURCES}, more if their ephemeral ports would not do)",
    )
    parser.add_argument(
        "--census",
        action="store_true",
        help="run the hold's node under bench.census: where a session's memory goes, by type",
    )
    parser.add_argument("--gc-threshold", type=int, metavar="N",
                        help="with --census, the node's young-generation threshold "
                             "instead of its own")  # fmt: skip
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="with --census, also trace allocations (slows the node: "
                             "its other figures do not count)")  # fmt: skip
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="which to run (default all): " + ",".join(SCENARIOS))  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="where to write results.json and heartbeat.png")  # fmt: skip
    options = parser.parse_args(argv)
    for key, value in (QUICK if options.quick else FULL).items():
        if getattr(options, key) is None:
            setattr(options, key, value)
    options.window = options.window or options.interval
    options.fanout = sorted(int(k) for k in options.fanout.split(","))
    options.scenarios = options.scenarios.split(",")
    unknown = set(options.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    if options.tracemalloc or options.gc_threshold:
        options.census = True
    options.sources, options.per_address = plan_sockets(
        parser, devices(options), options.sources, options.workers, slack=len(HOLD_STEPS)
    )
    return options


def devices(options: argparse.Namespace) -> int:
    """The most sockets the fleet holds at once, in any scenario."""
    most: int = max(
        options.sessions, options.logins, options.contenders, options.fanout[-1] + 1,
        options.cluster_devices if "cluster" in options.scenarios else 0,
    )  # fmt: skip
    return most


def machine() -> dict[str, Any]:
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                      if line.startswith("model name")), platform.machine())  # fmt: skip
    with open("/proc/meminfo") as meminfo:
        ram_kib = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    packages = ("uvicorn", "starlette", "websockets", "uvloop", "httptools")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "ram_gib": round(ram_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "packages": {name: version(name) for name in packages},
    }


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "machine": machine(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    started = time.monotonic()
    # Others' processes on the machine skew every figure: keep how busy it was.
    results["load_average_before"] = os.getloadavg()
    results["open_files_limit"] = open_files_limit()
    _say(f"{options.workers} workers connecting from {options.sources:,} addresses")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-") as tmp,
            _fleet(options.workers, options.sources) as fleet,
        ):
            workdir = Path(tmp)
            run_single_node(fleet, workdir, options, results)
            if "bare" in options.scenarios:
                run_bare(fleet, workdir, options, results)
            if "cluster" in options.scenarios:
                run_cluster(fleet, workdir, options, results)
    finally:  # what was measured before a failure is kept
        results["seconds"] = round(time.monotonic() - started, 1)
        results["load_average_after"] = os.getloadavg()
        (options.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if results.get("hold"):
        report.plot(results, options.out / "heartbeat.png")
    print(report.table(results))
    hold = results.get("hold", {}).get("presence", {})
    if "census" in hold:
        print("\n" + report.census(hold["census"]))
    if "collections" in results:
        print("\n" + report.collections(results["collections"], results["gc_threshold"]))
    print(f"\n{results['seconds']:.0f} s; results in {options.out}/")
    failed = _failed_checks(results)
    for failure in failed:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if failed else 0


@contextlib.contextmanager
def _fleet(size: int, sources: int) -> Iterator[Fleet]:
    fleet = Fleet(size, sources)
    try:
        yield fleet
    finally:
        fleet.close()


def _say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def run_single_node(
    fleet: Fleet, workdir: Path, options: argparse.Namespace, results: dict[str, Any]
) -> None:
    token = secrets.token_hex(16)
    database = f"sqlite:///{workdir / 'presence.db'}"
    out = workdir / "census" if options.census else None
    node = presence_server(workdir, "presence", database, token, options.per_address, out,
                           options.tracemalloc, gc_threshold=options.gc_threshold)  # fmt: skip
    with running(node) as server:
        api = AdminApi(server.port, token)
        _say("provisioning domains, pools, users and tokens")
        made = time.monotonic()
        held, seat_users = population.tenants(api, max(options.sessions, 2 * options.logins))
        race = population.race(api, options.seats, options.contenders)
        fan_devices = options.fanout[-1] - _boards(options.fanout[-1])
        holder, fans, board_token = population.fan(api, fan_devices)
        results["provision_s"] = round(time.monotonic() - made, 1)
        held = held[: options.sessions]
        storm_hellos = [population.hello(t, f"storm-{n}") for n, t in enumerate(seat_users)]
        storm_hellos = storm_hellos[: options.logins]
        if "hold" in options.scenarios:
            _say(f"hold: {options.sessions:,} sessions")
            results.setdefault("hold", {})["presence"] = scenarios.hold(
                fleet, server, held, _steps(options.sessions), options.interval, options.window
            )
            scenarios.settle(api)
        if "storm" in options.scenarios:
            _say(f"login storm: {options.logins:,} logins")
            results.setdefault("storm", {})["presence"] = scenarios.storm(
                fleet, [server], storm_hellos, options.concurrency, options.interval
            )
            scenarios.settle(api)
        if "contention" in options.scenarios:
            _say(f"contention: {options.contenders:,} users for {options.seats} seats")
            results["contention"] = scenarios.contention(fleet, server, race, options.seats)
            scenarios.settle(api)
        if "fanout" in options.scenarios:
            results["fanout"] = _fanouts(fleet, [server], holder, fans, board_token, options)
            scenarios.settle(api)
        if server.census is not None:  # the collector's passes over every scenario
            results["collections"] = census.take(server.pid, server.census)["collections"]
            results["gc_threshold"] = options.gc_threshold or GC_THRESHOLD
        api.close()


def _fanouts(
    fleet: Fleet,
    servers: list[Process],
    holder: population.Hello,
    devices: list[population.Hello],
    board_token: str,
    options: argparse.Namespace,
) -> dict[str, Any]:
    """Fan-out at each subscriber count, growing the same subscribers."""
    figures = {}
    scenarios.start_fanout(fleet, servers, holder, options.interval)
    opened_devices = opened_boards = 0
    for k in options.fanout:
        _say(f"fan-out: {k:,} subscribers")
        boards = _boards(k)
        figures[str(k)] = scenarios.fanout(
            fleet, servers, holder, devices[opened_devices : k - boards],
            boards - opened_boards, board_token, options.rounds, options.interval,
        )  # fmt: skip
        opened_devices, opened_boards = k - boards, boards
    for group in ("holder", "fan", "boards"):
        fleet.call_all("close", group=group)
    return figures


def _boards(subscribers: int) -> int:
    """One subscriber in a hundred is a wallboard."""
    return max(1, subscribers // 100)


def _steps(sessions: int) -> list[int]:
    return sorted({max(1, round(sessions * share)) for share in HOLD_STEPS})


def run_bare(
    fleet: Fleet, workdir: Path, options: argparse.Namespace, results: dict[str, Any]
) -> None:
    """The hold and the storm against each bare server: their hellos need no token."""
    hellos = [population.hello("bare", f"bare-{n}") for n in range(options.sessions)]
    for kind in report.BARE:
        with running(bare_server(workdir, kind)) as server:
            if "hold" in options.scenarios:
                _say(f"hold: {options.sessions:,} sessions on bare {kind}")
                results.setdefault("hold", {})[kind] = scenarios.hold(
                    fleet, server, hellos, _steps(options.sessions), options.interval,
                    options.window,
                )  # fmt: skip
            if "storm" in options.scenarios:
                _say(f"login storm: {options.logins:,} on bare {kind}")
                results.setdefault("storm", {})[kind] = scenarios.storm(
                    fleet, [server], hellos[: options.logins], options.concurrency,
                    options.interval,
                )  # fmt: skip


def run_cluster(
    fleet: Fleet, workdir: Path, options: argparse.Namespace, results: dict[str, Any]
) -> None:
    """The storm and the fan-out with two nodes on one PostgreSQL database."""
    try:
        postgres = Postgres()
    except (RuntimeError, OSError) as exc:
        results["cluster"] = {"skipped": str(exc)}
        return
    try:
        token = secrets.token_hex(16)
        with contextlib.ExitStack() as stack:
            nodes = []
            for name in ("node-a", "node-b"):
                try:  # a node that started is stopped with the stack, whatever follows
                    nodes.append(stack.enter_context(running(presence_server(
                        workdir, name, postgres.url(), token, options.per_address))))  # fmt: skip
                except RuntimeError as exc:
                    results["cluster"] = {"skipped": f"{name} did not start: {exc}"}
                    return
            api = AdminApi(nodes[0].port, token)
            devices = options.cluster_devices
            _say(f"cluster: provisioning on PostgreSQL ({devices:,} devices in one domain, "
                 f"{devices:,} in {CLUSTER_DOMAINS})")  # fmt: skip
            crowd, _ = population.tenants(api, devices, size=devices, name="crowd")
            spread, _ = population.tenants(
                api, devices, size=math.ceil(devices / CLUSTER_DOMAINS), name="spread"
            )
            fan_devices = options.fanout[-1] - _boards(options.fanout[-1])
            holder, fans, board_token = population.fan(api, fan_devices)
            storms = {}
            for name, servers, hellos in (
                ("one domain, 2 nodes", nodes, crowd),
                (f"{CLUSTER_DOMAINS} domains, 1 node", nodes[:1], spread),
                (f"{CLUSTER_DOMAINS} domains, 2 nodes", nodes, spread),
            ):
                _say(f"cluster: login storm of {len(hellos):,}, {name}")
                postgres_before = postgres.cpu()
                storm = scenarios.storm(
                    fleet, servers, hellos, options.concurrency, options.interval
                )
                storm["postgres_cpu_per_login"] = (postgres.cpu() - postgres_before) / len(hellos)
                storms[name] = storm
                scenarios.settle(api)
            fanout = _fanouts(fleet, nodes, holder, fans, board_token, options)
            results["cluster"] = {"storms": storms, "fanout": fanout}
            api.close()
    finally:
        postgres.stop()


def _failed_checks(results: dict[str, Any]) -> list[str]:
    """Counts that must be exact; a miss means the benchmark or the server is broken."""
    failed = []
    race = results.get("contention")
    if race and not race["ok"]:
        failed.append(f"contention granted {race['granted']} of {race['seats']} seats, "
                      f"refused {race['refused']}")  # fmt: skip
    logins = [(f"{scenario} on {server}", figures) for scenario in ("hold", "storm")
              for server, figures in results.get(scenario, {}).items()]  # fmt: skip
    for name, storm in results.get("cluster", {}).get("storms", {}).items():
        logins.append((f"cluster storm, {name}", storm))
    for name, figures in logins:
        if set(figures["answers"]) != {"welcome"}:
            failed.append(f"{name}: answers {figures['answers']}")
    for where in (results, results.get("cluster", {})):
        for k, fan in where.get("fanout", {}).items():
            if fan["missing"]:
                failed.append(f"fan-out {k}: {fan['missing']} deliveries missing")
    return failed
