"""Admission of a domain's logins, with an injected clock: no event loop, no sleeps."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from presence.node.admission import Admission, Overloaded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_logins_are_refused_once_the_oldest_waited_longer_than_the_budget() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 2)
    first, second = ExitStack(), ExitStack()
    first.enter_context(admission.admit(clock.now, "acme"))
    clock.now += 0.5
    second.enter_context(admission.admit(clock.now, "acme"))  # the oldest has waited 0.5 s
    clock.now += 0.6
    with pytest.raises(Overloaded) as refused, admission.admit(clock.now, "acme"):
        pass
    assert refused.value.code == "unavailable"
    with admission.admit(clock.now, "other"):  # other domains are not held back
        pass
    first.close()
    with admission.admit(clock.now, "acme"):  # the oldest now has waited 0.6 s
        pass
    second.close()


def test_logins_that_would_wait_too_long_are_refused_before_anyone_waited_long() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 4)
    burst = [ExitStack() for _ in range(12)]
    for pending in burst:  # all at once: nothing is known of the pace yet
        pending.enter_context(admission.admit(clock.now, "acme"))
    for pending in burst[:4]:  # then decided one every 0.12 s: the pace is known
        clock.now += 0.12
        pending.close()
    more = ExitStack()
    more.enter_context(admission.admit(clock.now, "acme"))  # 8 ahead: about 0.96 s
    with pytest.raises(Overloaded), admission.admit(clock.now, "acme"):  # 9 ahead: about 1.08 s
        pass
    for pending in [*burst[4:], more]:
        pending.close()
    assert not admission._queues


def test_a_few_slow_logins_are_waited_for() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 3)
    with ExitStack() as pending:
        for _ in range(2):
            pending.enter_context(admission.admit(clock.now, "acme"))
            clock.now += 5.0
        with admission.admit(clock.now, "acme"):  # only two pending: a slow database, not a storm
            pass
        pending.enter_context(admission.admit(clock.now, "acme"))
        with pytest.raises(Overloaded), admission.admit(clock.now, "acme"):
            pass


def test_a_domain_is_forgotten_once_nothing_of_it_is_pending() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 2)
    with admission.admit(clock.now, "acme"):
        pass
    clock.now += 60
    with admission.admit(clock.now, "acme"):  # not judged by a decision long done
        pass
    assert not admission._queues


def test_a_decision_that_fails_is_no_longer_pending() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 2)
    with pytest.raises(RuntimeError), admission.admit(clock.now, "acme"):
        raise RuntimeError("the database failed")
    clock.now += 5
    with admission.admit(clock.now, "acme"):
        pass


def test_only_logins_admitted_among_many_must_begin_by_a_deadline() -> None:
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 2)
    with admission.admit(clock.now - 0.5, "acme") as alone:
        assert alone is None  # a slow database is waited for
        with admission.admit(clock.now, "acme") as second:
            assert second == clock.now + 1.0


def test_logins_decided_by_one_commit_at_once_set_the_pace_by_their_number() -> None:
    """A group commit decides many logins at once, then none for a commit's length:
    the pace is logins done per second, not the time between two of them."""
    clock = Clock()
    admission = Admission("domain", clock, 1.0, 4)
    burst = [ExitStack() for _ in range(40)]
    for pending in burst:
        pending.enter_context(admission.admit(clock.now, "acme"))
    clock.now += 0.05
    for pending in burst[:10]:  # one commit
        pending.close()
    clock.now += 0.05
    burst[10].close()  # the next: 11 in 0.1 s, so the 29 pending take about 0.26 s
    with admission.admit(clock.now, "acme"):
        pass
    for pending in burst[11:]:
        pending.close()
