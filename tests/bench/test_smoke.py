"""The benchmark's smoke run, so that it cannot rot.

``python -m bench --quick`` runs every scenario at a few hundred sessions
against real server processes. The figures depend on the machine and on what
else runs on it, so only what must be exact is checked (every login answered,
exactly the contended seats granted, every announcement delivered), never the
performance targets.
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 300


def test_quick_run_completes_with_exact_counts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    options = results["options"]
    assert (tmp_path / "heartbeat.png").stat().st_size > 0
    assert "hold 200: heartbeat p99 ms" in done.stdout

    for server in ("presence", "starlette", "websockets"):
        hold = results["hold"][server]
        assert hold["answers"] == {"welcome": options["sessions"]}
        assert [p["sessions"] for p in hold["points"]][-1] == options["sessions"]
        assert hold["heartbeats"] > 0 and hold["lost"] == 0
        assert hold["kib_per_session"] > 0 and hold["cpu_per_heartbeat"] > 0
        storm = results["storm"][server]
        assert storm["answers"] == {"welcome": options["logins"]}
        assert 0 < storm["p50"] <= storm["p99"]

    race = results["contention"]
    assert (race["granted"], race["refused"]) == (
        options["seats"],
        options["contenders"] - options["seats"],
    )

    for k, fan in results["fanout"].items():
        assert fan["subscribers"] == int(k)
        assert fan["missing"] == 0
        assert fan["deliveries"] == fan["changes"] * int(k)

    cluster = results["cluster"]
    if glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        assert "skipped" not in cluster, cluster
        storms = cluster["storms"]
        assert list(storms) == ["one domain, 2 nodes", "20 domains, 1 node", "20 domains, 2 nodes"]
        for storm in storms.values():
            assert storm["answers"] == {"welcome": options["cluster_devices"]}
        assert "cluster storm, one domain, 2 nodes: logins per s" in done.stdout
        assert all(fan["missing"] == 0 for fan in cluster["fanout"].values())
