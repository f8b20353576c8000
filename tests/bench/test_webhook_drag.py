"""`python -m bench.webhook_drag` with a few devices for a few seconds, so that it cannot rot.

The figures depend on the machine and on what else runs on it, so only that
the scenario happened is checked (the receiver held a request and answered
none, the events were queued: the exit status) and that both figures are
printed, never how they compare.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
HEARTBEATS = (
    r"heartbeat p50 [\d.]+ ms, p99 [\d.]+ ms, max [\d.]+ ms \(([\d,]+) heartbeats, 0 unanswered\)"
)


def test_a_small_run_prints_both_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhook_drag", "--devices", "50", "--events", "120",
         "--window", "2", "--rounds", "1", "--interval", "0.5"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("no endpoint", r"stuck endpoint, \d+ events queued"):
        found = re.search(f"round 1, {name}: {HEARTBEATS}", done.stdout)
        assert found is not None, (name, done.stdout)
        assert int(found[1].replace(",", "")) >= 50, done.stdout
    assert re.search(r"the receiver held [1-9]\d* requests, answered 0", done.stdout), done.stdout
    assert re.search(r"heartbeat p99 with the stuck receiver / without: [\d.]+x", done.stdout)
