"""The storage contract (`presence.storage.base`), one suite for every backend.

Each test runs against SQLite and PostgreSQL (see `conftest.py`), except the
few about what only a database shared by several nodes does: nodes starting
together, notes reaching other nodes, a node cut off and coming back, domains
locked separately.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from presence import notes
from presence.core.model import (
    Device,
    Domain,
    Event,
    Lease,
    License,
    Pool,
    QueueSample,
    User,
    Waiter,
)
from presence.core.seats import Occupancy
from presence.core.usage import FREEING, History, PoolState, SampleRow, history_of
from presence.errors import RuleViolation, StorageError
from presence.notes import Note
from presence.storage import EventQuery, Store, Token, TokenGrant, sqlite, store_for_url
from presence.storage.base import LAST_USED_RESOLUTION, read_history
from presence.storage.sqlite import SQLiteStore

from .conftest import LONG_TTL, Nodes

#: Bounds a wait for something that should happen at once; only a failing
#: test waits this long.
WAIT = 5.0
#: Short enough for expiry tests to be quick, long enough to check a lease
#: right after it was renewed.
SHORT_TTL = 0.5
#: Long enough for another node to open, on a busy machine, before it runs out.
CLOSING_TTL = 2.0

only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
only_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
by_id = attrgetter("id")
T = TypeVar("T")


def new_domain(domain_id: str = "acme", named_licenses: int = 0) -> Domain:
    return Domain(domain_id, "Acme", "enterprise", named_licenses, 10)


def new_lease(
    node: Store,
    *,
    domain_id: str = "acme",
    user_id: str = "u1",
    pool: str | None = "desk",
    seat: int | None = 1,
    since: float = 1000.0,
) -> Lease:
    lease_id = uuid.uuid4().hex
    return Lease(
        id=lease_id,
        session_id=f"session-{lease_id}",
        domain_id=domain_id,
        user_id=user_id,
        user_name=f"User {user_id}",
        device=Device(f"device-{user_id}", "desktop", "Desk"),
        since=since,
        pool=pool,
        seat=seat,
        idle_since=since,
    )


def bare(leases: T) -> T:
    """Leases without the fencing tokens the store gave them, to compare with what was inserted."""
    if isinstance(leases, list):
        return [replace(x, fencing_token=None) for x in leases]  # type: ignore[return-value]
    if isinstance(leases, Lease):
        return replace(leases, fencing_token=None)  # type: ignore[return-value]
    return leases


def new_waiter(node: Store, user_id: str, *, pool: str = "desk", since: float = 1000.0) -> Waiter:
    session_id = uuid.uuid4().hex
    return Waiter(
        session_id, f"lease-{session_id}", "acme", pool, user_id,
        f"User {user_id}", Device(f"device-{user_id}", "phone"), since,
    )  # fmt: skip


def new_event(
    type_: str,
    at: float,
    *,
    domain_id: str = "acme",
    pool: str | None = "desk",
    user_id: str = "u1",
) -> Event:
    return Event(
        type_, at, domain_id, user_id, f"device-{user_id}", pool, None if pool is None else 1
    )


class Inbox:
    """The notes a store's node receives, read up to a marker note."""

    def __init__(self, store: Store) -> None:
        self._queue: asyncio.Queue[Note] = asyncio.Queue()
        store.subscribe(self._received)

    async def _received(self, note: Note) -> None:
        self._queue.put_nowait(note)

    async def next(self) -> Note:
        return await asyncio.wait_for(self._queue.get(), WAIT)

    async def until(self, marker: Note) -> list[Note]:
        """Every note received before ``marker``, which must come within `WAIT`."""
        received = []
        while (note := await self.next()) != marker:
            received.append(note)
        return received


async def send_marker(store: Store) -> Note:
    marker = notes.PoolChanged("marker", uuid.uuid4().hex)
    async with store.transaction() as tx:
        tx.notify(marker)
    return marker


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Wait until the coroutine function ``check`` returns true."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"{check.__name__} still false after {timeout}s"
        await asyncio.sleep(0.02)


# Domains, pools, users and tokens.


async def test_domains(store: Store) -> None:
    async with store.transaction("acme") as tx:
        assert await tx.domain("acme") is None
        await tx.insert_domain(new_domain())
    async with store.transaction("acme") as tx:
        assert await tx.domain("acme") == new_domain()
        await tx.update_domain(replace(new_domain(), name="Acme Inc", named_licenses=5))
    async with store.transaction() as tx:
        assert await tx.domain("acme") == replace(new_domain(), name="Acme Inc", named_licenses=5)


async def test_every_domain_by_id(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.domains() == []
    for domain_id in ("zeta", "acme", "m-2"):
        async with store.transaction(domain_id) as tx:
            await tx.insert_domain(new_domain(domain_id))
    async with store.transaction() as tx:
        assert await tx.domains() == [new_domain(d) for d in ("acme", "m-2", "zeta")]


async def test_a_second_domain_with_an_id_is_refused(store: Store) -> None:
    async with store.transaction("acme") as tx:
        await tx.insert_domain(new_domain())
    with pytest.raises(RuleViolation) as refused:
        async with store.transaction("acme") as tx:
            await tx.insert_domain(replace(new_domain(), name="Other"))
    assert refused.value.code == "already_exists"
    async with store.transaction() as tx:
        assert await tx.domain("acme") == new_domain()


async def test_pools_in_the_order_they_were_created(store: Store) -> None:
    pools = [Pool("acme", pool_id, pool_id.title(), 2) for pool_id in ("sales", "desk", "it")]
    async with store.transaction("acme") as tx:
        for pool in pools:
            await tx.insert_pool(pool)
        await tx.insert_pool(Pool("other", "desk", "Elsewhere", 1))
    async with store.transaction("acme") as tx:
        assert await tx.pools("acme") == pools
        await tx.update_pool(replace(pools[1], name="Help desk", seats=5, idle_logoff_s=60))
        await tx.delete_pool("acme", "sales")
    async with store.transaction("acme") as tx:
        assert await tx.pools("acme") == [
            replace(pools[1], name="Help desk", seats=5, idle_logoff_s=60),
            pools[2],
        ]
        assert await tx.pools("other") == [Pool("other", "desk", "Elsewhere", 1)]
        assert await tx.pool("acme", "desk") == replace(
            pools[1], name="Help desk", seats=5, idle_logoff_s=60
        )
        assert await tx.pool("other", "desk") == Pool("other", "desk", "Elsewhere", 1)
        assert await tx.pool("acme", "sales") is None
    with pytest.raises(RuleViolation) as refused:
        async with store.transaction("acme") as tx:
            await tx.insert_pool(Pool("acme", "desk", "Again", 1))
    assert refused.value.code == "already_exists"


async def test_users_in_the_order_they_were_created(store: Store) -> None:
    users = [
        User("acme", "u2", "b@example.com", "Bea", License("named")),
        User("acme", "u1", "a@example.com", "Al", License("seat", "desk")),
        User("acme", "u3", "c@example.com", "Cy", License("none")),
    ]
    async with store.transaction("acme") as tx:
        for user in users:
            await tx.insert_user(user)
        await tx.insert_user(User("other", "u1", "a@example.com", "Al", License("named")))
    async with store.transaction("acme") as tx:
        assert await tx.users("acme") == users
        assert await tx.user("acme", "u1") == users[1]
        assert await tx.user("acme", "nobody") is None
        assert await tx.email_taken("acme", "b@example.com")
        assert (await tx.named_users("acme"), await tx.named_users("other")) == (1, 1)
        moved = replace(users[1], name="Alan", license=License("named"))
        await tx.update_user(moved)
    async with store.transaction("acme") as tx:
        assert await tx.user("acme", "u1") == moved
        assert await tx.named_users("acme") == 2
        assert not await tx.email_taken("nobody", "a@example.com")
        assert await tx.user("other", "u1") == User(
            "other", "u1", "a@example.com", "Al", License("named")
        )


async def test_an_email_has_one_user_per_domain(store: Store) -> None:
    async with store.transaction("acme") as tx:
        await tx.insert_user(User("acme", "u1", "a@example.com", "Al", License("named")))
    with pytest.raises(RuleViolation) as refused:
        async with store.transaction("acme") as tx:
            await tx.insert_user(User("acme", "u2", "a@example.com", "Ann", License("named")))
    assert refused.value.code == "already_exists"


async def test_an_email_is_taken_whatever_its_case(store: Store) -> None:
    async with store.transaction("acme") as tx:
        await tx.insert_user(User("acme", "u1", "Ann.Lee@Example.com", "Ann", License("named")))
        await tx.insert_user(User("other", "u1", "bob@example.com", "Bob", License("named")))
    async with store.transaction("acme") as tx:
        for email in ("Ann.Lee@Example.com", "ann.lee@example.com", "ANN.LEE@EXAMPLE.COM"):
            assert await tx.email_taken("acme", email)
        for email in ("ann@example.com", "ann.lee@example.co", "ann.lee@example.com "):
            assert not await tx.email_taken("acme", email)
        assert not await tx.email_taken("acme", "bob@example.com")  # another domain's
        assert await tx.email_taken("other", "Bob@example.com")
        await tx.delete_user("acme", "u1")
        assert not await tx.email_taken("acme", "ann.lee@example.com")


def new_token(
    role: str = "admin",
    domain_id: str | None = "acme",
    user_id: str | None = None,
    *,
    created_at: float | None = 1000.0,
    expires_at: float | None = None,
    last_used_at: float | None = None,
) -> Token:
    return Token(
        uuid.uuid4().hex, role, domain_id, user_id, f"{role} token", created_at, expires_at,
        last_used_at,
    )  # fmt: skip


async def test_tokens(store: Store) -> None:
    tokens = {
        "server-hash": new_token("server", None),
        "admin-hash": new_token("admin"),
        "user-hash": new_token("user", user_id="u1"),
    }
    async with store.transaction() as tx:
        for token_hash, token in tokens.items():
            await tx.insert_token(token_hash, token)
    async with store.transaction() as tx:
        for token_hash, token in tokens.items():
            grant = await tx.use_token(token_hash)
            assert grant == TokenGrant(token.role, token.domain_id, token.user_id, token.id)
        assert await tx.use_token("unknown") is None
    with pytest.raises(StorageError):
        async with store.transaction() as tx:
            await tx.insert_token("admin-hash", new_token("wallboard"))


async def test_tokens_of_a_domain_oldest_first(store: Store) -> None:
    late = new_token("admin", created_at=30.0)
    early = new_token("user", user_id="u1", created_at=10.0)
    made_before_ids = new_token("wallboard", created_at=None)
    expired = new_token("wallboard", created_at=20.0, expires_at=25.0)
    server = new_token("server", None)
    other = new_token("admin", "other")
    async with store.transaction() as tx:
        for token in (late, early, made_before_ids, expired, server, other):
            await tx.insert_token(f"hash-{token.id}", token)
    async with store.transaction() as tx:
        assert await tx.tokens("acme") == [made_before_ids, early, expired, late]
        assert await tx.tokens(None) == [server]
        assert await tx.tokens("nobody") == []


async def test_tokens_checked_together_each_as_alone(store: Store) -> None:
    async with store.transaction() as tx:
        now = await tx.now()
        user = new_token("user", user_id="u1")
        admin = new_token("admin", last_used_at=now)
        expired = new_token(created_at=now - 90, expires_at=now - 1)
        for token_hash, token in (("user", user), ("admin", admin), ("expired", expired)):
            await tx.insert_token(token_hash, token)
    async with store.transaction() as tx:
        found = await tx.use_tokens(["user", "unknown", "admin", "expired"])
        assert found == {"user": user.grant, "admin": admin.grant}
        used = {t.id: t.last_used_at for t in await tx.tokens("acme")}
    assert used[user.id] is not None and used[user.id] >= now  # its first use, written
    assert used[admin.id] == now  # used within LAST_USED_RESOLUTION: left alone
    assert used[expired.id] is None


async def test_an_expired_token_allows_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        now = await tx.now()
        expired = new_token(created_at=now - 90, expires_at=now - 1)
        live = new_token(created_at=now - 80, expires_at=now + 60)
        await tx.insert_token("expired-hash", expired)
        await tx.insert_token("live-hash", live)
    async with store.transaction() as tx:
        assert await tx.use_token("expired-hash") is None
        assert await tx.use_token("live-hash") == live.grant
        assert [t.id for t in await tx.tokens("acme")] == [expired.id, live.id]


async def test_last_use_is_written_once_a_minute_at_most(store: Store) -> None:
    async with store.transaction() as tx:
        now = await tx.now()
        never = new_token()
        stale = new_token(last_used_at=now - LAST_USED_RESOLUTION - 5)
        recent = new_token(last_used_at=now - LAST_USED_RESOLUTION / 2)
        for token in (never, stale, recent):
            await tx.insert_token(f"hash-{token.id}", token)
    async with store.transaction() as tx:
        for token in (never, stale, recent):
            assert await tx.use_token(f"hash-{token.id}") == token.grant
    async with store.transaction() as tx:
        used = {token.id: token.last_used_at for token in await tx.tokens("acme")}
        after = await tx.now()
    for token in (never, stale):
        last_used = used[token.id]
        assert last_used is not None and now <= last_used <= after
    assert used[recent.id] == recent.last_used_at
    async with store.transaction() as tx:
        assert await tx.use_token(f"hash-{never.id}") == never.grant
        assert {t.id: t.last_used_at for t in await tx.tokens("acme")} == used


async def test_deleting_a_token(store: Store) -> None:
    admin, user, server = (
        new_token("admin"),
        new_token("user", user_id="u1"),
        new_token("server", None),
    )
    async with store.transaction() as tx:
        for token in (admin, user, server):
            await tx.insert_token(f"hash-{token.id}", token)
    async with store.transaction("acme") as tx:
        assert await tx.delete_token("other", admin.id) is None  # another domain's: kept
        assert await tx.delete_token(None, admin.id) is None
        assert await tx.delete_token("acme", server.id) is None
        assert await tx.delete_token("acme", "unknown") is None
        assert await tx.delete_token("acme", user.id) == user
        assert await tx.delete_token("acme", user.id) is None
    async with store.transaction() as tx:
        assert await tx.use_token(f"hash-{user.id}") is None
        assert await tx.use_token(f"hash-{admin.id}") == admin.grant
        assert [token.id for token in await tx.tokens("acme")] == [admin.id]
        assert await tx.delete_token(None, server.id) == server
        assert await tx.tokens(None) == []


# The tokens table as it was before tokens had ids, labels and lifetimes.
TOKENS_BEFORE_IDS = (
    "CREATE TABLE tokens (hash text PRIMARY KEY, role text NOT NULL, domain_id text, user_id text)"
)


async def execute_before_opening(url: str, statements: list[str]) -> None:
    """Run SQL on a database no node has opened, as an earlier release left it."""
    if url.startswith("sqlite:"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            for statement in statements:
                db.execute(statement)
            db.commit()
        return
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def test_tokens_from_before_ids_are_upgraded_in_place(nodes: Nodes) -> None:
    await execute_before_opening(
        nodes.url,
        [
            TOKENS_BEFORE_IDS,
            "INSERT INTO tokens VALUES ('generated-hash', 'server', NULL, NULL), "
            "('admin-hash', 'admin', 'acme', NULL), ('user-hash', 'user', 'acme', 'u1'), "
            "('server-token-generated', 'server', NULL, NULL)",  # how a generation was marked
        ],
    )
    store = await nodes.open()
    async with store.transaction() as tx:
        server = await tx.use_token("generated-hash")
        admin = await tx.use_token("admin-hash")
        user = await tx.use_token("user-hash")
        listed = await tx.tokens("acme")
        generated = await tx.tokens(None)
    assert server is not None and admin is not None and user is not None
    assert (server.role, server.domain_id) == ("server", None)
    assert (admin.role, admin.domain_id, user.role, user.user_id) == ("admin", "acme", "user", "u1")
    ids = {server.token_id, admin.token_id, user.token_id}
    assert None not in ids and "" not in ids and len(ids) == 3
    assert [token.id for token in generated] == [server.token_id]  # the mark is gone
    assert {token.id for token in listed} == {admin.token_id, user.token_id}
    for token in listed:
        assert (token.label, token.created_at, token.expires_at) == (None, None, None)
    new = new_token("wallboard")
    async with store.transaction() as tx:
        await tx.insert_token("new-hash", new)
        assert await tx.delete_token("acme", listed[0].id) == listed[0]
    await store.close()
    reopened = await nodes.open()  # upgrading again changes nothing
    async with reopened.transaction() as tx:
        assert await tx.tokens("acme") == [listed[1], new]
        assert await tx.use_token("new-hash") == new.grant


# Leases and the queue.


async def test_leases_oldest_first_with_filters(store: Store) -> None:
    late = new_lease(store, user_id="u1", seat=1, since=30.0)
    early = new_lease(store, user_id="u2", seat=2, since=10.0)
    named = new_lease(store, user_id="u3", pool=None, seat=None, since=20.0)
    named_too = new_lease(store, user_id="u3", pool=None, seat=None, since=20.0)
    other_pool = new_lease(store, user_id="u4", pool="sales", seat=1, since=40.0)
    elsewhere = new_lease(store, domain_id="other", since=5.0)
    async with store.transaction("acme") as tx:
        for lease in (late, early, named, named_too, other_pool, elsewhere):
            await tx.insert_lease(lease)
    async with store.transaction("acme") as tx:
        assert bare(await tx.leases("acme")) == [early, named, named_too, late, other_pool]
        assert bare(await tx.leases("acme", pools=["desk"])) == [early, late]
        assert bare(await tx.leases("acme", users=["u3"])) == [named, named_too]
        assert bare(await tx.leases("acme", pools=["desk"], users=["u1"])) == [late]
        assert bare(await tx.leases("other")) == [elsewhere]
        assert bare(await tx.lease(early.id)) == early
        assert await tx.lease("nothing") is None


async def test_updating_and_deleting_a_lease(store: Store) -> None:
    lease = new_lease(store)
    async with store.transaction("acme") as tx:
        await tx.insert_lease(lease)
    in_call = lease.with_call("call-1", 1500.0)
    async with store.transaction("acme") as tx:
        await tx.update_lease(in_call)
    async with store.transaction("acme") as tx:
        assert bare(await tx.lease(lease.id)) == in_call
        await tx.update_lease(in_call.with_call(None, 1600.0))
    async with store.transaction("acme") as tx:
        assert bare(await tx.lease(lease.id)) == in_call.with_call(None, 1600.0)
        await tx.delete_leases([lease.id])
    async with store.transaction("acme") as tx:
        assert await tx.lease(lease.id) is None
        assert bare(await tx.leases("acme")) == []


async def test_leases_end_together_and_a_seat_freed_so_is_free_at_once(store: Store) -> None:
    leases = [new_lease(store, user_id=f"u{n}", seat=n) for n in (1, 2, 3)]
    async with store.transaction("acme") as tx:
        await tx.insert_leases(leases)
    async with store.transaction("acme") as tx:
        await tx.delete_leases([leases[0].id, leases[2].id, "no-such-lease"])
        again = await tx.insert_lease(new_lease(store, user_id="u4", seat=1))
    async with store.transaction("acme") as tx:
        assert bare(await tx.leases("acme")) == bare([leases[1], again])
        assert await tx.lease(leases[0].id) is None


async def test_a_seat_has_one_holder(store: Store) -> None:
    holder = new_lease(store, user_id="u1", seat=1)
    async with store.transaction("acme") as tx:
        await tx.insert_lease(holder)
        await tx.insert_lease(new_lease(store, domain_id="other", user_id="u1", seat=1))
    with pytest.raises(RuleViolation) as refused:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(new_lease(store, user_id="u2", seat=2))
            await tx.insert_lease(new_lease(store, user_id="u3", seat=1))
    assert refused.value.code == "already_exists"
    async with store.transaction("acme") as tx:
        assert bare(await tx.leases("acme")) == [holder]  # the refused transaction left nothing


async def test_a_seat_user_holds_one_seat(store: Store) -> None:
    holder = new_lease(store, user_id="u1", seat=1)
    async with store.transaction("acme") as tx:
        await tx.insert_lease(holder)
    with pytest.raises(RuleViolation) as refused:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(new_lease(store, user_id="u1", seat=2))
    assert refused.value.code == "already_exists"
    with pytest.raises(RuleViolation):
        async with store.transaction("acme") as tx:
            await tx.insert_lease(new_lease(store, user_id="u1", pool="sales", seat=1))
    async with store.transaction("acme") as tx:
        assert bare(await tx.leases("acme", users=["u1"])) == [holder]


async def test_seat_counts_of_every_pool(store: Store) -> None:
    async with store.transaction("acme") as tx:
        for domain_id, pool_id, seats in [
            ("acme", "sales", 3),
            ("acme", "desk", 2),
            ("beta", "it", 1),
        ]:
            await tx.insert_pool(Pool(domain_id, pool_id, pool_id.title(), seats))
        await tx.insert_lease(new_lease(store, user_id="u1", seat=1))
        await tx.insert_lease(new_lease(store, user_id="u2", seat=2))
        await tx.insert_lease(new_lease(store, user_id="u3", pool="sales", seat=1))
        await tx.insert_lease(new_lease(store, user_id="u4", pool=None, seat=None))
    async with store.transaction() as tx:
        assert await tx.seat_counts() == [
            ("acme", "desk", 2, 2), ("acme", "sales", 3, 1), ("beta", "it", 1, 0),
        ]  # fmt: skip


async def test_waiters_in_the_order_they_asked(store: Store) -> None:
    queue = [new_waiter(store, user_id, since=1000.0) for user_id in ("u3", "u1", "u2")]
    elsewhere = new_waiter(store, "u4", pool="sales")
    async with store.transaction("acme") as tx:
        for waiter in (queue[0], elsewhere, *queue[1:]):
            await tx.insert_waiter(waiter)
    async with store.transaction("acme") as tx:
        assert await tx.waiters("acme", ["desk"]) == queue
        assert await tx.waiters("acme", ["sales"]) == [elsewhere]
        await tx.delete_waiter(queue[1].session_id)
    async with store.transaction("acme") as tx:
        assert await tx.waiters("acme", ["desk"]) == [queue[0], queue[2]]
    with pytest.raises(RuleViolation):
        async with store.transaction("acme") as tx:
            await tx.insert_waiter(replace(queue[0], pool="sales"))


async def test_each_seat_lease_gets_a_greater_fencing_token(store: Store) -> None:
    async with store.transaction("acme") as tx:
        first = await tx.insert_lease(new_lease(store, user_id="u1", seat=1))
        named = await tx.insert_lease(new_lease(store, user_id="u2", pool=None, seat=None))
    with pytest.raises(RuntimeError):
        async with store.transaction("acme") as tx:
            await tx.insert_lease(new_lease(store, user_id="u3", seat=3))
            raise RuntimeError("rolled back")
    async with store.transaction("acme") as tx:
        second = await tx.insert_lease(new_lease(store, user_id="u4", pool="sales", seat=1))
        assert await tx.lease(second.id) == second
    assert named.fencing_token is None
    assert first.fencing_token is not None and second.fencing_token is not None
    assert second.fencing_token > first.fencing_token


async def test_leases_inserted_together_get_greater_tokens_in_their_order(store: Store) -> None:
    waiting = new_waiter(store, "u2")
    async with store.transaction("acme") as tx:
        before = await tx.insert_lease(new_lease(store, user_id="u0", seat=4))
        await tx.insert_waiter(waiting)
        queued = await tx.waiters("acme", ["desk"])
    leases = [
        new_lease(store, user_id="u1", seat=1),
        replace(new_lease(store, user_id="u2", seat=2), session_id=waiting.session_id),
        new_lease(store, user_id="u3", pool=None, seat=None),
        new_lease(store, user_id="u4", pool="sales", seat=1),
    ]
    async with store.transaction("acme") as tx:
        inserted = await tx.insert_leases(leases)
        assert bare(inserted) == leases
        assert [await tx.lease(lease.id) for lease in leases] == inserted
    tokens = [lease.fencing_token for lease in inserted]
    assert tokens[2] is None  # a named lease has none
    seat_tokens = [t for t in tokens if t is not None]
    assert before.fencing_token is not None and before.fencing_token < seat_tokens[0]
    assert seat_tokens == sorted(seat_tokens) and len(set(seat_tokens)) == 3
    assert queued == [waiting]
    with pytest.raises(RuleViolation):  # one holder per seat: none of them is written
        async with store.transaction("acme") as tx:
            await tx.insert_leases([new_lease(store, user_id="u5", seat=3), leases[0]])
    async with store.transaction("acme") as tx:
        assert len(await tx.leases("acme")) == 5


async def test_leases_waiters_and_users_of_several_pools_and_users(store: Store) -> None:
    async with store.transaction("acme") as tx:
        await tx.insert_domain(new_domain(named_licenses=5))
        for n in range(1, 4):
            await tx.insert_user(User("acme", f"u{n}", f"u{n}@a.example", "U", License("named")))
        desk = await tx.insert_lease(new_lease(store, user_id="u1", seat=1, since=2.0))
        sales = await tx.insert_lease(new_lease(store, user_id="u2", pool="sales", since=1.0))
        it = await tx.insert_lease(new_lease(store, user_id="u3", pool="it", since=0.5))
        queue = [new_waiter(store, "u4", pool="sales"), new_waiter(store, "u5", pool="desk")]
        for waiter in (*queue, new_waiter(store, "u6", pool="it")):
            await tx.insert_waiter(waiter)
    async with store.transaction("acme") as tx:
        assert await tx.leases("acme", pools=["desk", "sales"]) == [sales, desk]
        assert await tx.leases("acme", pools=[]) == []
        assert await tx.leases("acme", users=["u1", "u3"]) == [it, desk]
        assert await tx.waiters("acme", ["desk", "sales"]) == queue
        assert [u.id for u in await tx.users("acme", ["u3", "u1", "nobody"])] == ["u1", "u3"]
        assert [u.id for u in await tx.users("acme")] == ["u1", "u2", "u3"]
        await tx.update_lease(replace(desk, call_id="c1", call_started_at=3.0))
    async with store.transaction("acme") as tx:
        usage = await tx.pool_usage("acme", ["desk", "sales", "empty"])
        assert usage == {"desk": (1, 1), "sales": (1, 0)}


async def test_fencing_tokens_granted_in_many_domains_at_once_all_differ(nodes: Nodes) -> None:
    first = await nodes.open()
    second = await nodes.open() if nodes.shared else first
    before = await _grant(first, "before")

    async def grant(n: int) -> int:
        return await _grant(first if n % 2 else second, f"domain-{n}")

    tokens = await asyncio.gather(*(grant(n) for n in range(40)))
    assert len(set(tokens)) == len(tokens)
    assert min(tokens) > before
    assert await _grant(second, "after") > max(tokens)


async def _grant(store: Store, domain_id: str) -> int:
    async with store.transaction(domain_id) as tx:
        await tx.now()  # another round trip inside the domain's transaction
        lease = await tx.insert_lease(new_lease(store, domain_id=domain_id))
    assert lease.fencing_token is not None
    return lease.fencing_token


async def test_a_rolled_back_transaction_leaves_the_leases_as_they_were(store: Store) -> None:
    kept, ended = new_lease(store, user_id="u1", seat=1), new_lease(store, user_id="u2", seat=2)
    async with store.transaction("acme") as tx:
        await tx.insert_lease(kept)
        await tx.insert_lease(ended)
    with pytest.raises(RuntimeError):
        async with store.transaction("acme") as tx:
            await tx.update_lease(kept.with_call("call-1", 1500.0))
            await tx.delete_leases([ended.id])
            await tx.insert_lease(new_lease(store, user_id="u3", seat=3))
            assert [x.user_id for x in await tx.leases("acme")] == ["u1", "u3"]
            raise RuntimeError("rolled back")
    async with store.transaction("acme") as tx:
        assert bare(await tx.leases("acme")) == [kept, ended]
        assert bare(await tx.leases("acme", pools=["desk"], users=["u2"])) == [ended]
        assert bare(await tx.lease(kept.id)) == kept


async def test_transactions_at_once_commit_or_roll_back_each_alone(nodes: Nodes) -> None:
    """Many transactions at once (on SQLite, committed together): each is kept or not alone."""
    store = await nodes.open()
    leases = [new_lease(store, user_id=f"u{n}", seat=n) for n in range(40)]

    async def write(n: int) -> None:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(leases[n])
            if n % 4 == 0:
                raise RuntimeError("rolled back")

    outcomes = await asyncio.gather(*(write(n) for n in range(40)), return_exceptions=True)
    assert [isinstance(outcome, RuntimeError) for outcome in outcomes] == [
        n % 4 == 0 for n in range(40)
    ]
    kept = sorted((lease for n, lease in enumerate(leases) if n % 4), key=by_id)
    async with store.transaction() as tx:
        assert sorted(bare(await tx.leases("acme")), key=by_id) == kept
    await store.close()
    reopened = await nodes.open()
    async with reopened.transaction() as tx:
        assert sorted(bare(await tx.leases("acme")), key=by_id) == kept


async def test_a_transaction_cancelled_as_it_commits_is_whole_or_gone(nodes: Nodes) -> None:
    store = await nodes.open()
    lease = new_lease(store)

    async def grant() -> None:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(lease)

    granting = asyncio.create_task(grant())
    await asyncio.sleep(0)  # on SQLite, it now waits for its commit's thread
    granting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await granting
    async with store.transaction() as tx:
        seen = await tx.lease(lease.id)
    assert bare(seen) in (lease, None)
    await store.close()
    reopened = await nodes.open()
    async with reopened.transaction() as tx:
        assert await tx.lease(lease.id) == seen  # the file holds what the node said


# Expiry.


async def test_what_is_not_renewed_expires_after_the_ttl(nodes: Nodes) -> None:
    store = await nodes.open(lease_ttl=CLOSING_TTL)
    kept, lost = new_lease(store, user_id="u1", seat=1), new_lease(store, user_id="u2", seat=2)
    kept_waiter, lost_waiter = new_waiter(store, "u3"), new_waiter(store, "u4")
    async with store.transaction("acme") as tx:
        kept = await tx.insert_lease(kept)
        lost = await tx.insert_lease(lost)
        await tx.insert_waiter(kept_waiter)
        await tx.insert_waiter(lost_waiter)
        assert await tx.expired_leases() == []
        assert await tx.expired_waiters() == []
    renewing = asyncio.create_task(_renew(store, [kept.session_id, kept_waiter.session_id]))
    try:

        async def expired() -> bool:
            async with store.transaction() as tx:
                leases, waiters = await tx.expired_leases(), await tx.expired_waiters()
            assert leases in ([], [lost]) and waiters in ([], [lost_waiter])
            return bool(leases and waiters)

        await eventually(expired)
        async with store.transaction() as tx:
            assert await tx.waiters("acme", ["desk"]) == [kept_waiter]  # the expired place is out
            assert await tx.waiter(lost_waiter.session_id) == lost_waiter
        await store.renew([lost.session_id, lost_waiter.session_id])  # too late
        async with store.transaction() as tx:
            assert await tx.expired_leases() == [lost]
            assert await tx.expired_waiters() == [lost_waiter]
    finally:
        renewing.cancel()


async def _renew(store: Store, session_ids: list[str]) -> None:
    while True:
        await store.renew(session_ids)
        await asyncio.sleep(CLOSING_TTL / 4)


async def test_a_seat_granted_from_the_queue_expires_with_the_queue_place(nodes: Nodes) -> None:
    store = await nodes.open(lease_ttl=SHORT_TTL)
    waiter = new_waiter(store, "u1")
    async with store.transaction("acme") as tx:
        await tx.insert_waiter(waiter)

    async def expired() -> bool:
        async with store.transaction() as tx:
            return await tx.expired_waiters() == [waiter]

    await eventually(expired)
    lease = replace(new_lease(store, user_id="u1"), session_id=waiter.session_id)
    async with store.transaction("acme") as tx:
        granted = await tx.insert_lease(lease)
        await tx.delete_waiter(waiter.session_id)
    async with store.transaction() as tx:
        assert await tx.expired_leases() == [granted]


@only_postgresql
async def test_what_one_node_renews_lives_for_every_node(nodes: Nodes) -> None:
    serving = await nodes.open(lease_ttl=SHORT_TTL)
    watcher = await nodes.open()
    lease = new_lease(serving)
    async with serving.transaction("acme") as tx:
        lease = await tx.insert_lease(lease)
    for _ in range(8):
        await serving.renew([lease.session_id])
        async with watcher.transaction() as tx:
            assert await tx.expired_leases() == []
        await asyncio.sleep(SHORT_TTL / 4)

    async def expired() -> bool:
        async with watcher.transaction() as tx:
            return await tx.expired_leases() == [lease]

    await eventually(expired)


async def test_a_sqlite_file_has_one_node(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'presence.db'}"
    first = store_for_url(url, "first")
    await first.open(LONG_TTL)
    second = store_for_url(url, "second")
    try:
        with pytest.raises(StorageError, match="another node is using it"):
            await second.open(LONG_TTL)
    finally:
        await first.close()
    await second.open(LONG_TTL)  # once the first node is gone
    await second.close()


@only_postgresql
async def test_nodes_starting_together_on_a_new_database(nodes: Nodes) -> None:
    stores = await asyncio.gather(*(nodes.open() for _ in range(8)))
    assert all(store.healthy() for store in stores)


@only_postgresql
async def test_a_node_starts_beside_transactions_without_waiting_for_them(nodes: Nodes) -> None:
    store = await nodes.open()
    writing, release = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        async with store.transaction("acme") as tx:
            await tx.insert_lease(new_lease(store))
            await tx.insert_waiter(new_waiter(store, "u2"))
            writing.set()
            await release.wait()

    writer = asyncio.create_task(write())
    await writing.wait()
    try:
        async with asyncio.timeout(WAIT):
            other = await nodes.open()  # no lock on the tables, which the writer holds
            await other.renew(["a-session"])
    finally:
        release.set()
        await writer


async def test_now_is_the_current_time(store: Store) -> None:
    async with store.transaction() as tx:
        first = await tx.now()
        second = await tx.now()
    assert abs(first - time.time()) < 5
    assert first <= second


async def test_healthy_while_open(nodes: Nodes) -> None:
    store = await nodes.open()
    assert store.healthy()
    await store.close()
    assert not store.healthy()
    with pytest.raises(StorageError):
        async with store.transaction():
            pass


# The event log.


async def test_events(store: Store) -> None:
    logged = [
        new_event("seat_granted", 10.0),
        new_event("named_login", 11.0, pool=None),
        new_event("seat_released", 12.0),
        new_event("seat_granted", 13.0),
    ]
    async with store.transaction("acme") as tx:
        stored = await tx.add_events(logged)
        await tx.add_events([new_event("seat_granted", 10.5, domain_id="other")])
    assert [s.event for s in stored] == logged
    ids = [s.id for s in stored]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    async with store.transaction("acme") as tx:
        assert await tx.events("acme", EventQuery()) == stored
        assert await tx.events("acme", EventQuery(after=ids[0], limit=2)) == stored[1:3]
        assert await tx.events("acme", EventQuery(after=ids[-1])) == []
        assert await tx.latest_events("acme", 2) == stored[2:]
        assert await tx.latest_events("acme", 100) == stored
        assert await tx.add_events([]) == []


async def test_events_filtered(store: Store) -> None:
    logged = [
        new_event("seat_granted", 10.0),
        new_event("seat_denied", 11.0, user_id="u2"),
        new_event("named_login", 12.0, pool=None, user_id="u3"),
        new_event("seat_granted", 13.0, pool="field", user_id="u2"),
        new_event("call_started", 14.0),
        new_event("seat_released", 15.0, pool="field", user_id="u2"),
    ]
    async with store.transaction("acme") as tx:
        stored = await tx.add_events(logged)
        await tx.add_events([new_event("seat_granted", 12.0, domain_id="other")])

    async def found(**filters: Any) -> list[int]:
        async with store.transaction("acme") as tx:
            page = await tx.events("acme", EventQuery(**filters))
        return [stored.index(e) for e in page]

    assert await found(types=frozenset({"seat_granted"})) == [0, 3]
    assert await found(types=frozenset({"seat_granted", "seat_released"})) == [0, 3, 5]
    assert await found(types=frozenset({"pool_full"})) == []
    assert await found(user_id="u2") == [1, 3, 5]
    assert await found(pool="field") == [3, 5]
    assert await found(pool="desk", user_id="u1") == [0, 4]
    assert await found(start=11.0) == [1, 2, 3, 4, 5]
    assert await found(end=13.0) == [0, 1, 2]  # [start, end): an event at 13.0 is after it
    assert await found(start=12.0, end=14.0) == [2, 3]
    assert await found(start=12.5, end=12.5) == []
    assert await found(user_id="u2", types=frozenset({"seat_granted"}), start=13.0) == [3]
    assert await found(user_id="u2", limit=2) == [1, 3]
    assert await found(user_id="u2", after=stored[1].id) == [3, 5]
    assert await found(user_id="nobody") == []


async def test_events_paged_backwards_from_the_newest(store: Store) -> None:
    async with store.transaction("acme") as tx:
        stored = await tx.add_events([new_event("seat_granted", 10.0 + n) for n in range(7)])
        await tx.add_events([new_event("seat_granted", 20.0, domain_id="other")])
    ids = [s.id for s in stored]
    pages = []
    before = 2**62
    while True:
        async with store.transaction("acme") as tx:
            page = await tx.events("acme", EventQuery(before=before, limit=3))
        if not page:
            break
        pages.append(page)
        before = page[0].id
    assert pages == [stored[4:], stored[1:4], stored[:1]]  # each oldest first
    async with store.transaction("acme") as tx:
        assert await tx.events("acme", EventQuery(before=ids[3])) == stored[:3]
        assert await tx.events("acme", EventQuery(before=ids[0])) == []
        assert await tx.events("acme", EventQuery(after=ids[1], before=ids[5])) == stored[2:5]
        assert (
            await tx.events("acme", EventQuery(after=ids[1], before=ids[5], limit=2))
            == (stored[3:5])
        )
        odd = EventQuery(before=ids[6], limit=2, start=11.0, end=15.0)
        assert await tx.events("acme", odd) == stored[3:5]


# The history of queue lengths, and usage.


def sample_rows(samples: list[QueueSample]) -> list[SampleRow]:
    return [(s.at, s.pool, s.queued) for s in samples]


async def test_queue_samples_by_time(store: Store) -> None:
    recorded = [
        QueueSample("acme", "desk", 10.0, 1),
        QueueSample("acme", "field", 10.0, 3),
        QueueSample("acme", "desk", 12.5, 0),
        QueueSample("acme", "desk", 11.0, 2),  # recorded late: read in its time's place
        QueueSample("acme", "desk", 12.5, 4),  # at one time: in the order recorded
        QueueSample("other", "desk", 11.0, 7),
    ]
    async with store.transaction("acme") as tx:
        for pool in ("desk", "field"):
            await tx.insert_pool(Pool("acme", pool, pool.title(), 1))
        for sample in recorded:
            await tx.record_queue(sample.domain_id, sample.pool, sample.at, sample.queued)

    async def history(domain_id: str, start: float, end: float) -> History:
        async with store.transaction(domain_id) as tx:
            return await tx.usage_history(domain_id, start, end)

    def of(*n: int) -> list[SampleRow]:
        return sample_rows([recorded[k] for k in n])

    assert (await history("acme", 0.0, 100.0)).samples == of(0, 1, 3, 2, 4)
    assert (await history("acme", 0.0, 12.5)).samples == of(0, 1, 3)  # [start, end)
    assert (await history("acme", 11.0, 12.5)).samples == of(3)
    assert (await history("acme", 12.5, 13.0)).samples == of(2, 4)
    assert (await history("acme", 0.0, 9.0)).samples == []
    assert (await history("other", 0.0, 100.0)).samples == of(5)
    assert (await history("nobody", 0.0, 100.0)) == History({}, [], [])
    queued = {at: (await history("acme", at, 100.0)).state for at in (10.0, 12.0, 12.5, 13.0)}
    assert queued == {
        10.0: {"desk": PoolState(), "field": PoolState()},  # before their first sample
        12.0: {"desk": PoolState(queued=2), "field": PoolState(queued=3)},
        12.5: {"desk": PoolState(queued=2), "field": PoolState(queued=3)},
        13.0: {"desk": PoolState(queued=4), "field": PoolState(queued=3)},
    }


async def test_a_rolled_back_queue_sample_is_gone(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction("acme") as tx:
            await tx.record_queue("acme", "desk", 10.0, 1)
            raise RuntimeError
    async with store.transaction("acme") as tx:
        assert (await tx.usage_history("acme", 0.0, 100.0)).samples == []


@only_sqlite
async def test_queues_emptied_at_start_are_recorded_empty(nodes: Nodes) -> None:
    store = await nodes.open()
    async with store.transaction("acme") as tx:
        for user_id in ("u1", "u2"):
            await tx.insert_waiter(new_waiter(store, user_id))
        await tx.insert_waiter(new_waiter(store, "u3", pool="field"))
        await tx.record_queue("acme", "desk", 10.0, 2)
        await tx.record_queue("acme", "field", 10.0, 1)
    await store.close()
    before = time.time()
    store = await nodes.open()
    async with store.transaction("acme") as tx:
        assert await tx.waiters("acme", ["desk"]) == []
        samples = (await tx.usage_history("acme", 0.0, time.time() + 1)).samples
    assert [(pool, queued) for _, pool, queued in samples[:2]] == [("desk", 2), ("field", 1)]
    assert sorted((pool, queued) for _, pool, queued in samples[2:]) == [("desk", 0), ("field", 0)]
    assert all(at >= before for at, _, _ in samples[2:])


USAGE_POOLS = [Pool("acme", "desk", "Desk", 3), Pool("acme", "field", "Field", 2)]
USAGE_TYPES = sorted(
    FREEING | {"seat_granted", "seat_denied", "taken_over", "call_started", "call_ended"}
)


def usage_log(seed: int) -> tuple[list[Event], list[QueueSample]]:
    """A random log of two domains: seats of live and deleted pools, events of
    no pool, clocks now and then set back, queue samples recorded out of order."""
    rng = random.Random(seed)
    events, samples = [], []
    now = 1000.0
    for _ in range(300):
        now += rng.choice([0, 0, 0.5, 1, 2, 5, -1, -3])
        domain_id = rng.choice(["acme", "acme", "acme", "other"])
        pool = rng.choice(["desk", "desk", "field", "gone", None])
        seat = None if pool is None else rng.choice([1, 2, 3, None])
        type_ = rng.choice(USAGE_TYPES)
        events.append(Event(type_, now, domain_id, "u1", "pc", pool, seat))
        if rng.random() < 0.2:
            at = now + rng.choice([0, 0, -2, 1])
            pool = rng.choice(["desk", "field", "gone"])
            samples.append(QueueSample(domain_id, pool, at, rng.randrange(4)))
    return events, samples


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_usage_history_of_a_period_is_the_one_of_the_whole_log(
    store: Store, seed: int
) -> None:
    events, samples = usage_log(seed)
    async with store.transaction("acme") as tx:
        for pool in USAGE_POOLS:
            await tx.insert_pool(pool)
        await tx.add_events(events)
        for sample in samples:
            await tx.record_queue(sample.domain_id, sample.pool, sample.at, sample.queued)
    acme = [e for e in events if e.domain_id == "acme"]
    by_time = sorted((s for s in samples if s.domain_id == "acme"), key=attrgetter("at"))
    times = sorted({e.at for e in events} | {s.at for s in samples})
    periods = [(0.0, 5000.0), (times[-1] + 1, 5000.0), (times[5], times[5]), (times[20], 0.0)]
    periods += [(times[n], times[n + 30]) for n in range(0, len(times) - 30, 7)]
    periods += [(times[n] + 0.25, times[n + 45] - 0.25) for n in range(3, len(times) - 45, 11)]
    async with store.transaction("acme") as tx:
        for start, end in periods:
            got = await tx.usage_history("acme", start, end)
            assert got == history_of(USAGE_POOLS, acme, by_time, start, end), (start, end)
    # Read in chunks of a few events and samples, each in a transaction of its own,
    # and with events and samples logged after the first: the same history.
    for start, end in periods[::3]:
        async with store.transaction("acme") as tx:
            period = await tx.usage_period("acme", start, end)
        later = Event("seat_granted", start, "acme", "u1", "pc", "desk", 1)
        async with store.transaction("acme") as tx:
            await tx.add_events([later])
            await tx.record_queue("acme", "desk", start, 7)
        got = await read_history(period, store.transaction, chunk=3)
        assert got == history_of(USAGE_POOLS, acme, by_time, start, end), (start, end)
        acme.append(later)
        by_time = sorted([*by_time, QueueSample("acme", "desk", start, 7)], key=attrgetter("at"))


@only_sqlite
async def test_usage_and_email_lookups_read_by_index(store: Store) -> None:
    assert isinstance(store, SQLiteStore)
    await store.close()  # the file is the node's alone while it is open
    db = sqlite3.connect(store.path)
    try:
        statements = [
            (sqlite._PERIOD_IDS, ("acme", 1.0, 2.0)),
            (sqlite._SEATS_HELD, ("acme", 10)),
            (sqlite._QUEUED, ("acme", 1.0)),
            (sqlite._PERIOD_EVENTS, ("acme", 1, 10)),
            (sqlite._PERIOD_SAMPLES, ("acme", 1.0, 2.0, 10, 1.0, -1, 100)),
            (sqlite.EMAIL_TAKEN, ("acme", "a@example.com")),
        ]
        plans = [
            " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in statements
        ]
    finally:
        db.close()
    assert all("SCAN events" not in plan and "SCAN queue_samples" not in plan for plan in plans)
    assert "INDEX events_by_time (domain_id=? AND at>?)" in plans[0]
    assert "INDEX events_by_seat (domain_id=? AND pool=? AND seat=? AND id<?)" in plans[1]
    assert "INDEX queue_samples_by_pool (domain_id=? AND pool=? AND at<?)" in plans[2]
    assert "INDEX users_by_email (domain_id=? AND <expr>=?)" in plans[5]


# Notes.


async def test_notes_are_delivered_after_commit_and_never_after_rollback(store: Store) -> None:
    inbox = Inbox(store)
    with pytest.raises(RuntimeError):
        async with store.transaction("acme") as tx:
            tx.notify(notes.PoolChanged("acme", "rolled-back"))
            raise RuntimeError("rolled back")
    async with store.transaction("acme") as tx:
        tx.notify(notes.PoolChanged("acme", "desk"))
        tx.notify(notes.LeaseEnded("s1", "taken_over"))
    marker = await send_marker(store)
    assert await inbox.until(marker) == [
        notes.PoolChanged("acme", "desk"),
        notes.LeaseEnded("s1", "taken_over"),
    ]


async def test_notes_in_commit_order_once_each(store: Store) -> None:
    inbox = Inbox(store)
    sent: list[Note] = [notes.PoolChanged("acme", f"pool-{n}") for n in range(30)]

    async def publish(note: Note) -> None:
        async with store.transaction("acme") as tx:
            tx.notify(note)

    for note in sent[:10]:
        await publish(note)
    await asyncio.gather(*(publish(note) for note in sent[10:]))
    received = await inbox.until(await send_marker(store))
    assert received[:10] == sent[:10]
    assert sorted(received[10:], key=str) == sorted(sent[10:], key=str)


async def test_a_large_events_note_arrives_whole(store: Store) -> None:
    inbox = Inbox(store)
    events = [
        {"id": n, "at": "2026-11-27T10:00:00Z", "type": "seat_granted", "user_id": f"user-{n}",
         "pool": "desk", "seat": n, "device_id": f"device-{n}-" + "x" * 40}
        for n in range(400)
    ]  # fmt: skip
    async with store.transaction("acme") as tx:
        tx.notify(notes.EventsLogged("acme", tuple(events)))
    received = await inbox.until(await send_marker(store))
    assert all(isinstance(note, notes.EventsLogged) for note in received)
    logged = [note for note in received if isinstance(note, notes.EventsLogged)]
    assert {note.domain for note in logged} == {"acme"}
    assert [event for note in logged for event in note.events] == events


async def test_a_pool_change_carries_its_occupancy_unless_too_long(store: Store) -> None:
    """The occupancy a change knew travels with its note; with a queue too long
    for PostgreSQL's payloads, the note goes without it (nodes read the pool)."""
    inbox = Inbox(store)
    pool = Pool("acme", "desk", "Desk", 2)
    short = Occupancy(pool, 2, 1, ("waiting-1", "waiting-2"))
    long = Occupancy(pool, 2, 0, tuple(f"waiting-{n:04}-{uuid.uuid4().hex}" for n in range(400)))
    async with store.transaction("acme") as tx:
        tx.notify(notes.PoolChanged("acme", "desk", short))
        tx.notify(notes.PoolChanged("acme", "desk", long))
    first, second = await inbox.until(await send_marker(store))
    assert first == notes.PoolChanged("acme", "desk", short)
    passed_whole = isinstance(store, SQLiteStore)  # in one process, as they are
    assert second == notes.PoolChanged("acme", "desk", long if passed_whole else None)


@only_postgresql
async def test_notes_reach_every_node(nodes: Nodes) -> None:
    sender, other = await nodes.open(), await nodes.open()
    inboxes = [Inbox(sender), Inbox(other)]
    async with sender.transaction("acme") as tx:
        tx.notify(notes.PoolChanged("acme", "desk"))
    marker = await send_marker(sender)
    for inbox in inboxes:
        assert await inbox.until(marker) == [notes.PoolChanged("acme", "desk")]


@only_postgresql
async def test_a_node_cut_off_listens_again_and_resyncs(nodes: Nodes) -> None:
    store = await nodes.open()
    inbox = Inbox(store)
    connection = await asyncpg.connect(nodes.url)
    try:
        cut: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name IN ($1, $2)",
            f"presence {store.node_id}",
            f"presence-listen {store.node_id}",
        )
    finally:
        await connection.close()
    assert cut >= 2  # the pool's connection and the LISTEN connection
    assert await inbox.next() == notes.Resync()
    assert store.healthy()
    async with store.transaction("acme") as tx:
        tx.notify(notes.PoolChanged("acme", "desk"))
    assert await inbox.next() == notes.PoolChanged("acme", "desk")


@only_postgresql
async def test_an_unreachable_database_is_a_storage_error(nodes: Nodes) -> None:
    store = store_for_url(nodes.url.rsplit("/", 1)[0] + "/missing", uuid.uuid4().hex)
    with pytest.raises(StorageError):
        await store.open(LONG_TTL)
    assert not store.healthy()


# Transactions.


async def test_transactions_of_a_domain_take_turns(nodes: Nodes) -> None:
    first = await nodes.open()
    second = await nodes.open() if nodes.shared else first
    async with first.transaction("acme") as tx:
        await tx.insert_domain(new_domain(named_licenses=0))

    async def count(store: Store) -> None:
        async with store.transaction("acme") as tx:
            domain = await tx.domain("acme")
            assert domain is not None
            await tx.now()  # another round trip between the read and the write
            await tx.update_domain(replace(domain, named_licenses=domain.named_licenses + 1))

    await asyncio.gather(*(count(first if n % 2 else second) for n in range(20)))
    async with first.transaction() as tx:
        assert await tx.domain("acme") == new_domain(named_licenses=20)


@only_postgresql
async def test_domains_are_locked_separately(nodes: Nodes) -> None:
    store, other = await nodes.open(), await nodes.open()
    locked, release = asyncio.Event(), asyncio.Event()

    async def hold_on(node: Store, domain_id: str) -> None:
        async with node.transaction(domain_id):
            locked.set()
            await release.wait()

    holding = asyncio.create_task(hold_on(store, "acme"))
    await locked.wait()
    async with asyncio.timeout(WAIT):
        for node in (store, other):
            async with node.transaction("other") as tx:
                await tx.now()
            async with node.transaction() as tx:
                await tx.now()
    # Its transactions take turns on the node before the domain's lock: another
    # node's wait for it shows in the database.
    waiting = asyncio.create_task(hold_on(other, "acme"))

    async def blocked() -> bool:
        connection = await asyncpg.connect(nodes.url)
        try:
            waits: int = await connection.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
        finally:
            await connection.close()
        return waits == 1

    try:
        await eventually(blocked)
        assert not waiting.done()
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(holding, waiting), WAIT)
