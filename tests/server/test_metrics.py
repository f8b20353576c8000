"""GET /metrics: Prometheus text, without a token, with this node's figures."""

from __future__ import annotations

import re

from .client import Harness


def sample(text: str, name: str, default: float | None = None, **labels: str) -> float:
    """The value of one sample; without a ``default`` it must be there."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = re.escape(f"{name}{{{wanted}}}" if labels else name) + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    if match is None and default is not None:
        return default
    assert match, f"no {name} {labels} in:\n{text}"
    return float(match.group(1))


async def test_metrics_count_grants_denials_sessions_and_seats(harness: Harness) -> None:
    domain = await harness.new_domain()
    pool = await domain.pool(1)
    anon = harness.api(None)
    before = (await anon.get("/metrics")).text
    granted = sample(before, "presence_events_total", 0.0, type="seat_granted")

    await harness.login(await domain.seat_user(pool))
    await harness.refused_login(await domain.seat_user(pool), "seat_occupied")

    response = await anon.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "presence_events_total", type="seat_granted") == granted + 1
    assert sample(text, "presence_events_total", type="seat_denied") >= 1
    assert sample(text, "presence_seats_occupied", domain=domain.id, pool=pool["id"]) == 1
    assert sample(text, "presence_seats_free", domain=domain.id, pool=pool["id"]) == 0
    assert sample(text, "presence_sessions", model="seat") >= 1
    assert sample(text, "presence_sessions", model="refused") >= 1
    assert sample(text, "presence_login_seconds_count") >= 2
    assert "# TYPE presence_heartbeat_seconds histogram" in text
