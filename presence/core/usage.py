"""Seat usage over a period, or step by step, from the pools' state at its start
and what happened in it.

A seat is occupied from a ``seat_granted`` until one of the events that free
it; ``taken_over`` does not free it (the seat moves to the new device, whose
``seat_granted`` follows). A pool's queue is as long as its latest
:class:`~presence.core.model.QueueSample` says.

A period is half-open, ``[start, end)``: an event at exactly ``end`` belongs
to the next period, so consecutive periods count every event once. Sessions
that began before the period count from its start, sessions still open count
to its end, so the figures are exact for any period:

- ``peak_occupied``: the most seats held at once in the period. The seats held
  at ``start`` count (those held after the events at exactly ``start``), and
  so does each state between events of one instant.
- ``seat_seconds``: the time each seat was held within the period, summed, to
  the millisecond.
- ``denials`` and ``calls``: the ``seat_denied`` and ``call_started`` events.
- ``peak_queued``: the longest the queue was in the period, its length at
  ``start`` included, counted as ``peak_occupied`` is.

The figures come from a :class:`History`: each pool's state at ``start`` and
the events and queue samples of the period, which a store reads by index
without replaying what came before; :func:`history_of` takes it from the whole
log, by the same rules, and is the reference for stores. Events are in the
log's order (by id), samples by time. An event with a time earlier than one
logged before it (a clock set back) is taken to happen at that one's time:
time never runs backwards here. So the period of an event is the one its
predecessors' clock puts it in, and a period's events run from the first one
logged at or after ``start`` to the first one at or after ``end``, excluded;
the state at ``start`` is what the events logged before that first one left.
A sample's period is the one its own time falls in.

:func:`series` gives the figures of each step of a period in one pass, each
exactly as :func:`usage` gives them for that step alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Protocol

from .model import Event, Pool, QueueSample

FREEING = frozenset(
    {"seat_released", "lease_expired", "idle_logoff", "released_by_admin", "license_changed"}
)

#: An event as usage reads it: (at, pool, type, seat). Rows rather than
#: :class:`~presence.core.model.Event` objects: a year of history is a million.
EventRow = tuple[float, str, str, int | None]
#: A queue sample as usage reads it: (at, pool, queued).
SampleRow = tuple[float, str, int]


@dataclass(frozen=True, slots=True)
class PoolState:
    """A pool at an instant: the seats held and how many sessions wait in its queue."""

    held: frozenset[int] = frozenset()
    queued: int = 0


@dataclass(frozen=True, slots=True)
class History:
    """What the usage of a period ``[start, end)`` is computed from.

    ``state``: each pool's state at ``start`` (a pool missing from it: no
    seat held, nobody queued). ``events``: the period's pool events, in the
    log's order, the first one logged at or after ``start`` first (see the
    module's docstring). ``samples``: the queue samples timed in the period,
    by time.
    """

    state: Mapping[str, PoolState] = field(default_factory=dict)
    events: Sequence[EventRow] = ()
    samples: Sequence[SampleRow] = ()


@dataclass(frozen=True, slots=True)
class PoolUsage:
    pool: str
    seats: int
    peak_occupied: int
    seat_seconds: float
    denials: int
    calls: int
    peak_queued: int = 0


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """The figures of one step, from ``at`` to the next point (or the series' end)."""

    at: float
    peak_occupied: int
    seat_seconds: float
    denials: int
    peak_queued: int
    calls: int


@dataclass(frozen=True, slots=True)
class PoolSeries:
    pool: str
    seats: int
    points: list[SeriesPoint]


def usage(pools: Iterable[Pool], history: History, start: float, end: float) -> list[PoolUsage]:
    """Usage of each pool in ``[start, end)`` (a period of no time if ``end <= start``).

    ``history`` is the period's (:class:`History`); ``end`` should not be
    later than now.
    """
    pools = list(pools)
    seats, queues = _walk_all(pools, history, [start, max(start, end)])
    return [
        PoolUsage(pool.id, pool.seats, *seats[pool.id][0], peak_queued=queues[pool.id][0])
        for pool in pools
    ]


def series(
    pools: Iterable[Pool], history: History, start: float, end: float, step: float
) -> list[PoolSeries]:
    """Usage of each pool per ``step`` seconds from ``start`` to ``end``.

    The points are at ``start + k * step`` for k = 0, 1, ... while before
    ``end``; each has the figures of ``usage()`` from its time to the next
    point's, the last one to ``end`` (a shorter step, perhaps). No points if
    ``end <= start``. ``history`` is the whole period's, as for :func:`usage`.
    """
    if not step > 0:
        raise ValueError(f"step must be positive, not {step}")
    pools = list(pools)
    count = point_count(start, end, step)
    if not count:
        return [PoolSeries(pool.id, pool.seats, []) for pool in pools]
    bounds = [start + k * step for k in range(count)]
    seats, queues = _walk_all(pools, history, [*bounds, end])
    return [
        PoolSeries(pool.id, pool.seats, [
            SeriesPoint(at, peak, seat_seconds, denials, queued, calls)
            for at, (peak, seat_seconds, denials, calls), queued
            in zip(bounds, seats[pool.id], queues[pool.id], strict=True)
        ])
        for pool in pools
    ]  # fmt: skip


def point_count(start: float, end: float, step: float) -> int:
    """How many points :func:`series` gives (at most 2**53, for tiny steps)."""
    if not end > start:
        return 0
    quotient = (end - start) / step
    if not quotient < 2**53:
        return 2**53
    count = math.ceil(quotient)  # off by one at most, from rounding: corrected below
    while count > 0 and start + (count - 1) * step >= end:
        count -= 1
    while start + count * step < end:
        count += 1
    return count


def history_of(
    pools: Iterable[Pool],
    events: Iterable[Event],
    samples: Iterable[QueueSample],
    start: float,
    end: float,
) -> History:
    """The :class:`History` of ``[start, end)`` taken from the whole log, with a
    state for each of ``pools``.

    ``events`` are the domain's events in the log's order (those of no pool are
    skipped) and ``samples`` its queue samples by time. Everything before
    ``start`` is replayed: this is the reference that stores, which read the
    state by index, must agree with.
    """
    held: dict[str, set[int]] = {pool.id: set() for pool in pools}
    queued = dict.fromkeys(held, 0)
    in_period: list[EventRow] = []
    clock = -math.inf
    for event in events:
        if event.pool is None:
            continue
        clock = max(clock, event.at)
        if clock >= start:
            if clock >= end:
                break
            in_period.append((event.at, event.pool, event.type, event.seat))
        elif event.pool in held and event.seat is not None:
            if event.type == "seat_granted":
                held[event.pool].add(event.seat)
            elif event.type in FREEING:
                held[event.pool].discard(event.seat)
    sampled: list[SampleRow] = []
    for sample in samples:
        if sample.at < start:
            if sample.pool in queued:
                queued[sample.pool] = sample.queued
        elif sample.at < end:
            sampled.append((sample.at, sample.pool, sample.queued))
    state = {pool: PoolState(frozenset(seats), queued[pool]) for pool, seats in held.items()}
    return History(state, in_period, sampled)


_NOTHING = PoolState()


def _walk_all(
    pools: list[Pool], history: History, bounds: Sequence[float]
) -> tuple[dict[str, list[tuple[int, float, int, int]]], dict[str, list[int]]]:
    """Each pool's figures in each period between consecutive ``bounds``:
    (peak, seat seconds, denials, calls), and peak queue length."""
    states = {pool.id: history.state.get(pool.id, _NOTHING) for pool in pools}
    seats = {pool: _Seats(state.held) for pool, state in states.items()}
    queues = {pool: _Queue(state.queued) for pool, state in states.items()}
    _walk(seats, history.events, bounds)
    _walk(queues, history.samples, bounds)
    return (
        {pool: tally.figures for pool, tally in seats.items()},
        {pool: tally.figures for pool, tally in queues.items()},
    )


class _Tally(Protocol):
    """One pool through consecutive periods: its state, and each period's figures."""

    def open(self, start: float) -> None: ...
    def take(self, row: Any, at: float) -> None:
        """Take a row of the pool at ``at`` (its clock, within the period open)."""

    def close(self, end: float) -> None:
        """End the period at ``end``, adding its figures to the tally's."""


def _walk(tallies: Mapping[str, _Tally], rows: Iterable[Any], bounds: Sequence[float]) -> None:
    """Feed ``rows`` (each ``(at, pool, ...)``) to the tallies of their pools,
    through the periods between consecutive ``bounds``; every tally closes
    every period."""
    first, last = bounds[0], bounds[-1]
    period, end = 1, bounds[1]
    for tally in tallies.values():
        tally.open(first)
    clock = first
    for row in rows:
        if row[0] > clock:
            clock = row[0]
        if clock >= last:
            break
        while clock >= end:
            for tally in tallies.values():
                tally.close(end)
                tally.open(end)
            period += 1
            end = bounds[period]
        pool = tallies.get(row[1])
        if pool is not None:
            pool.take(row, clock)
    for tally in tallies.values():
        tally.close(end)
    for later, later_end in pairwise(bounds[period:]):
        for tally in tallies.values():
            tally.open(later)
            tally.close(later_end)


class _Seats:
    __slots__ = ("held", "figures", "start", "last", "peak", "seat_seconds", "denials", "calls")

    def __init__(self, held: Iterable[int]) -> None:
        self.held = set(held)
        self.figures: list[tuple[int, float, int, int]] = []

    def open(self, start: float) -> None:
        self.start = self.last = start
        self.peak = self.denials = self.calls = 0
        self.seat_seconds = 0.0

    def take(self, row: EventRow, at: float) -> None:
        # On every event of a year of history: comparisons rather than max().
        _, _, type_, seat = row
        held = len(self.held)
        if at > self.start and held > self.peak:  # the state before, seen in the period
            self.peak = held
        self.seat_seconds += held * (at - self.last)
        self.last = at
        if type_ == "seat_denied":
            self.denials += 1
        elif type_ == "call_started":
            self.calls += 1
        elif seat is not None:
            if type_ == "seat_granted":
                self.held.add(seat)
            elif type_ in FREEING:
                self.held.discard(seat)
            held = len(self.held)
        if held > self.peak:
            self.peak = held

    def close(self, end: float) -> None:
        held = len(self.held)
        self.seat_seconds += held * (end - self.last)
        peak = max(self.peak, held)
        self.figures.append((peak, round(self.seat_seconds, 3), self.denials, self.calls))


class _Queue:
    __slots__ = ("queued", "figures", "start", "peak")

    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.figures: list[int] = []

    def open(self, start: float) -> None:
        self.start = start
        self.peak = 0

    def take(self, row: SampleRow, at: float) -> None:
        if at > self.start and self.queued > self.peak:  # the length before, seen in the period
            self.peak = self.queued
        self.queued = row[2]
        if self.queued > self.peak:
            self.peak = self.queued

    def close(self, end: float) -> None:
        self.figures.append(max(self.peak, self.queued))
