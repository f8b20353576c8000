"""Usage figures against a scripted timeline of events."""

from __future__ import annotations

from presence.core.model import Event, Pool
from presence.core.usage import PoolUsage, usage

T = 1_800_000_000.0
DESK = Pool("acme", "desk", "Help desk", 2)
FIELD = Pool("acme", "field", "Field", 1)


def ev(at: float, type_: str, seat: int | None = 1, pool: str = "desk") -> Event:
    return Event(type_, T + at, "acme", "u", "d", pool, seat)


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


def test_whole_timeline() -> None:
    desk, field = usage([DESK, FIELD], TIMELINE, T, T + 200)
    assert desk == PoolUsage("desk", 2, 2, 100 + 50 + 50, 2, 1)
    assert field == PoolUsage("field", 1, 1, 20, 0, 0)


def test_sessions_open_before_and_after_the_period_are_clipped() -> None:
    (desk,) = usage([DESK], TIMELINE, T + 30, T + 65)
    assert desk.seat_seconds == 35 + 35
    assert desk.peak_occupied == 2
    assert (desk.denials, desk.calls) == (0, 1)


def test_peak_counts_holders_carried_into_the_period() -> None:
    (desk,) = usage([DESK], TIMELINE, T + 65, T + 90)
    assert desk.peak_occupied == 2  # both seats were held at 65, one freed at 70
    assert desk.seat_seconds == 5 * 2 + 20
    assert desk.denials == 1


def test_quiet_period_with_a_seat_held_throughout() -> None:
    (desk,) = usage([DESK], TIMELINE, T + 160, T + 170)
    assert (desk.peak_occupied, desk.seat_seconds, desk.denials, desk.calls) == (1, 10, 0, 0)


def test_period_before_anything_happened() -> None:
    (desk,) = usage([DESK], TIMELINE, T - 100, T - 50)
    assert desk == PoolUsage("desk", 2, 0, 0, 0, 0)


def test_events_after_the_end_are_ignored() -> None:
    (desk,) = usage([DESK], TIMELINE, T, T + 30)
    assert desk.seat_seconds == 30 + 10 and desk.denials == 1
