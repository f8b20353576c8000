"""`python -m bench.node_death` with 200 devices, so that it cannot rot.

Timing depends on the machine and on what else runs on it, so only that the
scenario happened is checked: every device was welcomed on node B after node
A's SIGKILL and holds at the end, the checks on the event log and the fencing
tokens passed (the exit status), the figures were printed and written; never
how fast. Like the cluster suite, it needs PostgreSQL, and fails, never skips,
without it (the run says so).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
DEVICES = 200
TIMEOUT = 180


def test_every_device_gets_a_seat_again_on_the_other_node(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.node_death", "--devices", str(DEVICES), "--domains", "4",
         "--lease-ttl", "5", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "lease_ttl 5 s (--lease-ttl)" in done.stdout
    assert re.search(
        rf"regained on B: {DEVICES} of {DEVICES}; last [\d.]+ s after the kill, "
        r"p50 [\d.]+ s, p99 [\d.]+ s",
        done.stdout,
    ), done.stdout
    assert re.search(r"tries: [\d,]+, retries [\d,]+; failed: ", done.stdout), done.stdout
    assert done.stdout.count(": passed\n") == 3, done.stdout

    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert (results["regained"], results["holding_at_end"]) == (DEVICES, DEVICES)
    assert results["checks"] == {"regained": [], "seats": [], "fencing": []}
    assert results["curve"][-1][1] == 1.0
    # Each seat user's seat granted on A, then again on B.
    assert results["events"]["seat_granted"] >= 2 * results["seat_users"] > 0
    assert (tmp_path / "regain.png").stat().st_size > 0
