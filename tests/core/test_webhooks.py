"""Webhook retries and target addresses, without I/O."""

from __future__ import annotations

import pytest

from presence.core.webhooks import GIVE_UP_AFTER, Progress, public_address, retry_wait


def test_the_retry_schedule_grows_then_stays_hourly() -> None:
    assert [retry_wait(n) for n in range(1, 9)] == [5, 30, 120, 600, 1800, 3600, 3600, 3600]


def test_failures_are_retried_on_the_schedule_for_a_day_then_given_up() -> None:
    progress = Progress(41)
    now = 1000.0
    times = []
    while True:
        after = progress.failed(now)
        if after is None:
            break
        assert after.cursor == 41 and after.failing_since == 1000.0
        assert after.retry_at is not None
        times.append(after.retry_at - now)
        progress, now = after, after.retry_at
    assert times[:6] == [5, 30, 120, 600, 1800, 3600]
    assert now - 1000.0 >= GIVE_UP_AFTER  # given up at the first attempt a day on
    assert now - 1000.0 < GIVE_UP_AFTER + 3600
    # five growing waits (2,555 s), then hourly until a day has passed: 24 more
    assert len(times) == 5 + 24


def test_a_delivery_starts_afresh_and_the_scale_shrinks_every_wait() -> None:
    failing = Progress(7).failed(0.0, scale=0.001)
    assert failing is not None and failing.retry_at == pytest.approx(0.005)
    assert failing.delivered(8) == Progress(8)
    assert Progress(7, 30, 0.0, 86.0).failed(86.4, scale=0.001) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0",
        "100.64.0.1", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fe80::1%eth0",
        "fc00::1", "fd12::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::",
        "64:ff9b::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "ff02::1", "not an address",
    ],
)  # fmt: skip
def test_private_loopback_link_local_and_wrapped_addresses_are_refused(address: str) -> None:
    assert not public_address(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert public_address(address)
