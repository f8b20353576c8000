"""Fixtures that run the presence server as a real process.

`server` is one server for the whole session with a short lease TTL (2 s), so
expiry tests are quick; every test makes its own domain, so tests stay
independent on the shared server. `steady_server` has a long TTL, for the few
tests that must tell a seat freed at once from one freed by lease expiry.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from server.client import Harness, Server

pytest_plugins = ["pg"]  # the `postgres` fixture, shared by every suite

REPO = Path(__file__).resolve().parent.parent
HEARTBEAT_INTERVAL = 1
STARTUP_TIMEOUT = 15.0
SHUTDOWN_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_healthy(process: subprocess.Popen[bytes], base_url: str, stderr: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(trust_env=False, timeout=1.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{stderr.read_text()}")
            try:
                answer = http.get(f"{base_url}/healthz")
            except httpx.TransportError:
                pass
            else:
                if answer.status_code == 200 and answer.json() == {"status": "ok"}:
                    return
            time.sleep(0.1)
    pytest.fail(f"server not healthy within {STARTUP_TIMEOUT}s:\n{stderr.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def running_server(workdir: Path, lease_ttl: int) -> Iterator[Server]:
    """Run `python -m presence serve` on SQLite in `workdir` until exit."""
    port = _free_port()
    admin_token = f"admin-{os.urandom(16).hex()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env["PRESENCE_ADMIN_TOKEN"] = admin_token
    command = [
        sys.executable,
        "-m",
        "presence",
        "serve",
        "--database",
        f"sqlite:///{workdir / 'presence.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--heartbeat-interval",
        str(HEARTBEAT_INTERVAL),
        "--lease-ttl",
        str(lease_ttl),
    ]
    stdout, stderr = workdir / "stdout.log", workdir / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        try:
            base_url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(process, base_url, stderr)
            yield Server(base_url, admin_token, HEARTBEAT_INTERVAL, lease_ttl)
        finally:
            _stop(process)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("presence"), lease_ttl=2) as running:
        yield running


@pytest.fixture(scope="session")
def steady_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("steady"), lease_ttl=60) as running:
        yield running


@pytest.fixture
async def harness(server: Server) -> AsyncIterator[Harness]:
    async with Harness(server) as opened:
        yield opened


@pytest.fixture
async def steady_harness(steady_server: Server) -> AsyncIterator[Harness]:
    async with Harness(steady_server) as opened:
        yield opened
