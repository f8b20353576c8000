"""The per-seat history checker, on histories written by hand."""

from __future__ import annotations

from .history import Grant, Proof, check


def grant(token: int, asked: float, welcomed: float, *, seat: int = 1, **end: float) -> Grant:
    made = Grant(
        f"user{token}",
        f"dev{token}",
        "desk",
        seat,
        f"lease{token}",
        token,
        asked,
        welcomed,
        lease_ttl=5.0,
    )
    for key, value in end.items():
        setattr(made, key, value)
    return made


def test_holders_one_after_another_pass() -> None:
    history = [
        grant(1, 0.0, 0.1, let_go=1.0, ended=1.1),
        grant(2, 1.2, 1.3, lost=3.0),  # the server died
        grant(3, 5.0, 5.1, ended=6.0),  # after the lease ran out
    ]
    proofs = [Proof("lease1", 0.5, "call"), Proof("lease2", 2.0, "presence")]
    verdict = check(history, proofs)
    assert verdict.ok, verdict
    assert verdict.grants == 3 and verdict.seats == 1


def test_a_lease_proven_after_its_successors_welcome_is_a_double_holder() -> None:
    history = [grant(1, 0.0, 0.1, ended=9.0), grant(2, 1.0, 1.1, ended=9.0)]
    verdict = check(history, [Proof("lease1", 2.0, "call")], grace=100.0)
    assert len(verdict.double_holders) == 1, verdict
    assert "lease1" in verdict.double_holders[0]


def test_a_proof_before_the_successors_welcome_is_fine() -> None:
    history = [grant(1, 0.0, 0.1, let_go=1.0), grant(2, 1.0, 1.1)]
    assert check(history, [Proof("lease1", 1.05, "call")]).ok


def test_belief_past_the_next_welcome_is_an_overlap() -> None:
    history = [grant(1, 0.0, 0.1, lost=4.0), grant(2, 1.0, 1.1, ended=5.0)]
    verdict = check(history, [])
    assert len(verdict.overlaps) == 1, verdict
    assert 2.8 < verdict.longest_overlap < 3.0


def test_a_takeover_delivered_within_the_grace_is_no_overlap() -> None:
    history = [grant(1, 0.0, 0.1, ended=2.05), grant(2, 1.9, 2.0)]
    verdict = check(history, [], grace=0.5)
    assert verdict.ok, verdict
    assert 0.0 < verdict.longest_overlap < 0.1


def test_belief_lasts_as_long_as_the_last_heartbeat_promised() -> None:
    silent = grant(1, 0.0, 0.1, promised=8.0)  # never told of an end; acked until 8
    verdict = check([silent, grant(2, 6.0, 6.1)], [])
    assert len(verdict.overlaps) == 1, verdict
    expired = grant(1, 0.0, 0.1)  # promised only by its welcome: asked + lease_ttl
    assert check([expired, grant(2, 5.5, 5.6)], []).ok


def test_a_later_grant_with_a_lower_token_is_a_fencing_fault() -> None:
    history = [grant(2, 0.0, 0.1, ended=1.0), grant(1, 2.0, 2.1)]
    verdict = check(history, [])
    assert len(verdict.fencing) == 1, verdict


def test_a_token_granted_twice_is_a_fencing_fault() -> None:
    first, second = grant(1, 0.0, 0.1, ended=1.0), grant(1, 2.0, 2.1)
    second.lease_id = "other"
    assert len(check([first, second], []).fencing) == 1


def test_seats_are_checked_apart() -> None:
    history = [grant(1, 0.0, 0.1, seat=1), grant(2, 0.0, 0.2, seat=2)]
    verdict = check(history, [Proof("lease1", 3.0, "call"), Proof("lease2", 3.0, "call")])
    assert verdict.ok, verdict
    assert verdict.seats == 2
