"""The helper every suite starts servers with (`tests/servers.py`), on its own:
a failed start shows what the server wrote, and a server can be paused,
resumed, killed, started again on the same port, database and token, and
terminated."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from servers import ServerProcess, StartupFailed

from .client import Harness


def healthz(process: ServerProcess, timeout: float = 5.0) -> int:
    with httpx.Client(trust_env=False, timeout=timeout) as http:
        return http.get(f"{process.base_url}/healthz").status_code


def test_a_failed_start_shows_what_the_server_wrote(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path, flags=("--lease-ttl", "0"))  # the last flag wins
    with pytest.raises(StartupFailed, match="lease-ttl"):  # the server's own words
        process.start()
    assert not process.running


async def test_a_server_pauses_resumes_and_starts_again_where_it_was(tmp_path: Path) -> None:
    with ServerProcess(tmp_path, lease_ttl=30) as process:
        async with Harness(process.server) as harness:
            domain = await harness.new_domain()
        process.pause()
        with pytest.raises(httpx.TimeoutException):
            healthz(process, timeout=0.5)
        process.resume()
        assert healthz(process) == 200

        process.kill()
        assert not process.running
        process.start()  # the same port, database and admin token
        async with Harness(process.server) as harness:
            again = await harness.admin.get(domain.path())
            assert again.status_code == 200, again.text
        assert process.terminate() in (0, -signal.SIGTERM)
    assert "Application startup complete" in process.output()
