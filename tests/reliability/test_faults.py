"""The long fault runs, reduced so that they run with every test suite and
cannot rot: three kill -9 cycles of the SQLite server, and one of each node
and database fault on PostgreSQL, under a churning fleet of devices.

`python -m tests.reliability` runs them at full length (20 kill cycles).
"""

from __future__ import annotations

from pathlib import Path

from pg import PostgresServer

from .faults import Run, kill_loop, node_faults


def assert_clean(run: Run) -> None:
    assert run.lost == 0, run.problems()
    assert run.verdict.ok, (run.verdict.summary(), run.problems())
    assert not run.presence_faults, run.presence_faults
    # The run did what it should: grants came and went in every way.
    assert run.verdict.grants >= 10, run.counts
    for what in ("logouts", "takeovers", "proofs", "refused:seat_occupied"):
        assert run.counts[what] > 0, (what, run.counts)


async def test_kill_9_loses_no_grant_and_never_grants_a_seat_twice(tmp_path: Path) -> None:
    run = await kill_loop(tmp_path, 3, users=12, seats=4, churn=(1.5, 2.5))
    assert_clean(run)
    assert sum(cycle.live for cycle in run.cycles) > 0, "no grant was live at a kill"


async def test_node_and_database_faults_on_postgresql(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # `postgres` only proves PostgreSQL is installed; the run starts its own,
    # which it can stop and start again.
    del postgres
    run = await node_faults(
        tmp_path, ["kill", "pause", "database:1"], users=12, seats=4, churn=(1.5, 2.5)
    )
    assert_clean(run)
    notes = [note for cycle in run.cycles for note in cycle.notes]
    assert not notes, notes
