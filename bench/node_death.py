"""How fast devices get their seats back when the node they are on dies.

Starts a throwaway PostgreSQL and two nodes on it, A and B (lease TTL and
heartbeat interval from ``--lease-ttl`` and ``--heartbeat-interval``, the
server's defaults unless given, passed as ``PRESENCE_LEASE_TTL`` and
``PRESENCE_HEARTBEAT_INTERVAL``), provisions ``--domains`` domains of seat and
named users (half the devices each, every seat user with a seat of its own,
as :func:`bench.population.tenants` makes them), and logs every device in on
A, heartbeating. Then it kills A with SIGKILL. Each device notices the lost
connection and logs in again on B with the same hello (token and device id),
waiting before each try as the client library does (:class:`bench.worker.Backoff`).

It prints and writes to ``--out`` (``results.json``, ``regain.png``): when
the last device was welcomed on B after the kill, the p50 and p99 of those
times, the share of devices back against time, how many seat users got the
seat they held on A, the tries and why those that failed did: the error's
code (``unavailable``: the node sheds a login storm), or the exception
(``TimeoutError``: no connection, or no answer to hello, within the 10 s the
client library waits for each; ``ConnectionResetError``...), and the CPU
that node B, PostgreSQL and the load generator used until every device was
back.

Checks, whose failure makes the exit status 1: every device was welcomed on B
and still holds a lease TTL later (no lease left behind on A expired a seat
given back); no seat was held twice at any moment, by the domains' event logs
read through B's admin API (per pool and seat, each grant follows a free, or
replaces the same user and device), and every seat user holds a seat at the
end of the log; fencing tokens in the welcomes are unique and increase per
seat. The target, every device welcomed on B within ``lease_ttl`` + 10 s of
the kill and every seat user on the seat it held on A, is printed met or
missed, and makes the exit status 1 only with ``--strict``: timing depends on
the machine and on what else runs on it, so the smoke test leaves it out.
Exit status 2: no PostgreSQL to run.

    python -m bench.node_death [--devices 10000] [--domains 20] [--lease-ttl 30]
        [--heartbeat-interval 10] [--workers 2] [--sources 500] [--out DIR] [--strict]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from presence.config import Config

from . import population
from .fleet import COMMAND_TIMEOUT, Fleet, plan_sockets, split
from .scenarios import WARM_UP, percentile
from .servers import AdminApi, Postgres, Process, presence_server, running
from .worker import Backoff

#: The target: every device back within the lease TTL plus this, after the kill.
TARGET_MARGIN = 10.0
#: Devices not back this long after the target stop trying: a check fails.
GIVE_UP = 60.0
#: Domains provisioned at once, each over its own admin connection.
PROVISIONERS = 4
#: Logins in flight per worker while the devices first log in on A.
CONCURRENCY = 50
#: The event types that free a seat (``license_changed`` only with a seat).
FREES = frozenset({"seat_released", "lease_expired", "taken_over", "idle_logoff",
                   "released_by_admin", "license_changed"})  # fmt: skip
EVENT_PAGE = 1000


@dataclass(frozen=True)
class Member:
    """A device, and the domain it belongs to (welcomes do not name it)."""

    domain: str
    hello: population.Hello
    seat_user: bool


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.node_death", description=__doc__.split("\n")[0]
    )
    defaults = Config()
    parser.add_argument("--devices", type=int, default=10_000, help="devices (10,000)")
    parser.add_argument("--domains", type=int, default=20, help="domains they are in (20)")
    parser.add_argument(
        "--lease-ttl",
        type=float,
        help=f"the nodes' lease TTL (the server's {defaults.lease_ttl:g})",
    )
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        help=f"seconds between heartbeats (the server's {defaults.heartbeat_interval:g}, "
        "or a third of the lease TTL if that is less)",
    )
    parser.add_argument("--workers", type=int, default=2, help="load generator processes (2)")
    parser.add_argument(
        "--sources",
        type=int,
        help="source addresses the workers connect from, 127.0.0.2 on "
        "(enough for the ephemeral ports, at least 500)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit status 1 when the target is missed, too"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="where to write results.json and regain.png",
    )
    options = parser.parse_args(argv)
    options.lease_ttl_given = options.lease_ttl is not None
    options.lease_ttl = options.lease_ttl or defaults.lease_ttl
    options.heartbeat_interval = options.heartbeat_interval or min(
        defaults.heartbeat_interval, options.lease_ttl / 3
    )
    if not 1 <= options.domains <= options.devices:
        parser.error("need 1 <= --domains <= --devices")
    if options.heartbeat_interval >= options.lease_ttl:
        parser.error("--heartbeat-interval must be shorter than --lease-ttl")
    if options.lease_ttl + TARGET_MARGIN + GIVE_UP >= COMMAND_TIMEOUT:
        parser.error(f"--lease-ttl must be under {COMMAND_TIMEOUT - TARGET_MARGIN - GIVE_UP:g}")
    options.sources, options.per_address = plan_sockets(
        parser, options.devices, options.sources, options.workers
    )
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    try:
        postgres = Postgres()
    except (RuntimeError, OSError) as exc:
        print(f"node_death needs PostgreSQL: {exc}", file=sys.stderr)
        return 2
    token = secrets.token_hex(16)
    settings = {"PRESENCE_LEASE_TTL": f"{options.lease_ttl:g}",
                "PRESENCE_HEARTBEAT_INTERVAL": f"{options.heartbeat_interval:g}"}  # fmt: skip
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-death-") as tmp,
            contextlib.closing(Fleet(options.workers, options.sources)) as fleet,
            contextlib.ExitStack() as nodes,
        ):
            a, b = [nodes.enter_context(running(presence_server(
                Path(tmp), name, postgres.url(), token, options.per_address,
                settings=settings))) for name in ("node-a", "node-b")]  # fmt: skip
            results = death(fleet, postgres, a, b, token, options)
    finally:
        postgres.stop()
    results.update(
        options={k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        seconds=round(time.monotonic() - started, 1),
    )
    (options.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, options.out / "regain.png")
    return summary(results, options)


def death(
    fleet: Fleet,
    postgres: Postgres,
    a: Process,
    b: Process,
    token: str,
    options: argparse.Namespace,
) -> dict[str, Any]:
    """Log every device in on ``a``, kill it, and follow the devices to ``b``."""
    members = provision(a.port, token, options.devices, options.domains)
    parts = split(members, fleet.size)
    beat, backoff = options.heartbeat_interval, Backoff()
    print(f"[bench] {len(members):,} devices log in on node A", flush=True)
    joined = fleet.call("join", [
        {"port": a.port, "hellos": [m.hello for m in part], "concurrency": CONCURRENCY,
         "beat": beat, "backoff": backoff} for part in parts
    ])  # fmt: skip
    time.sleep(WARM_UP)  # the logins' announcements are over
    cpu = {"node_b": b.cpu, "postgres": postgres.cpu, "generator": fleet.cpu}
    before = {name: used() for name, used in cpu.items()}
    fleet.call_all("rejoin", port=b.port, beat=beat, backoff=backoff)
    killed = time.monotonic()
    a.kill()
    print("[bench] node A killed (SIGKILL); the devices log in again on node B", flush=True)
    fleet.call_all("rejoined", until=killed + options.lease_ttl + TARGET_MARGIN + GIVE_UP)
    back = time.monotonic() - killed
    # In cores, from the kill until all were back: what the regain was waiting for.
    busy = {name: (used() - before[name]) / back for name, used in cpu.items()}
    # Still holding a TTL later: no lease left behind on A expires a seat given back.
    time.sleep(options.lease_ttl)
    api = AdminApi(b.port, token)
    events = {domain: seat_events(api, domain) for domain in sorted({m.domain for m in members})}
    api.close()
    reports = [report for part in fleet.call_all("leave") for report in part]
    ordered = [member for part in parts for member in part]
    results = figures(ordered, reports, killed, options.lease_ttl)
    results["join_tries"] = sum(r["tries"] for part in joined for r in part)
    results["cpu_cores"] = busy
    results["checks"] = {
        "regained": _regained_check(results),
        "seats": seat_check(events, sum(m.seat_user for m in members)),
        "fencing": fencing_check(ordered, reports),
    }
    results["events"] = dict(Counter(e["type"] for log in events.values() for e in log))
    return results


def provision(port: int, token: str, devices: int, domains: int) -> list[Member]:
    """``domains`` domains sharing ``devices`` devices, made a few at once."""

    def domain(n: int) -> list[Member]:
        api = AdminApi(port, token)
        name = f"tenant-{n}"
        named, seat, _ = population._tenant(api, name, devices // domains + (n < devices % domains))
        api.close()
        return [Member(name, hello, False) for hello in named] + [
            Member(name, hello, True) for hello in seat
        ]

    print(f"[bench] provisioning {domains} domains for {devices:,} devices", flush=True)
    with ThreadPoolExecutor(PROVISIONERS) as pool:
        return [member for made in pool.map(domain, range(domains)) for member in made]


def seat_events(api: AdminApi, domain: str) -> list[dict[str, Any]]:
    """The domain's seat grants and frees, oldest first, page after page."""
    types = "".join(f"&type={kind}" for kind in sorted(FREES | {"seat_granted"}))
    events: list[dict[str, Any]] = []
    while True:
        after = events[-1]["id"] if events else 0
        page = api.call("GET", f"/domains/{domain}/events?after={after}&limit={EVENT_PAGE}{types}")
        events += page
        if len(page) < EVENT_PAGE:
            return events


def seat_check(events: dict[str, list[dict[str, Any]]], seat_users: int) -> list[str]:
    """Problems in the event logs: a seat granted while another user or device
    held it, a seat freed by one that did not hold it; and seats held at the end
    other than ``seat_users``. A grant to the seat's own holder is a replacement
    (the same device logged in again), which logs no free."""
    problems = []
    held_at_end = 0
    for domain, log in events.items():
        holders: dict[tuple[str, int], tuple[str, str]] = {}
        for event in log:
            if event["seat"] is None:
                continue
            seat, who = (event["pool"], event["seat"]), (event["user_id"], event["device_id"])
            holder = holders.get(seat)
            if event["type"] == "seat_granted":
                if holder is not None and holder != who:
                    problems.append(f"{domain} {seat}: granted to {who} while {holder} held it "
                                    f"(event {event['id']})")  # fmt: skip
                holders[seat] = who
            elif holder != who:
                problems.append(f"{domain} {seat}: {event['type']} of {who}, but {holder} "
                                f"held it (event {event['id']})")  # fmt: skip
            else:
                del holders[seat]
        held_at_end += len(holders)
    if held_at_end != seat_users:
        problems.append(f"{held_at_end:,} seats held at the end, for {seat_users:,} seat users")
    return problems


def fencing_check(members: list[Member], reports: list[dict[str, Any]]) -> list[str]:
    """Problems in the welcomes' fencing tokens: one given twice, or one not above
    the token of the seat's welcome before it."""
    per_seat: dict[tuple[str, str, int], list[tuple[float, int]]] = defaultdict(list)
    for member, report in zip(members, reports, strict=True):
        for stamp, license in report["welcomes"]:
            if license["model"] == "seat":
                seat = (member.domain, license["pool"]["id"], license["seat"])
                per_seat[seat].append((stamp, license["fencing_token"]))
    tokens = [token for grants in per_seat.values() for _, token in grants]
    problems = [f"fencing token {token} given {n} times"
                for token, n in Counter(tokens).items() if n > 1]  # fmt: skip
    for seat, grants in per_seat.items():
        ordered = [token for _, token in sorted(grants)]
        if any(later <= earlier for earlier, later in pairwise(ordered)):
            problems.append(f"{seat}: fencing tokens in order of welcome {ordered}")
    return problems


def figures(
    members: list[Member], reports: list[dict[str, Any]], killed: float, lease_ttl: float
) -> dict[str, Any]:
    """When each device was welcomed on B after the kill, and how it got there."""
    times: list[float] = []
    noticed = [r["lost"] - killed for r in reports if r["lost"] is not None]
    same_seat = holding = 0
    failures: Counter[str] = Counter()
    for member, report in zip(members, reports, strict=True):
        (_, first), *later = report["welcomes"]
        for stamp, again in later:  # on B, once
            times.append(stamp - killed)
            same_seat += member.seat_user and _seat_of(again) == _seat_of(first)
        holding += report["holding"]
        failures.update(report["failures"])
    tries = sum(report["tries"] for report in reports)
    return {
        "devices": len(members),
        "seat_users": sum(m.seat_user for m in members),
        "lease_ttl": lease_ttl,
        "target_s": lease_ttl + TARGET_MARGIN,
        "noticed": len(noticed),
        "noticed_p50_s": percentile(noticed, 50),
        "noticed_max_s": max(noticed, default=0.0),
        "regained": len(times),
        "holding_at_end": holding,
        "same_seat": same_seat,
        "last_s": max(times, default=0.0),
        "p50_s": percentile(times, 50),
        "p99_s": percentile(times, 99),
        # The share of devices back by then, at each percentile of the regain times.
        "curve": [
            (percentile(times, q), q / 100 * len(times) / len(members)) for q in range(1, 101)
        ],
        "tries": tries,
        "retries": tries - sum(report["tries"] > 0 for report in reports),
        "failures": dict(failures.most_common()),
    }


def _seat_of(license: dict[str, Any]) -> tuple[str, int] | None:
    return (license["pool"]["id"], license["seat"]) if license["model"] == "seat" else None


def _regained_check(results: dict[str, Any]) -> list[str]:
    devices = results["devices"]
    problems = []
    if results["regained"] < devices:
        problems.append(f"{devices - results['regained']:,} devices not welcomed on B "
                        f"within {results['target_s'] + GIVE_UP:g} s")  # fmt: skip
    if results["holding_at_end"] < devices:
        problems.append(f"{devices - results['holding_at_end']:,} devices not holding at the end "
                        "(a lease_ttl after all were back)")  # fmt: skip
    return problems


def target_met(results: dict[str, Any]) -> bool:
    return bool(results["regained"] == results["devices"]
                and results["last_s"] <= results["target_s"]
                and results["same_seat"] == results["seat_users"])  # fmt: skip


def summary(results: dict[str, Any], options: argparse.Namespace) -> int:
    """Print the figures and the checks; the exit status."""
    ttl = "--lease-ttl" if options.lease_ttl_given else "the server's default"
    print(
        f"node death: {results['devices']:,} devices in {options.domains} domains "
        f"({results['seat_users']:,} seat users) on node A of two on PostgreSQL, "
        f"lease_ttl {options.lease_ttl:g} s ({ttl}), heartbeat every "
        f"{options.heartbeat_interval:.3g} s, load average {results['load_average_before'][0]:.2f}",
        f"regained on B: {results['regained']:,} of {results['devices']:,}; last "
        f"{results['last_s']:.2f} s after the kill, p50 {results['p50_s']:.2f} s, "
        f"p99 {results['p99_s']:.2f} s",
        f"lost connection noticed by {results['noticed']:,}: p50 "
        f"{results['noticed_p50_s']:.2f} s after the kill, last {results['noticed_max_s']:.2f} s",
        f"same seat back: {results['same_seat']:,} of {results['seat_users']:,} seat users",
        f"tries: {results['tries']:,}, retries {results['retries']:,}; failed: "
        + (", ".join(f"{cause} {n:,}" for cause, n in results["failures"].items()) or "none"),
        f"CPU from the kill until all were back, in cores: node B "
        f"{results['cpu_cores']['node_b']:.2f}, PostgreSQL {results['cpu_cores']['postgres']:.2f}, "
        f"load generator {results['cpu_cores']['generator']:.2f} (of {os.cpu_count()})",
        f"target: every device on its own seat again within lease_ttl + {TARGET_MARGIN:g} = "
        f"{results['target_s']:g} s: {'met' if target_met(results) else 'MISSED'}",
        sep="\n",
    )
    names = {"regained": "every device welcomed on B, holding a lease_ttl later",
             "seats": "no seat held twice (event log)",
             "fencing": "fencing tokens unique and increasing per seat"}  # fmt: skip
    for key, problems in results["checks"].items():
        print(f"check: {names[key]}: {'FAILED' if problems else 'passed'}")
        for problem in problems[:10]:
            print(f"  {problem}", file=sys.stderr)
    print(f"{results['seconds']:.0f} s; results in {options.out}/", flush=True)
    failed = any(results["checks"].values())
    return 1 if failed or (options.strict and not target_met(results)) else 0


def plot(results: dict[str, Any], path: Path) -> None:
    """The share of devices holding again against the seconds since the kill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    seconds, shares = zip(*[(0.0, 0.0), *results["curve"]], strict=True)
    axes.step(seconds, [share * 100 for share in shares], where="post", color="tab:red",
              label="devices welcomed on node B")  # fmt: skip
    axes.axvline(results["lease_ttl"], color="grey", linestyle="--", label="lease_ttl")
    axes.axvline(results["target_s"], color="grey", linestyle=":",
                 label=f"target (lease_ttl + {TARGET_MARGIN:g} s)")  # fmt: skip
    axes.set_xlabel("seconds since node A was killed")
    axes.set_ylabel("devices holding again (%)")
    axes.set_ylim(0, 101)
    axes.set_title(f"{results['devices']:,} devices back after their node's SIGKILL")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
