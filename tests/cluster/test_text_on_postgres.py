"""Text PostgreSQL cannot store (NUL) is refused as bad input, never taken to
the database: there it would fail as `unavailable`, as if the database were
down, and a device told so would retry without end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import PostgresServer
from server.client import Harness, Server, ok, refused
from servers import ServerProcess


@pytest.fixture
def node(postgres: PostgresServer, tmp_path: Path) -> Iterator[Server]:
    database_url = postgres.create_database()
    try:
        with ServerProcess(tmp_path, database=database_url) as process:
            yield process.server
    finally:
        postgres.drop_database(database_url)


async def test_nul_in_paths_bodies_and_frames_is_bad_input(node: Server) -> None:
    async with Harness(node) as harness:
        domain = await harness.new_domain()
        member = await domain.named_user()
        admin = harness.admin

        refused(await admin.get(f"/api/v1/domains/{domain.id}%00"), 400, "bad_request", "domain")
        refused(await admin.delete(domain.path("users", "a%00b")), 400, "bad_request", "user")
        refused(await admin.delete(domain.path("leases", "%00")), 400, "bad_request", "lease_id")
        body = {"email": "ann@example.com", "name": "Ann\x00", "license": {"model": "named"}}
        refused(await admin.post(domain.path("users"), body), 400, "bad_request", "name")
        body = {"email": "a\x00n@example.com", "name": "Ann", "license": {"model": "named"}}
        refused(await admin.post(domain.path("users"), body), 400, "bad_request", "email")
        assert list(await domain.users()) == [member.id]

        device = await harness.device(heartbeats=False)
        await device.hello(member.token, name="Ann's\x00PC")
        await device.expect_error("bad_message")
        assert (await device.login(member.token))["type"] == "welcome"
        await device.send({"type": "call_start", "call_id": "c\x00"})
        await device.expect_error("bad_message")
        await device.call_start("c-1")
        await device.expect("call_started", call_id="c-1")
        ok(await harness.api(None).get("/healthz"))
