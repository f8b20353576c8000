"""Capacity alerts as the core decides them: given the time, never a clock."""

from __future__ import annotations

from presence.core.alerts import QUIET, AlertState, denied, observe
from presence.core.model import Event, Pool

POOL = Pool("acme", "desk", "Help desk", 4, alert_interval_s=60, alert_threshold_pct=75)


def refused(at: float) -> Event:
    return Event("seat_denied", at, "acme", "u1", "d1", "desk")


def run(
    pool: Pool, steps: list[tuple[float, int]], state: AlertState = QUIET
) -> tuple[AlertState, list[tuple[float, str]]]:
    """Observe ``(now, occupied)`` in order; the alerts logged, with their times."""
    logged = []
    for now, occupied in steps:
        state, events = observe(pool, state, occupied, now)
        logged += [(e.at, e.type) for e in events]
    return state, logged


def test_pool_full_is_logged_at_a_denial_at_most_once_per_interval() -> None:
    state, events = denied(POOL, QUIET, refused(100.0))
    assert [(e.type, e.user_id, e.device_id, e.pool, e.seat) for e in events] == [
        ("pool_full", "u1", "d1", "desk", None)
    ]
    state, again = denied(POOL, state, refused(159.9))
    assert again == []
    state, later = denied(POOL, state, refused(160.0))
    assert [e.at for e in later] == [160.0]


def test_near_capacity_needs_the_whole_interval_above_the_threshold() -> None:
    # 3 of 4 is 75%: at the threshold. A dip below restarts the interval.
    _, logged = run(POOL, [(0, 3), (59, 3), (59.5, 2), (60, 3), (119, 4), (120, 3)])
    assert logged == [(120, "pool_near_capacity")]
    _, steady = run(POOL, [(0, 3), (30, 4), (60, 3), (61, 3)])
    assert steady == [(60, "pool_near_capacity")]  # logged once, not at every look


def test_recovery_after_the_interval_below_the_threshold_with_a_free_seat() -> None:
    state, logged = run(POOL, [(0, 3), (60, 3), (70, 2), (100, 3), (110, 1), (169, 0), (170, 0)])
    assert logged == [(60, "pool_near_capacity"), (170, "pool_recovered")]
    assert state == AlertState(near_since=None)
    # Once recovered, the next stretch alerts again.
    _, again = run(POOL, [(200, 3), (260, 3)], state)
    assert again == [(260, "pool_near_capacity")]


def test_a_full_pool_recovers_once_it_has_had_a_free_seat_for_the_interval() -> None:
    plain = Pool("acme", "desk", "Help desk", 2, alert_interval_s=10)  # no threshold
    state, _ = denied(plain, QUIET, refused(0.0))
    state, logged = run(plain, [(1, 2), (5, 1), (14, 1), (15, 1)], state)
    assert logged == [(15, "pool_recovered")]
    assert state.quiet and state.full_at == 0.0  # pool_full stays debounced from its time


def test_a_pool_full_again_before_the_interval_does_not_recover() -> None:
    plain = Pool("acme", "desk", "Help desk", 2, alert_interval_s=10)
    state, _ = denied(plain, QUIET, refused(0.0))
    state, logged = run(plain, [(1, 1), (5, 2), (9, 1), (18, 1)], state)
    assert logged == []  # free since 9 only
    state, _ = denied(plain, state, refused(18.5))  # a denial: not clear either
    _, logged = run(plain, [(19, 1), (28.9, 1), (29, 1)], state)
    assert logged == [(29, "pool_recovered")]


def test_without_a_threshold_or_an_open_alert_nothing_is_logged() -> None:
    plain = Pool("acme", "desk", "Help desk", 2)
    state, logged = run(plain, [(0, 2), (1000, 2), (2000, 0)])
    assert logged == [] and state == QUIET


def test_a_threshold_of_100_is_the_pool_full_and_0_seats_never_alert() -> None:
    full = Pool("acme", "desk", "Help desk", 2, alert_interval_s=5, alert_threshold_pct=100)
    _, logged = run(full, [(0, 1), (1, 2), (6, 2), (7, 1), (12, 1)])
    assert logged == [(6, "pool_near_capacity"), (12, "pool_recovered")]
    empty = Pool("acme", "desk", "Help desk", 0, alert_interval_s=5, alert_threshold_pct=1)
    assert run(empty, [(0, 0), (100, 0)])[1] == []
