"""The churn of issue 12 (`churn.issue_churn`), shortened: 25 seat users of a
6-seat pool log in and out, a third of them queuing and some taking over, half
of the sessions ending with an abrupt drop; then every connection is dropped.
On one SQLite server, and on two nodes sharing PostgreSQL. Afterwards no seat
is held and nobody is queued, promptly; meanwhile every hello was answered
(welcome, queued or an error) within `lines.ANSWER_TIMEOUT` (3 s).

`python -m tests.reliability --only churn` runs it for 20 s at the issue's rate.
"""

from __future__ import annotations

from pathlib import Path

from pg import PostgresServer
from servers import ServerProcess, new_admin_token

from .agreement import PROMPT
from .churn import ChurnRun, issue_churn

SECONDS = 8.0
LEASE_TTL = 3


def assert_clean(run: ChurnRun) -> None:
    print(run.summary())
    assert not run.problems(), (run.problems()[:20], run.summary())
    assert run.settled is not None and run.settled.seconds <= PROMPT, run.summary()
    # The churn did what it should: logins every way, and devices waiting in the queue.
    for what in ("welcomes", "queued", "takeovers", "drops", "logouts", "refused:seat_occupied"):
        assert run.counts[what] > 0, (what, run.summary())
    assert run.hellos >= 200, run.summary()


async def test_churn_on_sqlite_leaves_nothing_held(tmp_path: Path) -> None:
    assert_clean(await issue_churn([ServerProcess(tmp_path, lease_ttl=LEASE_TTL)], SECONDS))


async def test_churn_on_two_nodes_sharing_postgresql_leaves_nothing_held(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    database = postgres.create_database()
    token = new_admin_token()
    nodes = [
        ServerProcess(
            tmp_path / f"node-{name}", database=database, admin_token=token, lease_ttl=LEASE_TTL
        )
        for name in "ab"
    ]
    try:
        assert_clean(await issue_churn(nodes, SECONDS))
    finally:
        postgres.drop_database(database)
