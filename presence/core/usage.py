"""Seat usage over a period, computed from the event log.

A seat is occupied from a ``seat_granted`` until one of the events that free
it; ``taken_over`` does not free it (the seat moves to the new device, whose
``seat_granted`` follows). Sessions that began before the period count from
its start, sessions still open count to its end, so the figures are exact for
any period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .model import Event, Pool

FREEING = frozenset(
    {"seat_released", "lease_expired", "idle_logoff", "released_by_admin", "license_changed"}
)


@dataclass(frozen=True, slots=True)
class PoolUsage:
    pool: str
    seats: int
    peak_occupied: int
    seat_seconds: float
    denials: int
    calls: int


class _Tally:
    __slots__ = ("held", "last", "peak", "seat_seconds", "denials", "calls")

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.last = 0.0
        self.peak = 0
        self.seat_seconds = 0.0
        self.denials = 0
        self.calls = 0


def usage(
    pools: Iterable[Pool], events: Iterable[Event], start: float, end: float
) -> list[PoolUsage]:
    """Usage of each pool between ``start`` and ``end``.

    ``events`` are the domain's pool events up to ``end`` at least, oldest
    first; ``end`` should not be later than now.
    """
    pools = list(pools)
    tallies = {pool.id: _Tally() for pool in pools}
    for event in events:
        tally = tallies.get(event.pool or "")
        if tally is None or event.at > end:
            continue
        if event.at >= start:
            if event.at > start:  # the state before the event was seen in the period
                tally.peak = max(tally.peak, len(tally.held))
            tally.seat_seconds += len(tally.held) * (event.at - max(tally.last, start))
            tally.last = event.at
            tally.denials += event.type == "seat_denied"
            tally.calls += event.type == "call_started"
        if event.seat is not None:
            if event.type == "seat_granted":
                tally.held.add(event.seat)
            elif event.type in FREEING:
                tally.held.discard(event.seat)
        if event.at >= start:
            tally.peak = max(tally.peak, len(tally.held))
    result = []
    for pool in pools:
        tally = tallies[pool.id]
        tally.seat_seconds += len(tally.held) * (end - max(tally.last, start))
        peak = max(tally.peak, len(tally.held))
        result.append(
            PoolUsage(pool.id, pool.seats, peak, round(tally.seat_seconds, 3),
                      tally.denials, tally.calls)
        )  # fmt: skip
    return result
