"""1,000 clients of one pool through a SIGKILL and restart of their server:
they come back spread out, each to its own seat (see `herd.py`)."""

from __future__ import annotations

from pathlib import Path

from .herd import herd

CLIENTS = 1000
#: No one second may hold more than this share of the connections that reach
#: the restarted server.
MAX_SHARE = 0.2


async def test_a_thousand_clients_come_back_spread_out(tmp_path: Path) -> None:
    report = await herd(tmp_path, CLIENTS)
    print(report.summary())
    assert report.recovered == {True: CLIENTS}, report.summary()
    assert report.max_share() <= MAX_SHARE, report.summary()
