"""The scenarios of the benchmark, each driving the fleet against one or two servers.

Every scenario returns a plain dict of figures (seconds, KiB, counts) that the
runner keeps in the JSON results. Server costs come from ``/proc`` before and
after the measured phase; latencies are from the load generator's stamps.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from . import census
from .fleet import Fleet, split
from .population import Hello
from .servers import AdminApi, Process

ANSWERS = ["welcome", "error"]
SETTLE_TIMEOUT = 180.0
WARM_UP = 2.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _ports(servers: Sequence[Process], workers: int) -> list[int]:
    """Worker ``n`` talks to server ``n mod len(servers)``."""
    return [servers[n % len(servers)].port for n in range(workers)]


def _answers(results: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        for kind, code in result["answers"]:
            key = code or kind
            counts[key] = counts.get(key, 0) + 1
    return counts


def hold(
    fleet: Fleet,
    server: Process,
    hellos: list[Hello],
    steps: list[int],
    interval: float,
    window: float,
) -> dict[str, Any]:
    """Hold ``steps[-1]`` sessions heartbeating every ``interval``; measure at each step.

    At each step, once its sessions are connected and heartbeating, the window
    gives the heartbeat round trips, the server's CPU per heartbeat and its
    resident memory growth per session since before the first connection. At
    the last step, the source addresses the sessions came from and, for a
    server run under :mod:`bench.census`, where the memory of a session goes.
    """
    before = census.take(server.pid, server.census) if server.census else None
    rss_before = server.rss_kib()
    points = []
    answers: dict[str, int] = {}
    opened = 0
    for count in steps:
        chunk = hellos[opened:count]
        opened = count
        results = fleet.call("open", [
            {"group": "hold", "port": server.port, "path": "/ws/device", "hellos": part,
             "answers": ANSWERS, "concurrency": 50, "beat": interval}
            for part in split(chunk, fleet.size)
        ])  # fmt: skip
        for key, n in _answers(results).items():
            answers[key] = answers.get(key, 0) + n
        time.sleep(min(interval, WARM_UP))  # the logins' announcements are over
        fleet.call_all("take_rtts")
        cpu_before, started = server.cpu(), time.monotonic()
        time.sleep(window)
        cpu = server.cpu() - cpu_before
        elapsed = time.monotonic() - started
        samples = fleet.call_all("take_rtts")
        rtts = [rtt for sample in samples for rtt in sample["rtts"]]
        points.append({
            "sessions": count,
            "heartbeats": len(rtts),
            "lost": sum(sample["lost"] for sample in samples),
            "rtt_p50": percentile(rtts, 50),
            "rtt_p99": percentile(rtts, 99),
            "rtt_max": max(rtts, default=0.0),
            "cpu_per_heartbeat": cpu / max(1, len(rtts)),
            "cpu_share": cpu / elapsed,
            "rss_kib": server.rss_kib(),
            "kib_per_session": (server.rss_kib() - rss_before) / count,
        })  # fmt: skip
    sources: dict[str, int] = {}
    for used in fleet.call_all("sources_used", group="hold"):
        for address, n in used.items():
            sources[address] = sources.get(address, 0) + n
    figures: dict[str, Any] = {
        "answers": answers, "rss_before_kib": rss_before, "points": points, **points[-1],
        "sources": len(sources), "most_per_source": max(sources.values(), default=0),
        "open_at_end": sum(sources.values()),
    }  # fmt: skip
    if before is not None and server.census is not None:
        after = census.take(server.pid, server.census)
        figures["census"] = census.per_session(before, after, steps[-1])
    fleet.call_all("close", group="hold")
    return figures


def storm(
    fleet: Fleet,
    servers: Sequence[Process],
    hellos: list[Hello],
    concurrency: int,
    interval: float,
) -> dict[str, Any]:
    """Connect and log in ``hellos`` as fast as the servers take them, ``concurrency`` at once.

    The sessions heartbeat, and stay open until every login is answered. The
    workers are dealt the hellos in pairs, as :func:`population.tenants`
    interleaves a named device and a seat user: every server takes both kinds.
    """
    cpu_before = sum(server.cpu() for server in servers)
    generator_before = fleet.cpu()
    ports = _ports(servers, fleet.size)
    results = fleet.call("open", [
        {"group": "storm", "port": ports[n], "path": "/ws/device", "hellos": part,
         "answers": ANSWERS, "concurrency": max(1, concurrency // fleet.size),
         "beat": interval}
        for n, part in enumerate(split(hellos, fleet.size, run=2))
    ])  # fmt: skip
    cpu = sum(server.cpu() for server in servers) - cpu_before
    generator = fleet.cpu() - generator_before
    fleet.call_all("close", group="storm")
    elapsed = max(r["finished"] for r in results) - min(r["started"] for r in results)
    latencies = [latency for result in results for latency in result["latencies"]]
    return {
        "logins": len(hellos),
        "answers": _answers(results),
        "seconds": elapsed,
        "logins_per_s": len(hellos) / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "cpu_per_login": cpu / len(hellos),
        "server_cpu_share": cpu / elapsed,
        "generator_cpu_share": generator / elapsed,
    }


def contention(fleet: Fleet, server: Process, hellos: list[Hello], seats: int) -> dict[str, Any]:
    """Every contender connects, then all say hello at one instant for ``seats`` seats."""
    parts = split(hellos, fleet.size)
    fleet.call("open", [
        {"group": "race", "port": server.port, "path": "/ws/device", "hellos": [None] * len(part),
         "answers": ANSWERS, "concurrency": 100}
        for part in parts
    ])  # fmt: skip
    at = time.monotonic() + 0.5
    results = fleet.call("hello_at", [
        {"group": "race", "hellos": part, "answers": ANSWERS, "at": at} for part in parts
    ])  # fmt: skip
    fleet.call_all("close", group="race")
    answers = [answer for result in results for answer in result]
    granted = sum(kind == "welcome" for kind, _, _ in answers)
    refused = [stamp - at for kind, code, stamp in answers if code == "seat_occupied"]
    return {
        "contenders": len(hellos),
        "seats": seats,
        "granted": granted,
        "refused": len(refused),
        "all_answered_s": max(stamp for *_, stamp in answers) - at,
        "refused_p50": percentile(refused, 50),
        "ok": granted == seats and len(refused) == len(hellos) - seats,
    }


def fanout(
    fleet: Fleet,
    servers: Sequence[Process],
    holder: Hello,
    devices: list[Hello],
    boards: int,
    wallboard_token: str,
    rounds: int,
    interval: float,
) -> dict[str, Any]:
    """Announce a one-seat pool's changes to its refused devices and to wallboards.

    ``devices`` and ``boards`` wallboards join the subscribers already open
    (:func:`start_fanout`, or a smaller run). Each round frees the seat (the
    holder logs out) and takes it again (logs in): two changes, each stamped
    when the holder's frame was written, each delivery when it was read.
    """
    ports = _ports(servers, fleet.size)
    parts = split(devices, fleet.size)
    results = fleet.call("open", [
        {"group": "fan", "port": ports[n], "path": "/ws/device", "hellos": part,
         "answers": ANSWERS, "concurrency": 50, "beat": interval}
        for n, part in enumerate(parts)
    ])  # fmt: skip
    board_hello = {"type": "hello", "token": wallboard_token}
    fleet.call("open", [
        {"group": "boards", "port": ports[n], "path": "/ws/wallboard",
         "hellos": [board_hello] * len(part), "answers": ["snapshot"], "concurrency": 50}
        for n, part in enumerate(split(range(boards), fleet.size))
    ])  # fmt: skip
    _quiet(fleet)
    delays: dict[str, list[float]] = {"availability": [], "pool": []}
    per_change: list[tuple[float, float]] = []  # p50 and max of each change
    cpu_before = sum(server.cpu() for server in servers)
    generator_before = fleet.cpu()
    for _ in range(rounds):
        for free in (1, 0):
            if free:
                sent = fleet.call_one(0, "send", group="holder", message={"type": "logout"})
            else:
                fleet.call_one(0, "close", group="holder")
                sent = _seat(fleet, servers, holder, interval)
            frames = fleet.call_all("await_frames", groups=["fan", "boards"], free=free,
                                    timeout=10.0)  # fmt: skip
            first: dict[tuple[int, int], tuple[float, str]] = {}  # per worker and socket
            for n, part in enumerate(frames):
                for stamp, kind, value, socket in part:
                    if value == free:  # not a late copy of the previous change
                        first.setdefault((n, socket), (stamp, kind))
            for stamp, kind in first.values():
                delays[kind].append(stamp - sent)
            late = [stamp - sent for stamp, _ in first.values()]
            per_change.append((percentile(late, 50), max(late, default=0.0)))
    cpu = sum(server.cpu() for server in servers) - cpu_before
    generator = fleet.cpu() - generator_before
    subscribers = sum(fleet.call_all("count", groups=["fan", "boards"]))
    everyone = delays["availability"] + delays["pool"]
    return {
        "subscribers": subscribers,
        "refusals": _answers(results),
        "changes": 2 * rounds,
        "deliveries": len(everyone),
        "missing": 2 * rounds * subscribers - len(everyone),
        "p50": percentile(everyone, 50),
        "p99": percentile(everyone, 99),
        "max": max(everyone, default=0.0),
        "device_p99": percentile(delays["availability"], 99),
        "board_p99": percentile(delays["pool"], 99),
        "per_change_p50_max": per_change,
        # The rounds' whole cost (the holder's logins included) per delivery.
        "cpu_per_delivery": cpu / max(1, len(everyone)),
        "generator_cpu_per_delivery": generator / max(1, len(everyone)),
    }


def start_fanout(fleet: Fleet, servers: Sequence[Process], holder: Hello, interval: float) -> None:
    """Record announcements from now on, and seat the holder on the first server."""
    fleet.call_all("record", groups=["fan", "boards"], types=["availability", "pool"])
    _seat(fleet, servers, holder, interval)


def _seat(fleet: Fleet, servers: Sequence[Process], holder: Hello, interval: float) -> float:
    """Log the holder in on worker 0; return when its hello was sent."""
    login = fleet.call_one(0, "open", group="holder", port=servers[0].port, path="/ws/device",
                           hellos=[holder], answers=ANSWERS, concurrency=1,
                           beat=interval)  # fmt: skip
    if login["answers"] != [("welcome", "")]:
        raise RuntimeError(f"the fan-out holder got no seat: {login['answers']}")
    sent: float = login["sent"]
    return sent


def _quiet(fleet: Fleet) -> None:
    """Drop the announcements of the logins themselves, until none arrives for 0.5 s."""
    for _ in range(20):
        if not any(fleet.call_all("await_frames", groups=None, free=None, timeout=0.5)):
            return
    raise RuntimeError("announcements did not stop")


def settle(api: AdminApi) -> float:
    """Wait until the node holds no session (closed ones are released); return the wait."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT:
        metrics = api.metrics()
        sessions = sum(v for k, v in metrics.items() if k.startswith("presence_sessions{"))
        occupied = sum(v for k, v in metrics.items() if k.startswith("presence_seats_occupied{"))
        if sessions == 0 and occupied == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"the node still held sessions after {SETTLE_TIMEOUT}s")
