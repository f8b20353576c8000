"""Two server nodes sharing one PostgreSQL database, as real processes.

Each test gets a new database on the session's PostgreSQL server and two
`python -m presence serve` processes on it, A and B, with a short lease TTL.
A test may kill or pause a node; whatever state it leaves them in, they are
stopped at the end. `on_a` and `on_b` are the black-box clients of
`tests/server/client.py`, one per node.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pg import PostgresServer, free_port
from server.client import Harness, Server

REPO = Path(__file__).resolve().parent.parent.parent
LEASE_TTL = 2
HEARTBEAT_INTERVAL = 1
STARTUP_TIMEOUT = 20.0
SHUTDOWN_TIMEOUT = 10.0


class Node:
    """One server process, started at once; `server` says where it listens."""

    def __init__(
        self, name: str, database_url: str, admin_token: str, workdir: Path, *extra: str
    ) -> None:
        self.name = name
        self.server = Server(
            f"http://127.0.0.1:{free_port()}", admin_token, HEARTBEAT_INTERVAL, LEASE_TTL
        )
        self.log = workdir / f"node-{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        env["PRESENCE_ADMIN_TOKEN"] = admin_token
        env["PRESENCE_AUTH_FAILURES_PER_MINUTE"] = "1000000"  # bad tokens are on purpose
        command = [
            sys.executable, "-m", "presence", "serve", "--database", database_url,
            "--host", "127.0.0.1", "--port", self.server.base_url.rsplit(":", 1)[1],
            "--lease-ttl", str(LEASE_TTL), "--heartbeat-interval", str(HEARTBEAT_INTERVAL),
            *extra,
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    pytest.fail(f"node {self.name} exited:\n{self.log.read_text()}")
                try:
                    if http.get(f"{self.server.base_url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        pytest.fail(f"node {self.name} not healthy in {STARTUP_TIMEOUT}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """Kill the process at once (SIGKILL): it frees nothing, says nothing."""
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.resume()
        self.process.terminate()
        try:
            self.process.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class Cluster:
    a: Node
    b: Node
    database_url: str


@pytest.fixture
def cluster(postgres: PostgresServer, tmp_path: Path) -> Iterator[Cluster]:
    database_url = postgres.create_database()
    admin_token = f"admin-{os.urandom(16).hex()}"
    nodes: list[Node] = []
    try:
        for name in "ab":
            nodes.append(Node(name, database_url, admin_token, tmp_path))
        for node in nodes:
            node.wait_until_healthy()
        yield Cluster(*nodes, database_url)
    finally:
        for node in nodes:
            node.stop()
        postgres.drop_database(database_url)


@pytest.fixture
async def on_a(cluster: Cluster) -> AsyncIterator[Harness]:
    async with Harness(cluster.a.server) as harness:
        yield harness


@pytest.fixture
async def on_b(cluster: Cluster) -> AsyncIterator[Harness]:
    async with Harness(cluster.b.server) as harness:
        yield harness
