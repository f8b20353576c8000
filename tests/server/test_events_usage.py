"""The event log (`GET .../events`) and the usage report (`GET .../usage`).

Usage figures come from real clocks here: the test notes the time before and
after each of its actions, and seat-seconds must fall within those bounds,
give or take `TOLERANCE`. Exact figures over scripted timelines are the core
tests' job (tests/core/test_usage.py).
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import UTC, datetime

import httpx
import pytest

from .client import Device, Domain, Harness, Member, Message, fields_of, ok, parse_utc, refused

EVENT_KEYS = {"id", "at", "type", "user_id", "pool", "seat", "device_id"}
USAGE_KEYS = ("pool", "seats", "peak_occupied", "seat_seconds", "denials", "calls")
#: Seat-seconds may differ by this much from the bounds the test measured.
TOLERANCE = 0.5


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def period(start: float, end: float | None = None) -> dict[str, str]:
    """The `from` and `to` query parameters for times in epoch seconds."""
    query = {"from": iso(start)}
    if end is not None:
        query["to"] = iso(end)
    return query


async def usage_response(
    domain: Domain, query: dict[str, str], accept: str | None = None
) -> httpx.Response:
    headers = {} if accept is None else {"Accept": accept}
    return await domain.api.request("GET", domain.path("usage"), params=query, headers=headers)


async def usage(domain: Domain, start: float, end: float | None = None) -> dict[str, Message]:
    """The usage report from `start` to `end` (epoch seconds), by pool id."""
    rows = ok(await usage_response(domain, period(start, end)))
    assert isinstance(rows, list), rows
    by_pool = {row["pool"]: fields_of(row, set(USAGE_KEYS)) for row in rows}
    assert len(by_pool) == len(rows), f"a pool twice: {rows}"
    return by_pool


def zeros(pool: Message) -> Message:
    return {
        "pool": pool["id"],
        "seats": pool["seats"],
        "peak_occupied": 0,
        "seat_seconds": 0,
        "denials": 0,
        "calls": 0,
    }


# The event log


async def test_a_scripted_session_logs_every_event_type(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    idle = await domain.pool(1, idle_logoff_s=1)
    ann, bob, eve, cat, dan = [await domain.seat_user(desk) for _ in range(5)]
    ida = await domain.seat_user(idle)
    ned = await domain.named_user()
    started = time.time()
    expected: list[tuple[str, str, str, str | None, int | None]] = []

    def then(kind: str, member: Member, device: Device, pool: Message | None = desk) -> None:
        if pool is None:
            expected.append((kind, member.id, device.id, None, None))
        else:
            seat = None if kind in ("seat_denied", "pool_full") else 1
            expected.append((kind, member.id, device.id, pool["id"], seat))

    a1 = await harness.login(ann)
    then("seat_granted", ann, a1)
    b1 = await harness.refused_login(bob, "seat_occupied")
    then("seat_denied", bob, b1)
    then("pool_full", bob, b1)  # the capacity alert, logged with the denial
    await a1.call_start("c1")
    await a1.expect("call_started", call_id="c1")
    then("call_started", ann, a1)
    await a1.call_end("c1")
    await a1.expect("call_ended", call_id="c1")
    then("call_ended", ann, a1)
    await a1.logout()
    then("seat_released", ann, a1)
    await b1.close()

    e1 = await harness.login(eve, heartbeats=False)
    then("seat_granted", eve, e1)
    await e1.expect_ended("lease_expired", 4408, timeout=harness.server.lease_ttl + 3)
    then("lease_expired", eve, e1)

    c1 = await harness.login(cat, kind="desktop")
    then("seat_granted", cat, c1)
    c2 = await harness.login(cat, kind="phone", takeover=True)
    await c1.expect_ended("taken_over", 4409)
    then("taken_over", cat, c1)
    then("seat_granted", cat, c2)

    n1 = await harness.login(ned)
    then("named_login", ned, n1, None)
    await n1.logout()
    then("named_logout", ned, n1, None)

    ok(await harness.admin.put(domain.path("users", cat.id, "license"), {"model": "none"}))
    await c2.expect_ended("license_changed", 4411)
    then("license_changed", cat, c2)

    d1 = await harness.login(dan)
    then("seat_granted", dan, d1)
    ok(await harness.admin.delete(domain.path("leases", d1.license["lease_id"])), 204)
    await d1.expect_ended("released_by_admin", 4412)
    then("released_by_admin", dan, d1)

    i1 = await harness.login(ida)
    then("seat_granted", ida, i1, idle)
    await i1.expect_ended("idle_logoff", 4410, timeout=1 + 3)
    then("idle_logoff", ida, i1, idle)
    finished = time.time()

    events = await domain.events(limit=1000)
    for event in events:
        assert set(event) == EVENT_KEYS, event
    seen = [
        (
            e["type"],
            e["user_id"],
            e["device_id"],
            e["pool"],
            None if e["type"] == "seat_denied" else e["seat"],
        )
        for e in events
    ]
    assert seen == expected
    ids = [e["id"] for e in events]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(set(ids)), ids
    moments = [parse_utc(e["at"]).timestamp() for e in events]
    assert moments == sorted(moments), moments
    assert started - 1 <= moments[0] and moments[-1] <= finished + 1, (started, moments, finished)


async def test_events_page_with_after_and_limit(harness: Harness) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    for kind in ("desktop", "phone", "tablet", "glasses"):
        device = await harness.login(member, kind=kind)
        await device.logout()
    everything = await domain.events(limit=1000)
    assert len(everything) == 8, everything

    pages: list[list[Message]] = []
    after = 0
    while page := await domain.events(after=after, limit=3):
        assert len(page) <= 3, page
        pages.append(page)
        after = page[-1]["id"]

    assert [len(page) for page in pages] == [3, 3, 2]
    assert [e for page in pages for e in page] == everything
    middle = everything[4]["id"]
    assert await domain.events(after=middle) == everything[5:]
    assert await domain.events(after=everything[-1]["id"]) == []
    assert await domain.events(limit=1) == everything[:1]


async def test_events_of_a_domain_are_its_own(harness: Harness) -> None:
    quiet = await harness.new_domain()
    busy = await harness.new_domain()
    member = await busy.named_user()
    await (await harness.login(member)).logout()

    assert await quiet.events() == []
    assert {e["user_id"] for e in await busy.events()} == {member.id}


#: Whole numbers that are not: other scripts' digits (which `str.isdigit()`
#: and `int()` take), more digits than `int()` converts, too many for the
#: range, leading signs or spaces, NUL.
BAD_NUMBERS = ["x", "-1", "2.5", "\u00b2", "\u0661\u0662", "\uff15", "9" * 5000, "9" * 20]
BAD_NUMBERS += ["+5", " 5", "5\x00", "1_000"]


@pytest.mark.parametrize("field", ["after", "limit"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
async def test_bad_after_or_limit_is_bad_request(harness: Harness, field: str, value: str) -> None:
    domain = await harness.new_domain()
    answer = await harness.admin.request("GET", domain.path("events"), params={field: value})
    refused(answer, 400, "bad_request", field)
    # The server carries on, and an empty value is the default.
    assert ok(await harness.admin.request("GET", domain.path("events"), params={field: ""})) == []


@pytest.mark.parametrize(("field", "good"), [("after", "0"), ("limit", "5")])
async def test_a_query_parameter_given_twice_is_bad_request(
    harness: Harness, field: str, good: str
) -> None:
    domain = await harness.new_domain()
    for values in ([good, "x"], ["x", good], [good, good]):
        params = [(field, value) for value in values]
        answer = await harness.admin.request("GET", domain.path("events"), params=params)
        refused(answer, 400, "bad_request", field)


@pytest.mark.parametrize("path", ["events", "usage"])
async def test_wallboard_and_user_tokens_cannot_read_events_or_usage(
    harness: Harness, path: str
) -> None:
    domain = await harness.new_domain()
    member = await domain.named_user()
    for token in (await domain.token("wallboard"), member.token):
        refused(await harness.api(token).get(domain.path(path)), 403, "forbidden")
    ok(await harness.api(await domain.token("admin")).get(domain.path(path)))


# The usage report


async def test_usage_of_a_scripted_sequence(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(2)
    quiet = await domain.pool(1)
    ann, bob, cid = [await domain.seat_user(desk) for _ in range(3)]
    start = time.time()

    ann_in = time.time()
    a = await harness.login(ann)
    ann_welcomed = time.time()
    bob_in = time.time()
    b = await harness.login(bob)
    bob_welcomed = time.time()
    await harness.refused_login(cid, "seat_occupied")
    await a.call_start("c1")
    await a.expect("call_started", call_id="c1")
    await a.call_end("c1")
    await a.expect("call_ended", call_id="c1")
    await asyncio.sleep(0.6)  # both seats held for a measurable time
    bob_out = time.time()
    await b.logout()
    bob_gone = time.time()
    await asyncio.sleep(0.6)  # one seat held
    ann_out = time.time()
    await a.logout()
    ann_gone = time.time()
    end = time.time()

    report = await usage(domain, start - 1, end)

    assert set(report) == {desk["id"], quiet["id"]}
    assert report[quiet["id"]] == zeros(quiet)
    row = report[desk["id"]]
    assert (row["pool"], row["seats"], row["peak_occupied"]) == (desk["id"], 2, 2)
    assert (row["denials"], row["calls"]) == (1, 1)
    shortest = (ann_out - ann_welcomed) + (bob_out - bob_welcomed)
    longest = (ann_gone - ann_in) + (bob_gone - bob_in)
    assert shortest - TOLERANCE <= row["seat_seconds"] <= longest + TOLERANCE, (
        shortest,
        row,
        longest,
    )

    answer = await usage_response(domain, period(start - 1, end), "text/csv")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv"), answer.headers
    lines = list(csv.DictReader(io.StringIO(answer.text)))
    assert set(lines[0]) == set(USAGE_KEYS), answer.text
    from_csv = {
        line["pool"]: {
            "pool": line["pool"],
            "seats": int(line["seats"]),
            "peak_occupied": int(line["peak_occupied"]),
            "seat_seconds": float(line["seat_seconds"]),
            "denials": int(line["denials"]),
            "calls": int(line["calls"]),
        }
        for line in lines
    }
    assert from_csv == report


async def test_usage_before_any_activity_is_zero(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    holder = await harness.login(await domain.seat_user(desk))
    await harness.refused_login(await domain.seat_user(desk), "seat_occupied")
    await holder.call_start("c1")
    await holder.expect("call_started", call_id="c1")
    now = time.time()

    report = await usage(domain, now - 7200, now - 3600)

    assert report == {desk["id"]: zeros(desk)}


async def test_usage_counts_an_open_session_up_to_the_end_of_the_period(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    asked = time.time()
    await harness.login(await domain.seat_user(desk))
    welcomed = time.time()
    await asyncio.sleep(1.0)  # the seat held for a measurable time

    # A period inside the session: it counts from its start to its end.
    inside = await usage(domain, welcomed + 0.2, welcomed + 0.7)
    assert inside[desk["id"]]["seat_seconds"] == pytest.approx(0.5, abs=0.01)
    assert inside[desk["id"]]["peak_occupied"] == 1
    # A period ending in the past, with the session still open.
    until = welcomed + 0.8
    earlier = await usage(domain, asked - 1, until)
    assert until - welcomed - TOLERANCE <= earlier[desk["id"]]["seat_seconds"]
    assert earlier[desk["id"]]["seat_seconds"] <= until - asked + TOLERANCE
    # No end: up to now.
    before = time.time()
    current = await usage(domain, asked - 1)
    after = time.time()
    seat_seconds = current[desk["id"]]["seat_seconds"]
    assert before - welcomed - TOLERANCE <= seat_seconds <= after - asked + TOLERANCE
    assert current[desk["id"]]["peak_occupied"] == 1


@pytest.mark.parametrize("field", ["from", "to"])
@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-02-30T00:00:00Z",
        "\u00b2",
        "\uff12\uff10\uff12\uff16-01-01",
        "2026-01-01T00:00:00\x00",  # Python 3.11's fromisoformat takes it
        "2026-01-01T00:00:00+99:00",
        "9" * 5000,
    ],
)
async def test_bad_from_or_to_is_bad_request(harness: Harness, field: str, value: str) -> None:
    domain = await harness.new_domain()
    await domain.pool(1)
    refused(await usage_response(domain, {field: value}), 400, "bad_request", field)


@pytest.mark.parametrize("field", ["from", "to"])
async def test_from_or_to_given_twice_is_bad_request(harness: Harness, field: str) -> None:
    domain = await harness.new_domain()
    await domain.pool(1)
    params = [(field, "2026-01-01T00:00:00Z"), (field, "2026-01-02T00:00:00Z")]
    answer = await domain.api.request("GET", domain.path("usage"), params=params)
    refused(answer, 400, "bad_request", field)


async def test_every_license_change_is_logged_once(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    seated, named, idle = (
        await domain.seat_user(desk),
        await domain.named_user(),
        await domain.named_user(),
    )
    s1, n1 = await harness.login(seated), await harness.login(named)
    for member in (seated, named, idle):
        ok(await harness.admin.put(domain.path("users", member.id, "license"), {"model": "none"}))
    await s1.expect_ended("license_changed", 4411)
    await n1.expect_ended("license_changed", 4411)
    changes = await domain.events(type="license_changed")
    assert [(e["user_id"], e["pool"], e["seat"]) for e in changes] == [
        (seated.id, desk["id"], 1),  # the seat it freed
        (named.id, None, None),
        (idle.id, None, None),
    ]
