"""Usage figures against a scripted timeline, and series against usage step by step.

Periods are half-open, [start, end): an event at exactly `end` counts in the
next period. The figures are computed from the state at the period's start and
its own events and samples (a `History`), as a store reads them; `usage_of` and
`series_of` take that history from the whole log with `history_of`.
"""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from presence.core.model import Event, Pool, QueueSample
from presence.core.usage import (
    FREEING,
    History,
    PoolSeries,
    PoolState,
    PoolUsage,
    SeriesPoint,
    history_of,
    point_count,
    series,
    usage,
)

T = 1_800_000_000.0
DESK = Pool("acme", "desk", "Help desk", 2)
FIELD = Pool("acme", "field", "Field", 1)


def ev(at: float, type_: str, seat: int | None = 1, pool: str = "desk") -> Event:
    return Event(type_, T + at, "acme", "u", "d", pool, seat)


def qs(at: float, queued: int, pool: str = "desk") -> QueueSample:
    return QueueSample("acme", pool, T + at, queued)


# Seat 1: held 0-100 (replaced at 40, taken over at 60), then 150-... (still open).
# Seat 2: held 20-70, then expired. Field seat 1: held 10-30.
TIMELINE = [
    ev(0, "seat_granted"),
    ev(10, "seat_granted", pool="field"),
    ev(20, "seat_granted", 2),
    ev(25, "seat_denied", None),
    ev(30, "seat_released", pool="field"),
    ev(40, "seat_granted"),  # the same device logged in again: no gap
    ev(45, "call_started"),
    ev(50, "call_ended"),
    ev(60, "taken_over"),
    ev(60, "seat_granted"),
    ev(70, "lease_expired", 2),
    ev(80, "seat_denied", None),
    ev(100, "seat_released"),
    ev(150, "seat_granted"),
]
# The desk's queue: 1 from 25, empty from 40; at 60 two joined and one was
# served at once; 2 again from 80, empty from 100. Field: 1 from 5 to 10.
QUEUE = [
    qs(5, 1, "field"),
    qs(10, 0, "field"),
    qs(25, 1),
    qs(40, 0),
    qs(60, 2),
    qs(60, 1),
    qs(80, 2),
    qs(100, 0),
]


def usage_of(
    pools: list[Pool], events: list[Event], start: float, end: float,
    samples: list[QueueSample] | None = None,
) -> list[PoolUsage]:  # fmt: skip
    """`usage()` of the history of [start, end) in the whole log."""
    return usage(pools, history_of(pools, events, samples or [], start, end), start, end)


def series_of(
    pools: list[Pool], events: list[Event], samples: list[QueueSample], start: float,
    end: float, step: float,
) -> list[PoolSeries]:  # fmt: skip
    """`series()` of the history of [start, end) in the whole log."""
    return series(pools, history_of(pools, events, samples, start, end), start, end, step)


def at(start: float, end: float, pools: list[Pool] | None = None) -> list[PoolUsage]:
    return usage_of(pools or [DESK], TIMELINE, T + start, T + end, QUEUE)


def test_whole_timeline() -> None:
    desk, field = at(0, 200, [DESK, FIELD])
    assert desk == PoolUsage("desk", 2, 2, 100 + 50 + 50, 2, 1, peak_queued=2)
    assert field == PoolUsage("field", 1, 1, 20, 0, 0, peak_queued=1)


def test_sessions_open_before_and_after_the_period_are_clipped() -> None:
    (desk,) = at(30, 65)
    assert desk.seat_seconds == 35 + 35
    assert desk.peak_occupied == 2
    assert (desk.denials, desk.calls) == (0, 1)


def test_peak_counts_holders_carried_into_the_period() -> None:
    (desk,) = at(65, 90)
    assert desk.peak_occupied == 2  # both seats were held at 65, one freed at 70
    assert desk.seat_seconds == 5 * 2 + 20
    assert desk.denials == 1


def test_quiet_period_with_a_seat_held_throughout() -> None:
    (desk,) = at(160, 170)
    assert (desk.peak_occupied, desk.seat_seconds, desk.denials, desk.calls) == (1, 10, 0, 0)


def test_period_before_anything_happened() -> None:
    (desk,) = at(-100, -50)
    assert desk == PoolUsage("desk", 2, 0, 0, 0, 0)


def test_events_after_the_end_are_ignored() -> None:
    (desk,) = usage_of([DESK], TIMELINE, T, T + 30)
    assert desk.seat_seconds == 30 + 10 and desk.denials == 1


def test_an_event_at_the_end_belongs_to_the_next_period() -> None:
    assert at(0, 25)[0].denials == 0
    assert at(25, 30)[0].denials == 1
    assert (at(40, 45)[0].calls, at(45, 50)[0].calls) == (0, 1)
    assert at(10, 20)[0].peak_occupied == 1  # seat 2 is granted at 20, after the period
    assert at(20, 21)[0].peak_occupied == 2
    assert at(100, 150)[0] == PoolUsage("desk", 2, 0, 0, 0, 0)  # seat 1 freed at 100 on
    assert at(90, 100)[0].peak_occupied == 1


def test_an_event_at_the_start_counts_as_the_state_after_it() -> None:
    (desk,) = at(70, 80)
    assert desk.peak_occupied == 1  # seat 2 expired at 70: the state at 70 is after it
    assert desk.seat_seconds == 10


def test_an_empty_period_counts_nothing() -> None:
    (desk,) = at(25, 25)
    assert (desk.seat_seconds, desk.denials, desk.calls) == (0, 0, 0)
    assert at(30, 20) == at(30, 30)


def test_peak_queued() -> None:
    assert [at(a, b)[0].peak_queued for a, b in [(0, 25), (25, 26), (30, 40)]] == [0, 1, 1]
    assert at(40, 60)[0].peak_queued == 0  # 1 until 40, empty from 40 until 60
    assert at(60, 61)[0].peak_queued == 2  # two joined at 60, one was served at once
    assert at(61, 80)[0].peak_queued == 1
    assert at(90, 100)[0].peak_queued == 2  # its length at the start
    assert at(100, 200)[0].peak_queued == 0
    assert usage_of([FIELD], TIMELINE, T, T + 200, QUEUE)[0].peak_queued == 1


def test_time_set_back_is_taken_as_the_time_before() -> None:
    events = [ev(0, "seat_granted"), ev(10, "seat_denied", None), ev(5, "seat_released")]
    (desk,) = usage_of([DESK], events, T, T + 20)
    assert desk == PoolUsage("desk", 2, 1, 10, 1, 0)  # released at 10, not at 5
    assert usage_of([DESK], events, T + 5, T + 10)[0].seat_seconds == 5


# The history of a period.


def test_the_history_of_a_period_is_its_start_state_and_its_own_events() -> None:
    history = history_of([DESK, FIELD], TIMELINE, QUEUE, T + 30, T + 80)
    assert history.state == {
        "desk": PoolState(frozenset({1, 2}), 1),  # seats held and the queue's length at 30
        "field": PoolState(frozenset({1}), 0),  # released at exactly 30: in the period
    }
    assert [(e.type, e.at) for e in TIMELINE if T + 30 <= e.at < T + 80] == [
        (type_, at) for at, _, type_, _ in history.events
    ]
    assert history.samples == [(T + 40, "desk", 0), (T + 60, "desk", 2), (T + 60, "desk", 1)]
    assert usage([DESK, FIELD], history, T + 30, T + 80) == at(30, 80, [DESK, FIELD])


def test_a_pool_missing_from_the_state_holds_nothing() -> None:
    (desk,) = usage([DESK], History(), T, T + 10)
    assert desk == PoolUsage("desk", 2, 0, 0, 0, 0)
    (desk,) = usage([DESK], History({"desk": PoolState(frozenset({1}), 3)}), T, T + 10)
    assert desk == PoolUsage("desk", 2, 1, 10, 0, 0, peak_queued=3)


def test_an_event_logged_after_the_clock_was_set_back_stays_in_its_period() -> None:
    events = [ev(0, "seat_granted"), ev(10, "seat_denied", None), ev(5, "seat_released")]
    # Logged after an event at 10, the release at 5 is taken at 10: after [0, 10).
    assert history_of([DESK], events, [], T, T + 10).events == [(T, "desk", "seat_granted", 1)]
    later = history_of([DESK], events, [], T + 10, T + 20)
    assert later.state == {"desk": PoolState(frozenset({1}))}
    assert [type_ for _, _, type_, _ in later.events] == ["seat_denied", "seat_released"]


# Series.


def check_series(pools: list[Pool], start: float, end: float, step: float) -> None:
    """Every point of the series is `usage()` of its step; the steps tile [start, end)."""
    got = series_of(pools, TIMELINE, QUEUE, start, end, step)
    assert [s.pool for s in got] == [p.id for p in pools]
    for pool, pool_series in zip(pools, got, strict=True):
        assert pool_series.seats == pool.seats
        times = [p.at for p in pool_series.points]
        assert times == [start + k * step for k in range(len(times))]
        assert all(t < end for t in times) and (not times or times[-1] + step >= end)
        for point, point_end in zip(pool_series.points, [*times[1:], end], strict=True):
            (expected,) = usage_of([pool], TIMELINE, point.at, point_end, QUEUE)
            assert point == SeriesPoint(
                point.at, expected.peak_occupied, expected.seat_seconds, expected.denials,
                expected.peak_queued, expected.calls,
            )  # fmt: skip


@pytest.mark.parametrize("step", [1, 5, 7, 10, 20, 25, 30, 60, 199, 200, 1000, 2.5])
@pytest.mark.parametrize("start", [-50, -1, 0, 3, 20, 60, 99.5])
def test_each_point_is_the_usage_of_its_step(step: float, start: float) -> None:
    check_series([DESK, FIELD], T + start, T + 220, step)


def test_points_and_the_last_shorter_step() -> None:
    (desk,) = series_of([DESK], TIMELINE, QUEUE, T, T + 100, 30)
    assert [p.at - T for p in desk.points] == [0, 30, 60, 90]
    assert desk.points[-1] == SeriesPoint(T + 90, 1, 10, 0, 2, 0)  # 90 to 100 only
    assert [p.seat_seconds for p in desk.points] == [30 + 10, 30 + 30, 30 + 10, 10]
    assert [p.denials for p in desk.points] == [1, 0, 1, 0]
    assert [p.peak_queued for p in desk.points] == [1, 1, 2, 2]


def test_events_on_step_boundaries_count_once() -> None:
    (desk,) = series_of([DESK], TIMELINE, QUEUE, T, T + 200, 5)
    assert sum(p.denials for p in desk.points) == 2
    assert sum(p.calls for p in desk.points) == 1
    assert sum(p.seat_seconds for p in desk.points) == 200
    (whole,) = at(0, 200)
    assert max(p.peak_occupied for p in desk.points) == whole.peak_occupied


def test_no_points_for_an_empty_period() -> None:
    assert series_of([DESK, FIELD], TIMELINE, QUEUE, T + 10, T + 10, 60) == [
        series_of([DESK], [], [], 0, 0, 1)[0],
        series_of([FIELD], [], [], 0, 0, 1)[0],
    ]
    assert series_of([DESK], TIMELINE, QUEUE, T + 10, T, 60)[0].points == []
    assert point_count(T + 10, T, 60) == 0


def test_point_count() -> None:
    assert point_count(T, T + 100, 30) == 4
    assert point_count(T, T + 90, 30) == 3
    assert point_count(T, T + 90.001, 30) == 4
    assert point_count(T, T + 86_400 * 365, 86_400) == 365
    assert point_count(0.1, 0.7, 0.1) == len(series_of([DESK], [], [], 0.1, 0.7, 0.1)[0].points)


def test_a_step_must_be_positive() -> None:
    with pytest.raises(ValueError):
        series_of([DESK], TIMELINE, QUEUE, T, T + 10, 0)


# Random timelines.

TYPES = st.sampled_from(
    sorted(FREEING | {"seat_granted", "seat_denied", "taken_over", "call_started", "call_ended"})
)
# Mostly forward, often at the same instant, now and then backwards (a clock set back).
DELAYS = st.sampled_from([0, 0, 0.5, 1, 1, 2, 3, 7, 10, -1])
POOLS = [Pool("acme", "desk", "Desk", 3), Pool("acme", "field", "Field", 1)]
POOL_IDS = st.sampled_from(["desk", "field", "gone"])


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Event], list[QueueSample]]:
    events, samples = [], []
    now = T
    for delay, type_, pool, seat in draw(
        st.lists(st.tuples(DELAYS, TYPES, POOL_IDS, st.sampled_from([1, 2, 3, None])))
    ):
        now += delay
        events.append(Event(type_, now, "acme", "u", "d", pool, seat))
    now = T
    for delay, pool, queued in draw(
        st.lists(st.tuples(DELAYS, POOL_IDS, st.integers(0, 4)), max_size=30)
    ):
        now = max(now, now + delay)  # samples are read by time
        samples.append(QueueSample("acme", pool, now, queued))
    return events, samples


def oracle(
    pool: str, events: list[Event], samples: list[QueueSample], start: float, end: float
) -> tuple[int, float, int, int, int]:
    """(peak, seat seconds, denials, calls, peak queued) by the definitions, naively."""
    states = []  # (time, seats held after the event) of each event of the pool
    held: set[int] = set()
    clock = float("-inf")
    denials = calls = 0
    for e in events:
        clock = max(clock, e.at)
        if e.pool != pool:
            continue
        if e.seat is not None and e.type == "seat_granted":
            held.add(e.seat)
        elif e.seat is not None and e.type in FREEING:
            held.discard(e.seat)
        states.append((clock, len(held)))
        denials += start <= clock < end and e.type == "seat_denied"
        calls += start <= clock < end and e.type == "call_started"
    peak = max([n for t, n in states if start <= t < end] + [_at(states, start)])
    seconds = 0.0
    for (t, n), t_next in zip(states, [t for t, _ in states[1:]] + [end], strict=False):
        seconds += n * max(0.0, min(t_next, end) - max(t, start))
    lengths = [(s.at, s.queued) for s in samples if s.pool == pool]
    queued = max([q for t, q in lengths if start <= t < end] + [_at(lengths, start)])
    return peak, seconds, denials, calls, queued


def _at(states: list[tuple[float, int]], when: float) -> int:
    """The state after everything up to ``when`` included."""
    before = [n for t, n in states if t <= when]
    return before[-1] if before else 0


@settings(max_examples=400, deadline=None)
@given(
    timelines(),
    st.floats(-20, 200, allow_nan=False).map(lambda x: T + x),
    st.floats(0.01, 300, allow_nan=False),
    st.one_of(st.sampled_from([1.0, 2.5, 5.0, 10.0, 60.0]), st.floats(0.3, 150)),
)
def test_random_timelines(
    timeline: tuple[list[Event], list[QueueSample]], start: float, length: float, step: float
) -> None:
    events, samples = timeline
    end = start + length
    got = series_of(POOLS, events, samples, start, end, step)
    for pool, pool_series in zip(POOLS, got, strict=True):
        assert len(pool_series.points) == point_count(start, end, step)
        bounds = [p.at for p in pool_series.points] + [end]
        for point, (a, b) in zip(pool_series.points, pairwise(bounds), strict=True):
            # The state at the step's start and the step's own events, against
            # the oracle's replay of the whole timeline.
            (expected,) = usage_of([pool], events, a, b, samples)
            assert (point.peak_occupied, point.seat_seconds, point.denials, point.calls) == (
                expected.peak_occupied, expected.seat_seconds, expected.denials, expected.calls,
            )  # fmt: skip
            assert point.peak_queued == expected.peak_queued
            peak, seconds, denials, calls, queued = oracle(pool.id, events, samples, a, b)
            assert (expected.peak_occupied, expected.denials, expected.calls) == (
                peak, denials, calls,
            )  # fmt: skip
            assert expected.seat_seconds == pytest.approx(seconds, abs=2e-3)
            assert expected.peak_queued == queued
