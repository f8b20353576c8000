"""The long runs of issue 7, and the report they write: `python -m tests.reliability`.

1. `kill`: SIGKILL of the SQLite server under a churning fleet, 20 times on one
   database (`faults.kill_loop`).
2. `nodes`: two nodes on PostgreSQL under the fleet: node A killed, paused past
   the lease TTL, and the database stopped and started again, short and long
   (`faults.node_faults`).
3. `fuzz`: 10,000+ hostile frames, with a healthy device's heartbeat latency
   before and during (`hostile.campaign`).
4. `random`: the I/O-level randomized run of issue 12 (`randomized.py`), for
   `--seconds` on one SQLite server and on two nodes sharing PostgreSQL, with
   the choices of `--seed`.
5. `churn`: the churn of issue 12 (`churn.issue_churn`), 20 s on SQLite and on
   two nodes sharing PostgreSQL, driven as fast as the machine allows there.
6. `webhooks`: SIGKILL of the SQLite server while it delivers webhooks, `--kills`
   times (10) on one database, and every event must reach the receiver
   (`webhooks.kill_campaign`).

Each writes its figures into `docs/RELIABILITY.md` (or `--out`); the exit
status is 1 if any run found a fault. Bounded in time: about 8 minutes for the
first three, about 5 more for `random` and `churn`, and under a minute for
`webhooks`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from servers import ServerProcess, new_admin_token

from .agreement import PROMPT
from .churn import ISSUE_CHOICES, ChurnRun, issue_churn
from .faults import Postgres, Run, kill_loop, node_faults
from .fleet import percentiles
from .hostile import campaign, prepare
from .lines import ANSWER_TIMEOUT
from .randomized import LEASE_TTL, Report, randomized_run
from .webhooks import NEAR, kill_campaign

REPO = Path(__file__).resolve().parent.parent.parent
NODE_FAULTS = ["kill", "pause", "database:1", "kill", "database:2.5", "pause", "database:6", "kill"]
CHURN_SECONDS = 20.0
#: On PostgreSQL the churn runs each user on this many pairs of devices at
#: once, without pauses, and a device gives up on a hello unanswered after
#: CHURN_PATIENCE s: the issue's storm (about 350 hellos a second, devices
#: dropping the hellos left waiting).
CHURN_PAIRS = 3
CHURN_PATIENCE = 1.0
FUZZ_BUDGET = 240.0  # seconds
BASELINE_SECONDS = 15.0
COMMAND = "python -m tests.reliability"


@dataclass
class Section:
    title: str
    ok: bool
    summary: str
    body: list[str] = field(default_factory=list)


def say(text: str) -> None:
    print(text, flush=True)


#: asyncpg's pool logs this warning with its traceback each time it fails to
#: reconnect to a database that is down: the pool retrying, not a server error.
ASYNCPG_RETRY = "Failed to restore the pool connection floor; retrying\nTraceback"


def tracebacks(*logs: Path) -> int:
    """Unhandled exceptions a server logged (asyncpg's reconnect warnings apart)."""
    total = 0
    for log in logs:
        if log.exists():
            text = log.read_text(errors="replace")
            total += text.count("Traceback") - text.count(ASYNCPG_RETRY)
    return total


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def operations(run: Run) -> list[list[object]]:
    c = run.counts
    refusals = sum(n for key, n in c.items() if key.startswith("refused:"))
    return [
        ["devices (seat users) / seats", f"{run.users} / {run.seats}"],
        ["lease TTL", f"{run.lease_ttl:g} s"],
        ["logins tried", c["logins"]],
        ["welcomes (acknowledged grants, takeovers included)", run.verdict.grants],
        ["refused logins", f"{refusals} ({_refusals(run)})"],
        [
            "logouts / dropped connections / takeovers",
            f"{c['logouts']} / {c['drops']} / {c['takeovers']}",
        ],
        ["lease proofs (call started and ended)", c["proofs"]],
        ["presence snapshots checked", run.snapshots],
        ["faults injected", len(run.cycles)],
        ["acknowledged grants live at a fault", sum(cycle.live for cycle in run.cycles)],
        ["**grants lost**", f"**{run.lost}**"],
        ["**proven double holders**", f"**{len(run.verdict.double_holders)}**"],
        [
            "**moments with two believing holders** (beyond 1 s grace)",
            f"**{len(run.verdict.overlaps)}**",
        ],
        [
            "longest overlap of two holders' beliefs (delivery of one change)",
            f"{run.verdict.longest_overlap * 1000:.0f} ms",
        ],
        ["**fencing-token order faults**", f"**{len(run.verdict.fencing)}**"],
        ["snapshots with a seat or user twice", len(run.presence_faults)],
    ]


def _refusals(run: Run) -> str:
    found = sorted(
        (k.removeprefix("refused:"), n) for k, n in run.counts.items() if k.startswith("refused:")
    )
    return ", ".join(f"{code} {n}" for code, n in found)


def problems(run: Run) -> list[str]:
    found = run.problems()
    if not found:
        return []
    shown = [f"- {problem}" for problem in found[:30]]
    more = [f"- ... and {len(found) - 30} more"] if len(found) > 30 else []
    return ["Faults found:", "", *shown, *more, ""]


def kill_section(workdir: Path, cycles: int) -> Section:
    say(f"kill -9 loop: {cycles} cycles")
    run = asyncio.run(kill_loop(workdir, cycles, say=say))
    logged = tracebacks(workdir / "stderr.log")
    body = [
        "Thirty seat users share a pool of ten seats on the SQLite server and log in",
        "and out continuously: each holds its seat for a moment, proving now and then",
        "that its lease exists (a call started and ended), then logs out, drops its",
        "connection, or takes the seat over from its other device; refused, it tries",
        "again. The server is killed with SIGKILL at a random moment, restarted on the",
        "same database and port, and the devices come back. After every restart, every",
        "grant a device had been told of and neither let go nor been told the end of",
        '("live") must be in the presence snapshot, with its lease id, before anyone',
        "reconnects; then its holder logs in again from the same device and must get",
        "the same seat with a higher fencing token. At the end, the per-seat history",
        "checker (`tests/reliability/history.py`) goes over every welcome, every end,",
        "every lease proof and every presence snapshot the clients saw.",
        "",
        *table(
            ["figure", "value"],
            [
                *operations(run),
                ["restart (kill to healthy)", spread([c.down_seconds for c in run.cycles])],
                [
                    "reclaim (restart to the last holder's welcome)",
                    spread([c.reclaim_seconds for c in run.cycles]),
                ],
                ["unhandled exceptions in the server's log", logged],
                ["run time", f"{run.seconds:.0f} s"],
            ],
        ),
        *table(
            ["cycle", "live grants", "lost", "restart", "reclaim"],
            [
                [c.fault, c.live, c.lost, f"{c.down_seconds:.2f} s", f"{c.reclaim_seconds:.2f} s"]
                for c in run.cycles
            ],
        ),
        *problems(run),
    ]
    summary = (
        f"{len(run.cycles)} kills, {run.verdict.grants} grants, {run.lost} lost, "
        f"{len(run.verdict.double_holders) + len(run.verdict.overlaps)} double holders"
    )
    return Section(f"kill -9 of the SQLite server, {cycles} times", run.ok, summary, body)


def nodes_section(workdir: Path) -> Section:
    say(f"two nodes on PostgreSQL: {', '.join(NODE_FAULTS)}")
    run = asyncio.run(node_faults(workdir, NODE_FAULTS, say=say))
    logged = tracebacks(*workdir.glob("node-*/stderr.log"))
    notes = [f"- {c.fault}: {note}" for c in run.cycles for note in c.notes]
    closed = run.counts["refused:closed"]
    body = [
        "The same fleet on two nodes, A and B, sharing one PostgreSQL database; each",
        "device connects to either node. Faults, one after the other under load:",
        "`kill` (SIGKILL of node A: its devices log in again through B from the same",
        "device and must keep their seats; then A is started again), `pause` (SIGSTOP",
        "of node A for the lease TTL + 2 s, then SIGCONT: its devices give up on it after",
        "3 s without an answer and log in through B; A must never serve the seats it",
        "lost) and `database:N` (PostgreSQL stopped with a fast shutdown, which cuts",
        "every connection, and started again N s later: both nodes must report healthy",
        "again and devices must log in again).",
        "",
        *table(
            ["figure", "value"],
            [
                *operations(run),
                [
                    "logins answered by a closed connection (mostly while the database was down)",
                    closed,
                ],
                ["unhandled exceptions in the nodes' logs", logged],
                ["run time", f"{run.seconds:.0f} s"],
            ],
        ),
        *table(
            ["fault", "live grants", "lost", "back after"],
            [[c.fault, c.live, c.lost, f"{c.down_seconds:.2f} s"] for c in run.cycles],
        ),
        *(["Notes:", "", *notes, ""] if notes else []),
        *problems(run),
    ]
    ok = run.ok and not notes
    summary = (
        f"{len(run.cycles)} faults, {run.verdict.grants} grants, {run.lost} lost, "
        f"{len(run.verdict.double_holders) + len(run.verdict.overlaps)} double holders"
    )
    return Section("Node and database faults, two nodes on PostgreSQL", ok, summary, body)


def fuzz_section(workdir: Path, frames: int) -> Section:
    say(f"hostile frames: {frames}+")
    process = ServerProcess(workdir, lease_ttl=30, flags=("--auth-failures-per-minute", "1000000"))
    process.start()
    try:
        server = process.server
        target = prepare(server.base_url, server.admin_token, f"fuzz-{uuid.uuid4().hex[:8]}")
        result = campaign(target, frames, FUZZ_BUDGET, BASELINE_SECONDS)
        alive = process.process is not None and process.process.poll() is None
    finally:
        process.stop()
    logged = tracebacks(workdir / "stderr.log")
    figures = result.figures
    ok = alive and not figures.violations and figures.frames >= frames
    body = [
        "Hypothesis generates short device connections (`tests/reliability/hostile.py`):",
        "sometimes a good hello first, then up to six frames of random JSON, messages",
        "with fields dropped, retyped or added, near-miss types, strings up to 160 KB,",
        "odd characters (lone surrogates, NUL, controls, bidi overrides), bad UTF-8 in",
        "text frames, binary frames, frames right at and far over 64 KiB, arrays nested",
        "30,000 deep, hellos with bad tokens, bad devices and users of every license.",
        "Each answer is checked against the spec, tracking whether the connection is",
        "logged in and how many bad messages it sent (the fifth closes it 4400); after",
        "the frames the connection must still answer a heartbeat. Meanwhile a healthy",
        "device heartbeats every 50 ms on its own connection.",
        "",
        *table(
            ["figure", "value"],
            [
                ["hostile frames sent", figures.frames],
                ["connections", figures.connections],
                ["server up at the end (never restarted)", "yes" if alive else "**no**"],
                ["**answers the spec does not allow**", f"**{sum(figures.violations.values())}**"],
                ["unhandled exceptions in the server's log", logged],
                ["healthy heartbeat without the fuzz", result.baseline.summary()],
                ["healthy heartbeat during the fuzz", result.during.summary()],
                ["run time", f"{result.seconds:.0f} s"],
            ],
        ),
        *table(["frame family", "frames"], sorted(figures.by_family.items())),
        *table(["answer", "count"], sorted(figures.answers.items())),
    ]
    if figures.violations:
        body += ["Answers the spec does not allow, by kind, with the first example:", ""]
        for kind, count in figures.violations.most_common():
            body += [f"- {count} × {kind}: `{figures.examples[kind][:400]}`"]
        body += [""]
    summary = (
        f"{figures.frames} frames, {sum(figures.violations.values())} wrong answers, "
        f"heartbeat p99 {result.baseline.p99 * 1000:.1f} ms without, "
        f"{result.during.p99 * 1000:.1f} ms during"
    )
    return Section("Hostile frames", ok, summary, body)


@contextlib.contextmanager
def two_nodes(workdir: Path, lease_ttl: float) -> Iterator[list[ServerProcess]]:
    """Two server nodes (not started) on a PostgreSQL server of their own."""
    postgres = Postgres()
    try:
        postgres.start()
        database = postgres.create_database()
        token = new_admin_token()
        yield [
            ServerProcess(
                workdir / f"node-{name}", database=database, admin_token=token, lease_ttl=lease_ttl
            )
            for name in "ab"
        ]
    finally:
        postgres.remove()


def random_section(workdir: Path, seconds: float, seed: int) -> Section:
    say(f"randomized operations: {seconds:g} s per backend, seed {seed}")
    reports: list[Report] = []
    node = ServerProcess(workdir / "sqlite", lease_ttl=LEASE_TTL)
    reports.append(asyncio.run(randomized_run([node], seconds, seed, "SQLite")))
    say(reports[-1].text())
    with two_nodes(workdir, LEASE_TTL) as nodes:
        run = randomized_run(nodes, seconds, seed, "two nodes on PostgreSQL")
        reports.append(asyncio.run(run))
    say(reports[-1].text())
    logged = tracebacks(*workdir.glob("*/stderr.log"))
    body = [
        "Real devices do random operations on real servers and drop out at random points",
        "of every step (`tests/reliability/randomized.py`): one domain with pools of 1, 2",
        "and 4 seats, 17 seat users and 4 named users with three devices each; each user",
        "logs in (asking to queue, to take over, or on a device it already uses), acquires",
        "again after a refusal, calls and logs out, and disconnects by a clean close or an",
        "abrupt TCP drop before `hello`, right after it, after `queued`, after a refusal,",
        "during a call, during `logout`, during a takeover; two admins race them: seats",
        "granted from the queue while the queued devices drop, admin releases and license",
        "changes while the devices drop, pool resizes. At quiet points (every actor parked)",
        "presence must agree with the live devices: every held lease belongs to a live",
        "session welcomed to that seat, occupancy and queues equal the live holders and",
        "waiters, nothing is held twice. After the run every device goes (closed or",
        f"dropped) and nothing may stay held or queued (promptly: within {PROMPT:g} s; at",
        f"worst within lease_ttl {LEASE_TTL} s + a margin). Seed {seed}: "
        f"`{COMMAND} --only random --seed {seed}` replays its choices.",
        "",
        *table(
            ["figure", *[r.backend for r in reports]],
            [
                ["operations", *[sum(r.operations.values()) for r in reports]],
                ["disconnects injected", *[sum(r.disconnects.values()) for r in reports]],
                ["quiet points checked", *[len(r.quiet_waits) for r in reports]],
                ["grants (welcomes of a seat)", *[r.verdict.grants for r in reports]],
                ["hello/acquire answer time", *[percentiles(r.latencies) for r in reports]],
                [
                    "after every device was gone",
                    *[r.settled.summary() if r.settled else "-" for r in reports],
                ],
                ["**violations**", *[f"**{len(r.violations)}**" for r in reports]],
            ],
        ),
        f"Unhandled exceptions in the servers' logs: {logged}.",
        "",
    ]
    for report in reports:
        body += ["```", report.text(), "```", ""]
    ok = all(report.ok for report in reports) and not logged
    summary = "; ".join(
        f"{r.backend}: {sum(r.operations.values())} operations, "
        f"{sum(r.disconnects.values())} disconnects, {len(r.violations)} violations"
        for r in reports
    )
    return Section("Randomized operations with disconnects (issue 12)", ok, summary, body)


def churn_section(workdir: Path) -> Section:
    say(f"the churn of issue 12: {CHURN_SECONDS:g} s per backend")
    runs: list[ChurnRun] = []
    node = ServerProcess(workdir / "sqlite", lease_ttl=LEASE_TTL)
    runs.append(asyncio.run(issue_churn([node], CHURN_SECONDS)))
    say(runs[-1].summary())
    flat_out = replace(ISSUE_CHOICES, backoff=(0.0, 0.0), patience=CHURN_PATIENCE)
    with two_nodes(workdir, LEASE_TTL) as nodes:
        churn = issue_churn(nodes, CHURN_SECONDS, choices=flat_out, pairs=CHURN_PAIRS)
        runs.append(asyncio.run(churn))
    say(runs[-1].summary())
    logged = tracebacks(*workdir.glob("*/stderr.log"))
    body = [
        "25 seat users of a 6-seat pool log in and out for 20 s, a third of them asking to",
        "queue (and leaving the queue after up to a second) and some taking over; half of",
        "the holds and half of the refused or queue-leaving sessions end with an abrupt",
        "drop; then every connection is dropped, in the middle of whatever it was doing.",
        "Afterwards no seat may be held and nobody queued; meanwhile each `hello` and",
        "`acquire` must be answered (`welcome`, `queued` or an error) within "
        f"{ANSWER_TIMEOUT:g} s.",
        f"On PostgreSQL each user churns on {CHURN_PAIRS} pairs of devices at once, without",
        "pauses, for the issue's rate of hellos (about 350 a second for one domain), and a",
        f"device waits at most {CHURN_PATIENCE:g} s for the answer to its `hello`: one left",
        "waiting longer gives up (drops its connection), and counts as a fault.",
        "",
        *table(
            ["figure", "SQLite", "two nodes on PostgreSQL"],
            [
                ["hellos", *[r.hellos for r in runs]],
                ["hellos a second", *[f"{r.hellos / r.seconds:.0f}" for r in runs]],
                ["answered by a welcome", *[r.answers["welcome"] for r in runs]],
                ["answers", *[dict(r.answers.most_common()) for r in runs]],
                ["answer time", *[percentiles(r.latencies) for r in runs]],
                ["hellos left unanswered (gave up)", *[r.counts["timeouts"] for r in runs]],
                ["connections dropped at the end", *[r.counts["dropped at the end"] for r in runs]],
                ["afterwards", *[r.settled.summary() if r.settled else "-" for r in runs]],
                ["**faults**", *[f"**{len(r.problems())}**" for r in runs]],
            ],
        ),
        f"Unhandled exceptions in the servers' logs: {logged}.",
        "",
    ]
    for run in runs:
        if run.problems():
            body += [
                f"Faults on {run.nodes} node(s):",
                "",
                *[f"- {p}" for p in run.problems()[:30]],
                "",
            ]
    ok = not any(run.problems() for run in runs) and not logged
    summary = "; ".join(r.summary() for r in runs)
    return Section("The churn of issue 12", ok, summary, body)


def webhooks_section(workdir: Path, kills: int, seed: int) -> Section:
    say(f"webhooks across kill -9: {kills} kills, seed {seed}")
    campaign = asyncio.run(kill_campaign(workdir, kills, seed=seed, say=say))
    logged = tracebacks(workdir / "server" / "stderr.log")
    verdict = campaign.verdict
    before = verdict.before_kill
    body = [
        "One endpoint of a domain points at a receiver process (`tests/webhooks/receiver.py`,",
        "answering 200) that outlives every server. Twelve seat users churn on a pool of four",
        "seats (logins, calls, logouts, drops, takeovers, refusals; capacity alerts every",
        "second), so events keep coming. The server is killed with SIGKILL and started again",
        "on the same database, in turn while the receiver holds a request unanswered (its",
        "event was not delivered), and at a random moment right after the receiver logged a",
        "request it answered 200; the devices come back. After the last kill they go, and",
        "every event the domain logged after the endpoint's creation (`GET .../events`) must",
        "reach the receiver: answered 2xx at least once, the first arrivals in id order, each",
        "the event as the events API gives it and signed with the endpoint's secret. It may",
        "arrive twice only across a kill, and only if it first arrived at most "
        f"{NEAR:g} s before it",
        "(delivered, and not yet noted by the server when it died).",
        "",
        *table(
            ["figure", "value"],
            [
                ["events to deliver", verdict.events],
                [
                    "kills at a request in flight or just answered / all",
                    f"{sum(c.delivering for c in campaign.cycles)} / {len(campaign.cycles)}",
                ],
                ["requests answered 2xx", verdict.requests],
                ["**lost**", f"**{len(verdict.lost)}**"],
                ["**first arrivals out of id order**", f"**{len(verdict.disorder)}**"],
                ["**wrong requests** (body, signature)", f"**{len(verdict.wrong)}**"],
                ["duplicates", sum(verdict.duplicates.values())],
                ["**duplicates not explained by a kill**", f"**{len(verdict.unexplained)}**"],
                [
                    "first arrival of a duplicate, before its kill",
                    spread(before) if before else "-",
                ],
                ["events by type", dict(campaign.by_type.most_common())],
                ["restart (kill to healthy)", spread([c.down_seconds for c in campaign.cycles])],
                [
                    f"delivery resumed (kill to next request; lease_ttl {campaign.lease_ttl:g} s)",
                    spread([c.resumed_seconds for c in campaign.cycles if c.resumed_seconds]),
                ],
                [
                    "all delivered, after the load ended",
                    f"{campaign.drain_seconds:.2f} s" if campaign.drained else "**never**",
                ],
                ["unhandled exceptions in the server's log", logged],
                ["run time", f"{campaign.seconds:.0f} s"],
            ],
        ),
        *table(
            ["kill", "at", "requests in the second before", "resumed", "duplicates"],
            [
                [
                    c.kill.label,
                    "a request in flight" if c.in_flight else "just after a 200",
                    c.recent,
                    _seconds(c.resumed_seconds),
                    c.duplicates,
                ]
                for c in campaign.cycles
            ],
        ),
    ]
    if campaign.problems():
        body += ["Faults found:", "", *[f"- {p}" for p in campaign.problems()[:30]], ""]
    ok = campaign.ok and not logged
    return Section("Webhooks across kill -9 of the SQLite server", ok, campaign.summary(), body)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" with uncommitted changes" if git("status", "--porcelain", "presence") else "")


FAST_TESTS = [
    ("test_faults.py", "3 kill -9 cycles of the same loop, and one run of each node fault"),
    (
        "test_half_open.py",
        "a holder that stops reading and sending loses its seat within lease_ttl + 1 s",
    ),
    (
        "test_hostile_frames.py",
        "300 generated scenarios (about 1,000 frames) with the "
        "heartbeat p99 bound, and frames that once broke the server",
    ),
    ("test_deadlines.py", "hello_timeout after 5 s; unfinished HTTP requests closed within 30 s"),
    ("test_guard.py", "connections per address capped; token guessing blocks the address"),
    ("test_origin.py", "Origin checked on both WebSocket endpoints"),
    (
        "test_auth_matrix.py",
        "every admin endpoint with every kind of token; refusals change nothing",
    ),
    ("test_secrets.py", "tokens stored as SHA-256 only, never logged; database file mode 0600"),
    ("test_history.py", "the history checker itself, on histories written by hand"),
    (
        "test_randomized.py",
        "the randomized operations with disconnects, 8 s on SQLite and on two nodes on PostgreSQL",
    ),
    ("test_churn.py", "the churn of issue 12, 8 s on SQLite and on two nodes on PostgreSQL"),
    (
        "test_webhook_crashes.py",
        "webhooks across 2 kill -9 cycles: nothing lost, duplicates only across a kill",
    ),
]


def write(out: Path, sections: list[Section], seconds: float, argv: list[str]) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join([COMMAND, *argv])
    lines = [
        "# Reliability: faults and hostile input",
        "",
        f"Written by `{command}` on {now}, at commit {commit()}, "
        f"on {os.cpu_count()} CPUs with Python {platform.python_version()}, "
        f"in {seconds / 60:.1f} minutes.",
        "",
        "Everything runs as real processes on 127.0.0.1: the servers, PostgreSQL, and",
        "the clients, in one asyncio process that timestamps all they see with one",
        "monotonic clock (the fuzz's healthy device runs in a process of its own).",
        "",
        *table(
            ["run", "result", "figures"],
            [[s.title, "pass" if s.ok else "**FAIL**", s.summary] for s in sections],
        ),
    ]
    for number, section in enumerate(sections, 1):
        lines += [f"## {number}. {section.title}", "", *section.body]
    lines += [
        "## The fast part, in the normal test suite",
        "",
        "`python -m pytest tests/reliability` (about 3 minutes):",
        "",
        *[f"- `{name}`: {what}" for name, what in FAST_TESTS],
        "",
        "## How to reproduce",
        "",
        "```sh",
        "pip install -e '.[test]'          # and Debian's postgresql package, for `nodes`",
        f"{COMMAND}                # all three runs, writes docs/RELIABILITY.md",
        f"{COMMAND} --only kill --cycles 5 --out /tmp/r.md",
        f"{COMMAND} --only fuzz --frames 2000 --out /tmp/r.md",
        f"{COMMAND} --only webhooks --kills 10 --out /tmp/r.md",
        "python -m pytest tests/reliability -q",
        "```",
        "",
        "A run is random (the fleet's moves, the kill moments, hypothesis' frames); the",
        "checks are not: any lost grant, double holder, fencing fault or answer outside",
        "the spec fails it.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


RUNS: dict[str, Callable[[Path, argparse.Namespace], Section]] = {
    "kill": lambda workdir, args: kill_section(workdir, args.cycles),
    "nodes": lambda workdir, args: nodes_section(workdir),
    "fuzz": lambda workdir, args: fuzz_section(workdir, args.frames),
    "random": lambda workdir, args: random_section(workdir, args.seconds, args.seed),
    "churn": lambda workdir, args: churn_section(workdir),
    "webhooks": lambda workdir, args: webhooks_section(workdir, args.kills, args.seed),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    parser.add_argument("--cycles", type=int, default=20, help="kill -9 cycles")
    parser.add_argument("--frames", type=int, default=10_000, help="hostile frames, at least")
    parser.add_argument("--kills", type=int, default=10, help="kill -9 cycles of `webhooks`")
    parser.add_argument("--only", action="append", choices=sorted(RUNS), help="repeatable")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="randomized run length, per backend"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="randomized run's seed (default: a new one)"
    )
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="presence-reliability-"))
    sections = []
    for name in args.only or list(RUNS):
        workdir = root / name
        workdir.mkdir()
        section = RUNS[name](workdir, args)
        say(f"{name}: {'pass' if section.ok else 'FAIL'}: {section.summary}")
        sections.append(section)
    write(args.out, sections, time.monotonic() - started, argv)
    say(f"wrote {args.out}")
    if all(section.ok for section in sections):
        shutil.rmtree(root, ignore_errors=True)
        return 0
    say(f"the servers' logs are in {root}")
    return 1
