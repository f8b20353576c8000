"""Server processes of a test's own with a control port (the webhook receiver,
the identity provider): started until their control endpoint answers, stopped
with SIGTERM (then SIGKILL)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

POLL = 0.02  # seconds between looks at a starting process


def start(command: list[str], errors: Path, control: str, within: float) -> subprocess.Popen[bytes]:
    """Run `command` (its stderr appended to `errors`) until `control` answers 200."""
    with errors.open("ab") as err:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + within
    with httpx.Client(trust_env=False, timeout=1.0) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"{command[1]} exited: {errors.read_text()}"
            try:
                if http.get(control).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            time.sleep(POLL)
    process.kill()
    process.wait()
    raise AssertionError(f"{command[1]} not up within {within:g} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM and wait (SIGKILL after 5 s); its ports are free again when this returns."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
