"""The hold from several source addresses, with a census of the node's memory,
at a size that runs in seconds; and how the runner picks addresses and limits.

Only what must be exact is checked: every session welcomed, the addresses the
kernel bound, one node session object per held session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import runner
from bench.fleet import SOURCES, most_per_address, source_addresses, sources_for

REPO = Path(__file__).resolve().parent.parent.parent
TIMEOUT = 120
SESSIONS = 60


def test_hold_from_three_sources_with_a_census(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "hold",
         "--sessions", str(SESSIONS), "--sources", "3", "--census", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    hold = results["hold"]["presence"]
    assert hold["answers"] == {"welcome": SESSIONS}
    assert hold["heartbeats"] > 0 and hold["lost"] == 0
    # Two workers: 127.0.0.2 and 127.0.0.4 for the first, 127.0.0.3 for the second
    # (about half the sessions, as each step's are dealt to the workers in turn).
    assert (hold["sources"], hold["open_at_end"]) == (3, SESSIONS)
    assert SESSIONS / 3 < hold["most_per_source"] < SESSIONS / 2 + 4
    census = hold["census"]
    assert census["sessions"] == SESSIONS and census["object_bytes"] > 0
    per_type = {name: count for name, count, _ in census["types"]}
    assert per_type["presence.node.session.Session"] == pytest.approx(1.0)
    assert f"census of {SESSIONS} sessions" in done.stdout


def test_source_addresses_start_at_127_0_0_2_and_are_dealt_to_workers() -> None:
    assert source_addresses(3, 2) == [["127.0.0.2", "127.0.0.4"], ["127.0.0.3"]]
    assert source_addresses(1, 2) == [["127.0.0.2"], ["127.0.0.2"]]
    assert source_addresses(300, 1)[0][-1] == "127.0.1.45"
    with pytest.raises(ValueError):
        source_addresses(0, 2)


def test_sources_grow_with_the_sockets_past_their_ports() -> None:
    assert sources_for(10_000, ports=28_232) == SOURCES
    assert sources_for(100_000_000, ports=10_000) == 11_112


def test_the_most_sockets_per_address_follow_how_the_fleet_deals_them() -> None:
    slack = len(runner.HOLD_STEPS)  # the hold's steps, each dealt from the first worker
    assert most_per_address(10_000, 500, 2, slack) == 21  # 5,004 over 250 addresses
    assert most_per_address(300, 3, 2, slack) == 154  # worker 1 has one address
    assert most_per_address(300, 1, 2, slack) == 308  # shared by both workers


def test_the_node_cap_per_address_is_raised_only_when_needed() -> None:
    assert runner.parse(["--sessions", "10000"]).per_address is None
    options = runner.parse(["--scenarios", "hold", "--sessions", "15000", "--sources", "2"])
    assert options.per_address == 7504


def test_more_sockets_than_a_process_may_open_is_refused_up_front() -> None:
    with pytest.raises(SystemExit):
        runner.parse(["--scenarios", "hold", "--sessions", "100000000"])


def test_the_collectors_passes_are_counted_with_the_threshold_given(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "storm", "--logins", "50",
         "--gc-threshold", "500", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    results: dict[str, Any] = json.loads((tmp_path / "results.json").read_text())
    assert results["gc_threshold"] == 500
    young = results["collections"]["0"]
    assert young["count"] > 0 and 0 < young["longest"] <= young["seconds"]
    assert "collector, young-generation threshold 500:" in done.stdout
