"""A session's lifecycle: its moves, and the registry of live sessions that follows them.

Plain calls, no event loop: the session is a state machine over a recording
connection.
"""

from __future__ import annotations

import json

import pytest

from presence.core import seats
from presence.core.model import Device, Lease, License, User
from presence.node.session import LIVE, MOVES, InvalidMove, Phase, Session, Sessions

from .conftest import Recorder

SEAT_USER = User("acme", "u1", "ann@example.com", "Ann", License("seat", "desk"))
LEASE = Lease("l1", "s1", "acme", "u1", "Ann", Device("pc", "desktop"), 1000.0, "desk", 1, 7)


def session() -> tuple[Session, Sessions, Recorder]:
    sessions, link = Sessions(), Recorder()
    return Session(link, sessions, 0.0), sessions, link


def test_the_table_lets_a_live_session_end_only_through_ending() -> None:
    for move, steps in MOVES.items():
        for start, to in steps.items():
            assert to is not Phase.ENDED or start not in LIVE, (move, start)
            assert start is not Phase.ENDED, move
    assert {start for start, to in MOVES["ending"].items() if to is Phase.ENDING} == LIVE
    assert MOVES["released"] == {Phase.ENDING: Phase.ENDED}


def test_a_session_is_served_from_authentication_until_it_starts_ending() -> None:
    s, sessions, link = session()
    assert sessions.get(s.id) is None
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    assert sessions.get(s.id) is s and not sessions.of_pool(("acme", "desk"))
    sessions.follow(s)  # once told the outcome of its login
    assert s in sessions.of_pool(("acme", "desk"))
    s.hold(LEASE)
    s.start_call(LEASE.with_call("c1", 1001.0))
    assert s.phase is Phase.IN_CALL
    assert s.ending(seats.RELEASED_BY_ADMIN) is Phase.IN_CALL
    assert s.phase is Phase.ENDING and s.lease is None
    assert sessions.get(s.id) is None and not sessions.of_pool(("acme", "desk"))
    assert len(sessions) == 0
    ended = link.messages("session_ended")
    assert [m["reason"] for m in ended] == ["released_by_admin"] and link.closed == 4412
    s.released()
    assert s.phase is Phase.ENDED


def test_a_session_ends_once() -> None:
    s, _, link = session()
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    s.wait()
    assert s.ending(seats.TAKEN_OVER) is Phase.WAITING
    assert s.ending(seats.LEASE_EXPIRED) is None
    assert [json.loads(f)["reason"] for f in link.frames] == ["taken_over"]
    assert link.closed == 4409


def test_a_session_never_authenticated_ends_at_once() -> None:
    s, sessions, link = session()
    assert s.ending(seats.DISCONNECTED) is Phase.CONNECTED
    assert s.phase is Phase.ENDED and link.frames == [] and len(sessions) == 0


def test_logging_out_says_bye_and_closes_1000() -> None:
    s, _, link = session()
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    s.hold(LEASE)
    assert s.ending(seats.LOGGED_OUT) is Phase.HOLDING
    assert link.messages("bye") and link.closed == 1000


@pytest.mark.parametrize(
    "move",
    [
        lambda s: s.hold(LEASE),  # not authenticated
        lambda s: s.start_call(LEASE),
        lambda s: s.released(),
        lambda s: s.refuse(),
    ],
)
def test_moves_the_phase_does_not_allow_raise(move: object) -> None:
    s, _, _ = session()
    with pytest.raises(InvalidMove):
        move(s)  # type: ignore[operator]
    assert s.phase is Phase.CONNECTED


def test_a_held_seat_cannot_start_a_call_twice_or_go_back_to_the_queue() -> None:
    s, _, _ = session()
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    s.hold(LEASE)
    with pytest.raises(InvalidMove):
        s.wait()
    s.start_call(LEASE)
    with pytest.raises(InvalidMove):
        s.start_call(LEASE)
    assert s.phase is Phase.IN_CALL


def test_a_queue_place_is_told_again_after_entering_the_queue_again() -> None:
    s, _, _ = session()
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    s.wait()
    s.sent_position = 1
    s.refuse()
    s.wait()
    assert s.sent_position is None


def test_pushes_stop_once_a_session_is_ending() -> None:
    s, _, link = session()
    s.authenticate(SEAT_USER, Device("pc", "desktop"), "token-1")
    s.push('{"type": "availability"}')
    s.ending(seats.LEASE_EXPIRED)
    s.push('{"type": "availability"}')
    assert [json.loads(f)["type"] for f in link.frames] == ["availability", "session_ended"]
