"""A presence server as a real process: the one way every test starts a server.

`ServerProcess` runs `python -m presence serve` from this repository on any
database URL (by default an SQLite file in its work directory; a PostgreSQL
URL from `pg.py` for several nodes on one database), on a free port of
127.0.0.1, with a lease TTL, a heartbeat interval, more `serve` flags and
environment variables of the caller's choice. The server admin token is known
to the test (`admin_token`, random by default) and reaches the server through
`PRESENCE_ADMIN_TOKEN`, never the command line, where every user of the
machine could read it.

The process can be started and waited for until healthy, killed (SIGKILL),
terminated (SIGTERM, with its exit status), paused and resumed
(SIGSTOP/SIGCONT), stopped whatever its state, and started again on the same
database, port and token. Every run appends its output to `stdout.log` and
`stderr.log` in the work directory; a failed start shows what that run wrote.

    with ServerProcess(tmp_path, lease_ttl=3) as process:
        async with Harness(process.server) as harness: ...

    nodes = [ServerProcess(tmp_path / name, database=url, admin_token=token)
             for name in ("a", "b")]
    with running(*nodes): ...  # started together, stopped at the end
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
from server.client import Server

REPO = Path(__file__).resolve().parent.parent
#: Seconds for a server to answer /healthz after its start; generous for a loaded machine.
STARTUP_TIMEOUT = 20.0
#: Seconds for a graceful shutdown before the process is killed.
SHUTDOWN_TIMEOUT = 15.0
#: Seconds between looks at a starting server or at its logs.
POLL_PERIOD = 0.05


class StartupFailed(AssertionError):
    """The server exited, or did not become healthy in time; the message has its output."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def new_admin_token() -> str:
    """A random server admin token."""
    return f"admin-{os.urandom(16).hex()}"


@dataclass(eq=False)
class ServerProcess:
    """`python -m presence serve` as a process of the test's own; see the module docstring.

    `database` is a URL (default: `sqlite:///<workdir>/presence.db`); `flags`
    are more `serve` flags; `env` adds to (and overrides) the environment the
    server gets, which is the test's own without any `PRESENCE_*` variable.
    `admin_token=None` configures none, so the server makes its own.
    """

    workdir: Path
    _: KW_ONLY
    database: str | None = None
    lease_ttl: float = 2.0
    heartbeat_interval: float = 1.0
    flags: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    admin_token: str | None = field(default_factory=new_admin_token)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _logged: tuple[int, int] = field(default=(0, 0), init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The device endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws/device"

    @property
    def server(self) -> Server:
        """Where the server listens and how it is configured, for `server.client`."""
        assert self.admin_token is not None, "this server has no admin token of the test's"
        return Server(self.base_url, self.admin_token, self.heartbeat_interval, self.lease_ttl)

    @property
    def stdout(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def running(self) -> bool:
        """The process exists and has not exited (it may be paused)."""
        return self.process is not None and self.process.poll() is None

    def start(self, *more: str, admin_token_env: bool = True) -> None:
        """Start the server and wait until it is healthy; see `launch`."""
        self.launch(*more, admin_token_env=admin_token_env)
        self.wait_until_healthy()

    def launch(self, *more: str, admin_token_env: bool = True) -> None:
        """Start the process without waiting for it: see `wait_until_healthy`.

        `more` are `serve` flags for this start only; without `admin_token_env`
        the server is not given `PRESENCE_ADMIN_TOKEN` (a test may give the
        same token another way).
        """
        assert not self.running, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
        if self.admin_token is not None and admin_token_env:
            env["PRESENCE_ADMIN_TOKEN"] = self.admin_token
        # Tests refuse bad tokens on purpose, all from 127.0.0.1: only the tests
        # of token guessing set a real limit (with the flag, which wins).
        env["PRESENCE_AUTH_FAILURES_PER_MINUTE"] = "1000000"
        env.update(self.env)
        command = [
            sys.executable, "-m", "presence", "serve",
            "--database", self.database or f"sqlite:///{self.workdir / 'presence.db'}",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--heartbeat-interval", f"{self.heartbeat_interval:g}",
            "--lease-ttl", f"{self.lease_ttl:g}",
            *self.flags, *more,
        ]  # fmt: skip
        self._logged = (_size(self.stdout), _size(self.stderr))
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Wait until `/healthz` answers ok; raise `StartupFailed` if the process
        exits first or `timeout` passes."""
        assert self.process is not None, "not started"
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self._fail(f"exited with status {self.process.returncode}")
                try:
                    answer = http.get(f"{self.base_url}/healthz")
                except httpx.TransportError:
                    pass
                else:
                    if answer.status_code == 200 and answer.json() == {"status": "ok"}:
                        return
                time.sleep(POLL_PERIOD)
        self._fail(f"not healthy within {timeout:g} s")

    def kill(self) -> None:
        """SIGKILL: the server frees nothing and tells no one."""
        assert self.process is not None, "not started"
        self.process.kill()
        self.process.wait()

    def terminate(self) -> int:
        """SIGTERM (a paused server is resumed first), then wait for the exit;
        returns the exit status. Raises `subprocess.TimeoutExpired` if the
        server takes longer than `SHUTDOWN_TIMEOUT`."""
        assert self.process is not None, "not started"
        self.resume()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(SHUTDOWN_TIMEOUT)

    def pause(self) -> None:
        """SIGSTOP: the server neither reads nor answers nor renews anything."""
        assert self.running, "not running"
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT, after `pause`; harmless otherwise."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server whatever its state: by SIGTERM, or SIGKILL if that hangs."""
        if not self.running:
            return
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        """Everything every run wrote, stdout then stderr."""
        return "".join(path.read_text(errors="replace") for path in (self.stdout, self.stderr))

    def wait_for_output(self, pattern: str, timeout: float = STARTUP_TIMEOUT) -> re.Match[str]:
        """Wait until `pattern` (a regular expression) matches the output; return the match."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.output())) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the output within {timeout:g} s")
            time.sleep(POLL_PERIOD)
        return found

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _fail(self, what: str) -> None:
        self.stop()
        out, err = (
            path.read_bytes()[start:].decode(errors="replace")
            for path, start in zip((self.stdout, self.stderr), self._logged, strict=True)
        )
        raise StartupFailed(
            f"presence serve in {self.workdir} {what}:\n--- stdout\n{out}--- stderr\n{err}"
        )


def start_all(processes: Iterable[ServerProcess]) -> None:
    """Start servers together: all launched, then each waited for until healthy."""
    processes = list(processes)
    for process in processes:
        process.launch()
    for process in processes:
        process.wait_until_healthy()


def stop_all(processes: Iterable[ServerProcess]) -> None:
    """Stop servers, whatever state each is in."""
    for process in processes:
        process.stop()


@contextmanager
def running(*processes: ServerProcess) -> Iterator[tuple[ServerProcess, ...]]:
    """Start `processes` together and stop them all at the end, whatever state
    the test left them in."""
    try:
        start_all(processes)
        yield processes
    finally:
        stop_all(processes)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0
