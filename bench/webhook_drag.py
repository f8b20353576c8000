"""How much a stuck webhook receiver drags the heartbeats of every device.

Starts the server on a temporary SQLite file (with
``PRESENCE_WEBHOOK_ALLOW_PRIVATE=1``) and the receiver of
``tests/webhooks/receiver.py`` in mode ``hang`` (it reads each request and
never answers), holds ``--devices`` sessions heartbeating every
``--interval`` s with the benchmark's load generator (:mod:`bench.fleet`),
and measures their heartbeat round trips in windows of ``--window`` s, in
``--rounds`` rounds of two: one with no webhook endpoint at all, then one with
an endpoint at the hanging receiver and ``--events`` events (license changes
in the devices' domain) queued for it; the endpoint is deleted before the
next round. (Rounds, so that what else runs on the machine weighs on both
alike.) It prints each window, then both kinds over every round, with the
server's CPU share. Exit status 1 means the scenario did not happen (the
receiver got no request, answered one, or fewer events were queued), not that
a figure is high.

    python -m bench.webhook_drag [--devices 1000] [--events 150] [--window 15]
        [--rounds 2] [--interval 1] [--timeout 10] [--retry-scale 1]

``--timeout`` and ``--retry-scale`` are the server's
``PRESENCE_WEBHOOK_TIMEOUT`` and ``PRESENCE_WEBHOOK_RETRY_SCALE``: with the
defaults, those of production, the server holds one request for 10 s, then
waits 5 s, 30 s... before the next attempt.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import population
from .fleet import Fleet, split
from .scenarios import ANSWERS, WARM_UP, percentile
from .servers import REPO, AdminApi, Process, free_port, running

RECEIVER = REPO / "tests" / "webhooks" / "receiver.py"
STARTUP_TIMEOUT = 20.0
#: The domain of the devices (the first tenant of :func:`population.tenants`).
DOMAIN = "tenant-0"
#: Users whose licenses change to log the queued events; they never log in.
CHANGERS = 10


@dataclass
class Window:
    """The heartbeats of one measured window."""

    name: str
    rtts: list[float]
    lost: int
    cpu_share: float  # the server's CPU seconds per second

    def line(self) -> str:
        return (
            f"{self.name}: heartbeat p50 {percentile(self.rtts, 50) * 1e3:.1f} ms, "
            f"p99 {percentile(self.rtts, 99) * 1e3:.1f} ms, "
            f"max {max(self.rtts, default=0.0) * 1e3:.1f} ms "
            f"({len(self.rtts):,} heartbeats, {self.lost} unanswered); "
            f"server CPU {self.cpu_share:.0%}"
        )


class Receiver:
    """``tests/webhooks/receiver.py`` as a process, logging to ``log``."""

    def __init__(self, workdir: Path, mode: str) -> None:
        self.port, self.control_port = free_port(), free_port()
        self.log = workdir / "received.jsonl"
        command = [
            sys.executable, str(RECEIVER), "--port", str(self.port),
            "--control-port", str(self.control_port), "--log", str(self.log), "--mode", mode,
        ]  # fmt: skip
        with (workdir / "receiver.err").open("wb") as err:
            self.popen = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._answers():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the receiver did not start: {(workdir / 'receiver.err')}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=1)
        try:
            connection.request("GET", "/control")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def requests(self, path: str) -> list[dict[str, Any]]:
        """The requests logged to ``path``."""
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines(keepends=True)
        entries = [json.loads(line) for line in lines if line.endswith("\n")]
        return [e for e in entries if e["kind"] == "request" and e["path"] == path]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhook_drag", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--devices", type=int, default=1000, help="sessions held (1,000)")
    parser.add_argument("--events", type=int, default=150, help="events queued (150)")
    parser.add_argument("--window", type=float, default=15.0, help="seconds measured (15)")
    parser.add_argument("--interval", type=float, default=1.0, help="between heartbeats (1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="PRESENCE_WEBHOOK_TIMEOUT")
    parser.add_argument(
        "--retry-scale", type=float, default=1.0, help="PRESENCE_WEBHOOK_RETRY_SCALE"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both windows (2)")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes (2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-drag-") as tmp, _fleet(options.workers) as fleet:
        workdir = Path(tmp)
        receiver = Receiver(workdir, "hang")
        try:
            server = _server(workdir, options)
            with running(server):
                return drag(fleet, server, receiver, options)
        finally:
            receiver.stop()


def drag(
    fleet: Fleet, server: TokenProcess, receiver: Receiver, options: argparse.Namespace
) -> int:
    token = server.token
    api = AdminApi(server.port, token)
    held, _ = population.tenants(api, options.devices)
    changers = _changers(api, CHANGERS)
    _say(f"{len(held):,} devices log in, heartbeating every {options.interval:g} s")
    results = fleet.call("open", [
        {"group": "hold", "port": server.port, "path": "/ws/device", "hellos": part,
         "answers": ANSWERS, "concurrency": 50, "beat": options.interval}
        for part in split(held, fleet.size)
    ])  # fmt: skip
    answers = [kind for result in results for kind, _ in result["answers"]]
    if set(answers) != {"welcome"}:
        raise RuntimeError(f"not every device was welcomed: {sorted(set(answers))}")
    time.sleep(min(options.interval, WARM_UP))  # the logins' announcements are over
    print(
        f"webhook drag: {len(held):,} devices heartbeating every {options.interval:g} s, "
        f"{options.rounds} rounds of two {options.window:g} s windows, webhook timeout "
        f"{options.timeout:g} s, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    windows: dict[str, list[Window]] = {"none": [], "stuck": []}
    failed = []
    for round_ in range(1, options.rounds + 1):
        windows["none"].append(_measure(fleet, server, f"round {round_}, no endpoint", options))
        path = f"/hook-{round_}"
        after = _latest_event(api)
        created = api.call("POST", f"/domains/{DOMAIN}/webhooks", {"url": receiver.url(path)})
        for n in range((round_ - 1) * options.events, round_ * options.events):
            user = changers[n % len(changers)]  # each change changes: n counts on over rounds
            license = _seat() if n // len(changers) % 2 == 0 else {"model": "none"}
            api.call("PUT", f"/domains/{DOMAIN}/users/{user}/license", license)
        queued = len(api.call("GET", f"/domains/{DOMAIN}/events?after={after}&limit=1000"))
        if not _wait(partial(receiver.requests, path), STARTUP_TIMEOUT):
            failed.append(f"round {round_}: the receiver never got a request")
        name = f"round {round_}, stuck endpoint, {queued} events queued"
        windows["stuck"].append(_measure(fleet, server, name, options))
        held_requests = receiver.requests(path)
        answered = [r for r in held_requests if r["status"] is not None]
        print(f"  the receiver held {len(held_requests)} requests, answered {len(answered)}")
        if answered:
            failed.append(f"round {round_}: the receiver answered (it should hang)")
        if queued < options.events:
            failed.append(f"round {round_}: only {queued} events were queued")
        api.call("DELETE", f"/domains/{DOMAIN}/webhooks/{created['id']}")
    fleet.call_all("close", group="hold")
    api.close()
    none = _pooled("all rounds, no endpoint", windows["none"])
    stuck = _pooled("all rounds, stuck endpoint", windows["stuck"])
    print(none.line(), stuck.line(), sep="\n")
    ratio = percentile(stuck.rtts, 99) / max(percentile(none.rtts, 99), 1e-9)
    print(f"heartbeat p99 with the stuck receiver / without: {ratio:.2f}x", flush=True)
    for failure in failed:
        print(f"CHECK FAILED: {failure}", file=sys.stderr)
    return 1 if failed else 0


def _pooled(name: str, windows: list[Window]) -> Window:
    """Windows taken as one."""
    rtts = [rtt for window in windows for rtt in window.rtts]
    share = sum(window.cpu_share for window in windows) / max(1, len(windows))
    return Window(name, rtts, sum(window.lost for window in windows), share)


def _measure(fleet: Fleet, server: Process, name: str, options: argparse.Namespace) -> Window:
    seconds = options.window
    fleet.call_all("take_rtts")
    cpu_before, started = server.cpu(), time.monotonic()
    time.sleep(seconds)  # the window measured
    cpu = server.cpu() - cpu_before
    elapsed = time.monotonic() - started
    samples = fleet.call_all("take_rtts")
    rtts = [rtt for sample in samples for rtt in sample["rtts"]]
    window = Window(name, rtts, sum(sample["lost"] for sample in samples), cpu / elapsed)
    print(window.line(), flush=True)
    return window


def _server(workdir: Path, options: argparse.Namespace) -> TokenProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    token = secrets.token_hex(16)
    env.update(
        PRESENCE_ADMIN_TOKEN=token,
        PRESENCE_WEBHOOK_ALLOW_PRIVATE="1",
        PRESENCE_WEBHOOK_TIMEOUT=f"{options.timeout:g}",
        PRESENCE_WEBHOOK_RETRY_SCALE=f"{options.retry_scale:g}",
    )
    command = [sys.executable, "-m", "presence", "serve",
               "--database", f"sqlite:///{workdir / 'presence.db'}",
               "--port", str(free_port())]  # fmt: skip
    process = TokenProcess("presence", command, env, workdir / "presence.log", token)
    process.wait_listening()
    return process


class TokenProcess(Process):
    """A server process that knows its admin token."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], log: Path, token: str
    ) -> None:
        super().__init__(name, command, env, log)
        self.token = token


def _changers(api: AdminApi, count: int) -> list[str]:
    """Users of the devices' domain without a license, whose licenses will change."""
    ids = []
    for n in range(count):
        user = api.call("POST", f"/domains/{DOMAIN}/users", {
            "email": f"changer-{n}@{DOMAIN}.example", "name": f"Changer {n}",
            "license": {"model": "none"},
        })  # fmt: skip
        ids.append(user["id"])
    return ids


def _seat() -> dict[str, str]:
    return {"model": "seat", "pool": "p0"}


def _latest_event(api: AdminApi) -> int:
    latest = api.call("GET", f"/domains/{DOMAIN}/events?before=4611686018427387904&limit=1")
    return int(latest[-1]["id"]) if latest else 0


def _wait(condition: Callable[[], object], timeout: float) -> bool:
    """Wait until ``condition()`` is true; False if it was not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@contextlib.contextmanager
def _fleet(size: int) -> Iterator[Fleet]:
    fleet = Fleet(size)
    try:
        yield fleet
    finally:
        fleet.close()


def _say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
