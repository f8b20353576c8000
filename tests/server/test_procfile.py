"""The `Procfile`'s `web:` line, run as a platform that reads Procfiles runs it:
through a shell, with `PORT` set, from the repository. It serves on that port,
on every address of the machine (not only loopback), and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from servers import REPO, STARTUP_TIMEOUT, free_port


def web_command() -> str:
    lines = (REPO / "Procfile").read_text().splitlines()
    (web,) = [line for line in lines if line.startswith("web:")]
    return web.removeprefix("web:").strip()


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses (hex, as the kernel writes them) listening on ``port``."""
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = row.split()[1], row.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            found.add(address)
    return found


def test_the_procfile_web_line_serves_on_port_from_every_address(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env |= {
        "PORT": str(port),
        "PRESENCE_DATABASE": f"sqlite:///{tmp_path / 'presence.db'}",
        "PRESENCE_ADMIN_TOKEN": "procfile-test",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    with (tmp_path / "out.log").open("wb") as out:
        process = subprocess.Popen(
            ["sh", "-c", f"exec {web_command()}"], cwd=REPO, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while True:
                assert process.poll() is None, (tmp_path / "out.log").read_text()
                try:
                    if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "out.log").read_text()
                time.sleep(0.05)  # polling a starting process, not waiting for an outcome
        assert listening_addresses(port) == {"00000000"}  # 0.0.0.0: reachable from outside
    finally:
        process.send_signal(signal.SIGTERM)
        # uvicorn exits by the signal it stopped on, after a graceful shutdown.
        assert process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in (tmp_path / "out.log").read_text()
