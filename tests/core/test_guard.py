"""The per-address guard, with an injected clock."""

from __future__ import annotations

from presence.web.guard import WINDOW, Guard


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_connections_are_capped_per_address() -> None:
    guard = Guard(max_connections=2, max_failures=10)
    assert guard.connect("a") and guard.connect("a")
    assert not guard.connect("a")
    assert guard.connect("b")
    guard.disconnect("a")
    assert guard.connect("a")


def test_failed_authentications_block_an_address_for_a_minute() -> None:
    clock = Clock()
    guard = Guard(max_connections=10, max_failures=3, clock=clock)
    for _ in range(2):
        guard.failed("a")
    assert not guard.blocked("a")
    guard.failed("a")
    assert guard.blocked("a") and not guard.blocked("b")
    clock.now += WINDOW + 0.1
    assert not guard.blocked("a")


def test_failures_age_out_one_by_one() -> None:
    clock = Clock()
    guard = Guard(max_connections=10, max_failures=2, clock=clock)
    guard.failed("a")
    clock.now += WINDOW / 2
    guard.failed("a")
    assert guard.blocked("a")
    clock.now += WINDOW / 2 + 0.1
    assert not guard.blocked("a")
