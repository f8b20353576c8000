"""The servers under test, as processes the runner starts, measures and stops.

A :class:`Process` reads its own cost from ``/proc``: CPU seconds (user plus
system) from ``/proc/<pid>/stat`` and resident memory from
``/proc/<pid>/status``. :func:`presence_server` runs ``python -m presence
serve`` on a database URL, :func:`bare_server` one of :mod:`bench.bare`, and
:class:`Postgres` a throwaway PostgreSQL cluster for the cluster scenario.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .worker import raise_open_files

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Process:
    """A server process on 127.0.0.1:``port``, logging to ``log``."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = int(command[command.index("--port") + 1])
        self.log = log
        self.census: Path | None = None  # where it writes censuses (bench.census)
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=raise_open_files,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_listening(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not listen within {STARTUP_TIMEOUT}s")

    def cpu(self) -> float:
        """CPU seconds (user + system) used so far."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL, as a crash: the server frees nothing and tells no one."""
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def presence_server(
    workdir: Path,
    name: str,
    database: str,
    admin_token: str,
    per_address: int | None = None,
    census: Path | None = None,
    tracemalloc: int = 0,
    settings: dict[str, str] | None = None,
    gc_threshold: int | None = None,
) -> Process:
    """``python -m presence serve``; ``per_address``: its cap on one address's
    connections if not the default; ``census``: run it under :mod:`bench.census`,
    writing there (tracing allocations ``tracemalloc`` frames deep if not 0, with
    ``gc_threshold`` if given); ``settings``: more ``PRESENCE_*`` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(settings or {})
    env["PRESENCE_ADMIN_TOKEN"] = admin_token
    if per_address is not None:
        env["PRESENCE_MAX_CONNECTIONS_PER_ADDRESS"] = str(per_address)
    port = free_port()
    command = [sys.executable, "-m", "presence"]
    if census is not None:
        census.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "bench.census", "--out", str(census),
                   "--tracemalloc", str(tracemalloc)]  # fmt: skip
        if gc_threshold is not None:
            command += ["--gc-threshold", str(gc_threshold)]
        command.append("--")
    command += ["serve", "--database", database, "--port", str(port)]
    process = Process(name, command, env, workdir / f"{name}.log")
    process.census = census
    process.wait_listening()
    return process


def bare_server(workdir: Path, kind: str) -> Process:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", kind, "--port", str(port)]
    process = Process(f"bare {kind}", command, dict(os.environ), workdir / f"bare-{kind}.log")
    process.wait_listening()
    return process


class AdminApi:
    """The admin HTTP API over one kept-alive connection."""

    #: uvicorn closes a connection idle for 5 s; a new one is made before then.
    IDLE = 2.0

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.token = token
        self.used = time.monotonic()

    def _request(self, method: str, path: str, body: str | None, headers: dict[str, str]) -> bytes:
        if time.monotonic() - self.used > self.IDLE:
            self.connection.close()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        text = response.read()
        self.used = time.monotonic()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {text.decode()}")
        return text

    def call(self, method: str, path: str, body: Any = None) -> Any:
        text = self._request(
            method,
            f"/api/v1{path}",
            None if body is None else json.dumps(body),
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        return json.loads(text) if text else None

    def metrics(self) -> dict[str, float]:
        """``/metrics`` samples, keyed by their full name with labels."""
        samples = {}
        for line in self._request("GET", "/metrics", None, {}).decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def close(self) -> None:
        self.connection.close()


class Postgres:
    """A throwaway PostgreSQL cluster in a temporary directory, with default
    (durable) settings, as SQLite's ``synchronous=FULL`` is.

    PostgreSQL refuses to run as root, so under root it runs as ``postgres``.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
        self.bindir = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="bench-pg-"))
        self.port = free_port()
        self.as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = {"user": user.pw_uid, "group": user.pw_gid}
        data = self.root / "data"
        self._run([self.bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust"])
        self._run([
            self.bindir / "pg_ctl", "-D", data, "-l", self.root / "server.log", "-w", "start",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1",
        ])  # fmt: skip

    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def cpu(self) -> float:
        """CPU seconds of the postmaster and its live backends (ended ones count in
        the postmaster's children's time)."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        total = 0
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError):
                with open(stat) as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                pid = int(stat.split("/")[2])
                if pid == postmaster:
                    total += sum(int(f) for f in fields[11:15])  # own and children's
                elif int(fields[1]) == postmaster:
                    total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def _run(self, command: list[Any]) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=60, **self.as_user)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run([self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "fast", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running(process: Process) -> Iterator[Process]:
    try:
        yield process
    finally:
        process.stop()
