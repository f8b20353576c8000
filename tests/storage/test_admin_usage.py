"""`Admin.usage_series`, `Admin.domains` and `Admin.events` over every backend."""

from __future__ import annotations

import pytest

from presence.admin import SERIES_MAX_POINTS, SERVER, Admin
from presence.core.model import Domain, Event, Pool, QueueSample
from presence.core.usage import history_of, series, usage
from presence.errors import BadRequest, Forbidden, NotFound
from presence.storage import EventQuery, Store, TokenGrant

ACME_ADMIN = TokenGrant("admin", "acme")
HOUR = 3600.0


@pytest.fixture
async def admin(store: Store) -> Admin:
    admin = Admin(store, None)
    for domain_id in ("acme", "other"):
        await admin.create_domain(SERVER, Domain(domain_id, "Acme", "enterprise", 0, 5))
    await admin.create_pool(SERVER, Pool("acme", "desk", "Desk", 2))
    await admin.create_pool(SERVER, Pool("acme", "field", "Field", 1))
    return admin


async def history(store: Store) -> float:
    """Three hours of use of the desk ending now; returns now."""
    async with store.transaction("acme") as tx:
        now = await tx.now()
        t = now - 3 * HOUR

        def event(type_: str, at: float, seat: int | None = 1) -> Event:
            return Event(type_, t + at, "acme", "u1", "pc", "desk", seat)

        await tx.add_events([
            event("seat_granted", 0), event("seat_granted", 600, 2),
            event("seat_denied", HOUR, None), event("seat_released", HOUR, 2),
            event("call_started", 2 * HOUR), event("seat_released", 2 * HOUR + 60),
        ])  # fmt: skip
        for at, queued in ((HOUR, 1), (HOUR + 30, 0)):
            await tx.record_queue("acme", "desk", t + at, queued)
    return now


async def whole_log(store: Store) -> tuple[list[Pool], list[Event], list[QueueSample]]:
    """The pools, every event and every queue sample of acme."""
    async with store.transaction("acme") as tx:
        pools = await tx.pools("acme")
        events = [stored.event for stored in await tx.events("acme", EventQuery(limit=1000))]
        recorded = (await tx.usage_history("acme", 0.0, await tx.now() + 1)).samples
    samples = [QueueSample("acme", pool, at, queued) for at, pool, queued in recorded]
    return pools, events, samples


async def test_a_series_is_the_cores_of_the_stored_history(store: Store, admin: Admin) -> None:
    now = await history(store)
    start = now - 3 * HOUR
    got = await admin.usage_series(ACME_ADMIN, "acme", start, now, HOUR / 2)
    pools, events, samples = await whole_log(store)
    whole = history_of(pools, events, samples, start, now)
    assert got == series(pools, whole, start, now, HOUR / 2)
    desk, field = got
    assert len(desk.points) == len(field.points) == 6
    # Both seats were held when the denial came at 1 h, just before seat 2 was freed.
    assert [p.peak_occupied for p in desk.points] == [2, 2, 2, 1, 1, 0]
    assert [p.denials for p in desk.points] == [0, 0, 1, 0, 0, 0]
    assert [p.peak_queued for p in desk.points] == [0, 0, 1, 0, 0, 0]
    assert [p.calls for p in desk.points] == [0, 0, 0, 0, 1, 0]
    assert all(p.peak_occupied == 0 for p in field.points)
    (whole, _) = await admin.usage(ACME_ADMIN, "acme", start, None)
    assert whole.seat_seconds == pytest.approx(sum(p.seat_seconds for p in desk.points), abs=0.01)
    assert (whole.denials, whole.calls, whole.peak_queued) == (1, 1, 1)


async def test_a_series_ends_now_at_the_latest(store: Store, admin: Admin) -> None:
    now = await history(store)
    (desk, _) = await admin.usage_series(ACME_ADMIN, "acme", now - HOUR, now + 100 * HOUR, 60)
    assert len(desk.points) in (60, 61)  # now moved on a little
    assert desk.points[-1].at < now + 60


async def test_a_series_of_too_many_points_is_refused(admin: Admin) -> None:
    with pytest.raises(BadRequest) as refused:
        await admin.usage_series(ACME_ADMIN, "acme", 0.0, None, 86_400)
    assert refused.value.field == "step" and "at most 2,000" in refused.value.message
    async with admin.store.transaction() as tx:
        now = await tx.now()
    fits = now - 2 * SERIES_MAX_POINTS * 60  # as many points as allowed, at a step of 120 s
    (desk, _) = await admin.usage_series(ACME_ADMIN, "acme", fits, now, 120)
    assert len(desk.points) == SERIES_MAX_POINTS
    for step in (0.0, -60.0, float("nan"), float("inf")):
        with pytest.raises(BadRequest):
            await admin.usage_series(ACME_ADMIN, "acme", fits, now, step)


async def test_an_empty_period_has_no_points(store: Store, admin: Admin) -> None:
    now = await history(store)
    for end in (now - HOUR, now - 2 * HOUR):
        got = await admin.usage_series(ACME_ADMIN, "acme", now - HOUR, end, 60)
        assert [(s.pool, s.seats, s.points) for s in got] == [("desk", 2, []), ("field", 1, [])]


async def test_usage_is_the_cores(store: Store, admin: Admin) -> None:
    now = await history(store)
    pools, events, samples = await whole_log(store)
    for start, end in [(now - 2.5 * HOUR, now - HOUR / 2), (now - HOUR, now), (now, now - HOUR)]:
        expected = usage(pools, history_of(pools, events, samples, start, end), start, end)
        assert await admin.usage(ACME_ADMIN, "acme", start, end) == expected


async def test_only_the_server_admin_lists_domains(admin: Admin) -> None:
    assert [d.id for d in await admin.domains(SERVER)] == ["acme", "other"]
    for who in (ACME_ADMIN, TokenGrant("wallboard", "acme")):
        with pytest.raises(Forbidden):
            await admin.domains(who)


async def test_series_and_events_are_for_the_domains_admins(store: Store, admin: Admin) -> None:
    await history(store)
    query = EventQuery(types=frozenset({"seat_released"}))
    assert [e.event.seat for e in await admin.events(ACME_ADMIN, "acme", query)] == [2, 1]
    assert await admin.events(SERVER, "other", query) == []
    with pytest.raises(Forbidden):
        await admin.events(TokenGrant("wallboard", "acme"), "acme", query)
    with pytest.raises(NotFound):
        await admin.events(TokenGrant("admin", "other"), "acme", query)
    with pytest.raises(Forbidden):
        await admin.usage_series(TokenGrant("wallboard", "acme"), "acme", 0.0, None, 60)
    with pytest.raises(NotFound):
        await admin.usage_series(TokenGrant("admin", "other"), "acme", 0.0, None, 60)
