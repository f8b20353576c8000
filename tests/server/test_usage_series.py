"""Usage over time (`GET .../usage/series`) and the event log's filters, over HTTP.

The series is checked against the usage report itself: each point must be
exactly what `GET .../usage` answers for that step. Exactness over scripted
timelines, boundaries included, is the core tests' job (tests/core/test_usage.py);
here real devices make the history and the server's two answers must agree.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

from .client import Domain, Harness, Message, ok, parse_utc, refused
from .test_events_usage import iso, usage

POINT_KEYS = {"at", "peak_occupied", "seat_seconds", "denials", "peak_queued", "calls"}


async def series(domain: Domain, **query: Any) -> list[Message]:
    answer = ok(await domain.api.request("GET", domain.path("usage", "series"), params=query))
    assert isinstance(answer, list), answer
    return answer


async def test_every_point_is_the_usage_of_its_step(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    other = await domain.pool(2)
    ann, bob = await domain.seat_user(desk), await domain.seat_user(desk)
    start = int(time.time()) // 60 * 60 - 120  # two whole minutes of nothing first
    a1 = await harness.login(ann)
    await harness.refused_login(bob, "seat_occupied")
    waiting = await harness.queued_login(bob, 1)
    await a1.call_start("c1")
    await a1.expect("call_started", call_id="c1")
    await a1.call_end("c1")
    await a1.expect("call_ended", call_id="c1")
    await a1.logout()
    await waiting.granted()
    end = time.time()

    answer = await series(domain, **{"from": iso(start), "to": iso(end), "step": "60"})
    by_pool = {s["pool"]: s for s in answer}
    assert sorted(by_pool) == sorted([desk["id"], other["id"]])
    for pool_series in answer:
        assert pool_series["seats"] == {desk["id"]: 1, other["id"]: 2}[pool_series["pool"]]
        points = pool_series["points"]
        assert len(points) == -(-(end - start) // 60)  # the last step ends at `to`
        for k, point in enumerate(points):
            assert set(point) == POINT_KEYS
            at = start + 60 * k
            assert parse_utc(point["at"]).timestamp() == at
            report = (await usage(domain, at, min(at + 60, end)))[pool_series["pool"]]
            assert {f: point[f] for f in report if f not in ("pool", "seats")} == {
                f: v for f, v in report.items() if f not in ("pool", "seats")
            }, f"step {k} of {pool_series['pool']}"
    desk_points = by_pool[desk["id"]]["points"]
    assert sum(p["denials"] for p in desk_points) == 2  # refused, then queued: not seated at once
    assert sum(p["calls"] for p in desk_points) == 1
    assert max(p["peak_queued"] for p in desk_points) == 1
    assert max(p["peak_occupied"] for p in desk_points) == 1
    assert all(p["peak_occupied"] == p["peak_queued"] == 0 for p in by_pool[other["id"]]["points"])


async def test_the_series_as_csv_has_the_same_figures(harness: Harness) -> None:
    domain = await harness.new_domain()
    desk = await domain.pool(1)
    await harness.login(await domain.seat_user(desk))
    end = time.time()
    query = {"from": iso(end - 300), "to": iso(end), "step": "60"}
    answer = await series(domain, **query)
    response = await domain.api.request(
        "GET", domain.path("usage", "series"), params=query, headers={"Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["pool", *sorted(POINT_KEYS, key=list(answer[0]["points"][0]).index)]
    expected = [{"pool": s["pool"], **p} for s in answer for p in s["points"]]
    assert [{k: str(v) for k, v in row.items()} for row in expected] == rows


async def test_the_default_is_the_last_day_by_the_hour(harness: Harness) -> None:
    domain = await harness.new_domain()
    await domain.pool(1)
    [only] = await series(domain)
    assert len(only["points"]) in (24, 25)  # 25 when the day does not start on the hour
    assert all(p["peak_occupied"] == 0 for p in only["points"])


async def test_steps_and_periods_out_of_range_are_refused(harness: Harness) -> None:
    domain = await harness.new_domain()
    await domain.pool(1)
    path = domain.path("usage", "series")
    now = time.time()
    for query in (
        {"step": "59"},
        {"step": "86401"},
        {"step": "60.5"},
        {"step": "60", "from": iso(now - 60 * 2001), "to": iso(now)},  # 2,001 points
        {"from": "yesterday"},
        {"step": "60", "stpe": "3600"},  # misspelt: refused, not ignored
    ):
        field = (
            "stpe" if "stpe" in query else "from" if query.get("from") == "yesterday" else "step"
        )
        refused(await domain.api.request("GET", path, params=query), 400, "bad_request", field)
    wallboard = harness.api(await domain.token("wallboard"))
    refused(await wallboard.request("GET", path), 403, "forbidden")


async def test_events_filter_by_type_user_pool_and_period_and_page_backwards(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    desk, field = await domain.pool(1), await domain.pool(1)
    ann, bob = await domain.seat_user(desk), await domain.seat_user(desk)
    cy = await domain.seat_user(field)
    a1 = await harness.login(ann)
    await harness.refused_login(bob, "seat_occupied")
    middle = time.time()
    await a1.logout()
    c1 = await harness.login(cy)
    await c1.logout()
    every = await domain.events(limit=1000)
    assert len(every) == 6  # the denial's pool_full alert among them

    def ids(events: list[Message]) -> list[int]:
        return [e["id"] for e in events]

    denied = await domain.events(type="seat_denied")
    assert [(e["type"], e["user_id"]) for e in denied] == [("seat_denied", bob.id)]
    two_types = await domain.events(type=["seat_granted", "seat_denied"])
    assert ids(two_types) == [
        e["id"] for e in every if e["type"] in ("seat_granted", "seat_denied")
    ]
    assert {e["user_id"] for e in await domain.events(user_id=ann.id)} == {ann.id}
    assert {e["pool"] for e in await domain.events(pool=field["id"])} == {field["id"]}
    before_middle = await domain.events(to=iso(middle))
    after_middle = await domain.events(**{"from": iso(middle)})
    assert ids(before_middle) + ids(after_middle) == ids(every)
    # Backwards from the newest, two at a time, each page oldest first.
    newest = await domain.events(before=str(2**62), limit=2)
    assert ids(newest) == ids(every)[-2:]
    assert ids(await domain.events(before=str(newest[0]["id"]), limit=2)) == ids(every)[-4:-2]
    path = domain.path("events")
    for query in ({"type": "seat_grabbed"}, {"pool": "Not an id"}, {"before": "-1"}):
        refused(await domain.api.request("GET", path, params=query), 400, "bad_request")
