"""Capacity alerts: when a pool turns people away or runs near its size.

Three event types, logged like every other (section 8 of the contract):

- ``pool_full`` when the pool denies a seat (a login refused with
  ``seat_occupied``, or queued), at most once per ``alert_interval_s``;
- ``pool_near_capacity`` when the share of its seats occupied has stayed at or
  above ``alert_threshold_pct`` for ``alert_interval_s``;
- ``pool_recovered`` once a pool that alerted has been below its threshold,
  with a free seat, for ``alert_interval_s``.

A pool's :class:`AlertState` is what it remembers between decisions; the
functions here give the next state and the events to log, from ``now`` and
the pool's occupancy, and never read a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .model import Event, Pool

FULL = "pool_full"
NEAR = "pool_near_capacity"
RECOVERED = "pool_recovered"


@dataclass(frozen=True, slots=True)
class AlertState:
    """``full_at``: when ``pool_full`` was last logged. ``full_open`` and
    ``near_open``: an alert was logged and the pool has not recovered since.
    ``near_since``: since when occupancy is at or above the threshold.
    ``clear_since``: since when a pool with an open alert is clear of it."""

    full_at: float | None = None
    full_open: bool = False
    near_since: float | None = None
    near_open: bool = False
    clear_since: float | None = None

    @property
    def quiet(self) -> bool:
        """Nothing to watch for a pool without a threshold."""
        return not (self.full_open or self.near_open)


QUIET = AlertState()


def denied(pool: Pool, state: AlertState, refused: Event) -> tuple[AlertState, list[Event]]:
    """The pool denied a seat (``refused`` is its ``seat_denied`` event)."""
    now = refused.at
    state = replace(state, clear_since=None)  # no free seat: not clear
    if state.full_at is not None and now - state.full_at < pool.alert_interval_s:
        return state, []
    alert = Event(FULL, now, pool.domain_id, refused.user_id, refused.device_id, pool.id)
    return replace(state, full_at=now, full_open=True), [alert]


def observe(
    pool: Pool, state: AlertState, occupied: int, now: float
) -> tuple[AlertState, list[Event]]:
    """The pool has ``occupied`` seats held at ``now``."""
    events: list[Event] = []
    interval = pool.alert_interval_s
    near = _near(pool, occupied)
    if not near:
        state = replace(state, near_since=None)
    elif state.near_since is None:
        state = replace(state, near_since=now)
    if (
        near
        and not state.near_open
        and state.near_since is not None
        and now - state.near_since >= interval
    ):
        events.append(Event(NEAR, now, pool.domain_id, "", "", pool.id))
        state = replace(state, near_open=True)
    if state.quiet:
        return replace(state, clear_since=None), events
    if near or occupied >= pool.seats:
        return replace(state, clear_since=None), events
    if state.clear_since is None:
        return replace(state, clear_since=now), events
    if now - state.clear_since >= interval:
        events.append(Event(RECOVERED, now, pool.domain_id, "", "", pool.id))
        state = replace(state, full_open=False, near_open=False, clear_since=None)
    return state, events


def _near(pool: Pool, occupied: int) -> bool:
    threshold = pool.alert_threshold_pct
    return threshold is not None and pool.seats > 0 and occupied * 100 >= threshold * pool.seats
