"""Secrets at rest: tokens are stored only as SHA-256 hashes and never logged,
and the SQLite file is readable by its owner only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from server.client import API, Harness, ok, refused
from servers import ServerProcess
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from conftest import StartServer

HEX64 = re.compile(r"[0-9a-f]{64}")


@contextlib.contextmanager
def permissive_umask() -> Iterator[None]:
    """Files made meanwhile (by child processes too) would be world-readable by
    default: the server must restrict the database file itself."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def database_files(workdir: Path) -> list[Path]:
    return sorted(workdir.glob("presence.db*"))


def assert_owner_only(files: list[Path]) -> None:
    assert files, "no database file"
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{path.name} has mode {mode:o}, expected 600"


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def assert_nowhere_in_clear(files: list[Path], tokens: list[str]) -> None:
    """No token in any cell of any table, nor anywhere in the files' bytes."""
    for path in files:
        data = path.read_bytes()
        for token in tokens:
            assert token.encode() not in data, f"a token is in clear in {path.name}"
    with contextlib.closing(sqlite3.connect(files[0])) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f"SELECT * FROM {table}"):
                text = json.dumps(row, default=str)
                for token in tokens:
                    assert token not in text, f"a token is in clear in table {table}"


def stored_hashes(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return [row[0] for row in db.execute("SELECT hash FROM tokens")]


async def use_every_token(harness: Harness) -> list[str]:
    """Make tokens of every role and use each in API calls and hellos; return them."""
    domain = await harness.new_domain()
    pool = await domain.pool(2)
    admin = await domain.token("admin")
    wallboard = await domain.token("wallboard")
    seat_user = await domain.seat_user(pool)
    named_user = await domain.named_user()
    wrong = "prs_" + os.urandom(24).hex()

    ok(await harness.api(admin).get(domain.path()))
    ok(await harness.api(wallboard).get(domain.path("presence")))
    refused(await harness.api(seat_user.token).get(domain.path()), 403, "forbidden")
    refused(await harness.api(wrong).get(domain.path()), 401, "unauthorized")
    seat = await harness.login(seat_user)
    await harness.login(named_user, kind="phone")
    await seat.logout()
    refused_device = await harness.device()
    await refused_device.hello(wrong)
    await refused_device.expect_error("unauthorized")
    bad_device = await harness.device()
    await bad_device.hello(named_user.token, kind="toaster")  # a bad hello with a good token
    await bad_device.expect_error("bad_message")
    board_url = harness.server.ws_url.replace("/ws/device", "/ws/wallboard")
    async with connect(board_url, proxy=None, compression=None, ping_interval=None) as board:
        await board.send(json.dumps({"type": "hello", "token": wallboard}))
        assert json.loads(await board.recv(decode=True))["type"] == "snapshot"
    return [harness.server.admin_token, admin, wallboard, seat_user.token, named_user.token, wrong]


async def test_tokens_are_hashed_at_rest_and_never_logged(own_server: StartServer) -> None:
    with permissive_umask():
        process = own_server("--auth-failures-per-minute", "1000", lease_ttl=30)
    async with Harness(process.server) as harness:
        tokens = await use_every_token(harness)
    assert_owner_only(database_files(process.workdir))
    process.stop()  # flushes the logs

    files = database_files(process.workdir)
    assert_owner_only(files)
    assert_nowhere_in_clear(files, tokens)
    hashes = stored_hashes(files[0])
    assert all(HEX64.fullmatch(h) for h in hashes), hashes
    # Every token made through the API is there, as its SHA-256.
    made = tokens[1:5]
    assert {sha256(token) for token in made} <= set(hashes)
    names = ("stdout.log", "stderr.log")
    logs = "".join((process.workdir / name).read_text(errors="replace") for name in names)
    assert "WebSocket /ws/device" in logs or "/api/v1" in logs, "the server logged nothing"
    for token in tokens:
        assert token not in logs, "a token appears in the server's logs"


def test_a_generated_admin_token_is_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    process = ServerProcess(tmp_path, admin_token=None)
    for run in range(2):
        with permissive_umask():
            process.start()
        try:
            if run == 0:
                printed = re.findall(r"prs_[A-Za-z0-9_-]+", process.stdout.read_text())
                assert len(printed) == 1, printed
                token = printed[0]
            with httpx.Client(base_url=process.base_url, trust_env=False) as http:
                answer = http.get(
                    f"{API}/domains/nothing", headers={"Authorization": f"Bearer {token}"}
                )
            assert answer.status_code == 404, answer.text  # authenticated, no such domain
        finally:
            process.stop()
    stdout = process.stdout.read_text()
    assert stdout.count(token) == 1, "the generated token was printed again"
    assert token not in process.stderr.read_text()
    files = database_files(tmp_path)
    assert_owner_only(files)
    assert_nowhere_in_clear(files, [token])
    assert sha256(token) in stored_hashes(files[0])
