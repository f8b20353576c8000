"""The server admin token (spec section 6): the configured one only, and never
from a command-line argument, which every user of the machine can read.

Each test runs a server of its own (`server_process`) that it stops and starts
again on the same SQLite file, with or without `PRESENCE_ADMIN_TOKEN` and
`--admin-token-file`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from servers import free_port

from .client import API, Server

if TYPE_CHECKING:
    from servers import ServerProcess

REPO = Path(__file__).resolve().parent.parent.parent
GENERATED = re.compile(r"Server admin token \(shown once, keep it\): (prs_[A-Za-z0-9_-]+)")
#: How long a server given a bad flag may take to refuse to start.
EXIT_TIMEOUT = 15.0


def generated_tokens(process: ServerProcess) -> list[str]:
    """The admin tokens the server printed, over all its runs."""
    return GENERATED.findall((process.workdir / "stdout.log").read_text())


def status_with(server: Server, token: str) -> int:
    """401 for a token refused; 404 for one accepted (there is no such domain)."""
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10.0) as http:
        headers = {"Authorization": f"Bearer {token}"}
        return http.get(f"{API}/domains/nothing", headers=headers).status_code


def secret_file(directory: Path, content: str, name: str = "admin-token") -> Path:
    path = directory / name
    path.write_text(content)
    path.chmod(0o600)
    return path


def presence(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the `presence` command to its end, without `PRESENCE_*` variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    return subprocess.run(
        [sys.executable, "-m", "presence", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT,
    )


def test_once_a_token_is_configured_a_generated_one_is_refused(
    server_process: ServerProcess,
) -> None:
    configured = server_process.server
    server_process.stop()
    server_process.start(admin_token_env=False)
    (generated,) = generated_tokens(server_process)
    assert status_with(configured, generated) == 404
    assert status_with(configured, configured.admin_token) == 401

    server_process.stop()
    server_process.start()  # PRESENCE_ADMIN_TOKEN set
    assert status_with(configured, generated) == 401
    assert status_with(configured, configured.admin_token) == 404

    # Configured no more: the old generated token stays revoked; a new one is made.
    server_process.stop()
    server_process.start(admin_token_env=False)
    first, again = generated_tokens(server_process)
    assert first == generated != again
    assert status_with(configured, generated) == 401
    assert status_with(configured, again) == 404


def test_the_admin_token_is_read_from_a_file(server_process: ServerProcess, tmp_path: Path) -> None:
    secret = f"from-a-file-{os.urandom(16).hex()}"
    path = secret_file(tmp_path, secret + "\n")
    server = server_process.server
    server_process.stop()
    server_process.start("--admin-token-file", str(path), admin_token_env=False)
    assert status_with(server, secret) == 404
    assert status_with(server, server.admin_token) == 401
    assert server_process.process is not None
    command_line = Path(f"/proc/{server_process.process.pid}/cmdline").read_bytes()
    assert secret.encode() not in command_line and str(path).encode() in command_line
    assert generated_tokens(server_process) == []

    # The file wins over the environment, as every flag does.
    server_process.stop()
    server_process.start("--admin-token-file", str(path))
    assert status_with(server, secret) == 404
    assert status_with(server, server.admin_token) == 401


def test_a_bad_admin_token_file_stops_the_server_at_once(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'presence.db'}"
    directory = tmp_path / "a-directory"
    directory.mkdir()
    bad = [
        (tmp_path / "missing", "cannot read"),
        (secret_file(tmp_path, "\n", "empty"), "is empty"),
        (secret_file(tmp_path, "one\ntwo\n", "two-lines"), "more than one line"),
        (directory, "cannot read"),
    ]
    for path, reason in bad:
        serve = presence(
            "serve", "--admin-token-file", str(path), "--database", database,
            "--port", str(free_port()),
        )  # fmt: skip
        simulate = presence("simulate", "--admin-token-file", str(path), "--seconds", "1")
        for done in (serve, simulate):
            assert done.returncode == 1, (path, done)
            assert "--admin-token-file" in done.stderr and reason in done.stderr, done
    assert not (tmp_path / "presence.db").exists()
    # The secret is no flag any more, whether spelt whole or abbreviated.
    for flag in ("--admin-token", "--admin-tok"):
        done = presence("serve", flag, "secret", "--database", database)
        assert done.returncode == 2 and "unrecognized arguments" in done.stderr, done


def test_simulate_reads_the_admin_token_from_a_file(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server = server_process.server
    path = secret_file(tmp_path, server.admin_token + "\n")
    done = presence(
        "simulate", "--url", server.base_url, "--admin-token-file", str(path), "--seconds", "1"
    )
    assert done.returncode == 0, done
    assert "Wallboard:" in done.stdout, done
