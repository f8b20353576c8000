"""Capacity alerts (spec sections 8 and 11): pool fields, and the alert events
`pool_full`, `pool_near_capacity` and `pool_recovered`, logged like any event
and so delivered like any, with the short `alert_interval_s` of 1 s.

The server looks at occupancy about every half second here
(`min(1, lease_ttl / 4)`), so an alert may come that much after its interval.
"""

from __future__ import annotations

from server.client import Harness, Message, ok, refused

from .hooks import (
    ReceiverProcess,
    Webhooks,
    check_stream,
    create_pool,
    elapse,
    events_after,
    last_event_id,
    moment,
    wait_until,
)

ALERTS = ["pool_full", "pool_near_capacity", "pool_recovered"]


async def test_pool_alert_fields(harness: Harness) -> None:
    domain = await harness.new_domain()
    plain = await create_pool(domain, 2)
    assert (plain["alert_interval_s"], plain["alert_threshold_pct"]) == (300, None), plain
    tuned = await create_pool(domain, 2, alert_interval_s=60, alert_threshold_pct=80)
    assert (tuned["alert_interval_s"], tuned["alert_threshold_pct"]) == (60, 80), tuned

    path = domain.path("pools", plain["id"])
    patched = ok(await harness.admin.patch(path, {"alert_interval_s": 1, "alert_threshold_pct": 1}))
    assert (patched["alert_interval_s"], patched["alert_threshold_pct"]) == (1, 1), patched
    off = ok(await harness.admin.patch(path, {"alert_threshold_pct": None}))
    assert (off["alert_interval_s"], off["alert_threshold_pct"]) == (1, None), off

    for field, value in [
        ("alert_interval_s", 0),
        ("alert_interval_s", 86401),
        ("alert_threshold_pct", 0),
        ("alert_threshold_pct", 101),
    ]:
        refused(await harness.admin.patch(path, {field: value}), 400, "bad_request", field)
    pools = await domain.pools()
    assert (pools[plain["id"]]["alert_interval_s"], pools[plain["id"]]["alert_threshold_pct"]) == (
        1,
        None,
    )
    assert pools[tuned["id"]]["alert_threshold_pct"] == 80


async def test_pool_full_at_most_once_per_interval(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    pool = await create_pool(domain, 1, alert_interval_s=1)
    queued_pool = await create_pool(domain, 1)
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    created = await hooks.create(receiver.url(), events=ALERTS)
    await harness.login(await domain.seat_user(pool))
    await harness.login(await domain.seat_user(queued_pool))

    refusals = [await harness.refused_login(await domain.seat_user(pool), "seat_occupied")]
    refusals.append(await harness.refused_login(await domain.seat_user(pool), "seat_occupied"))

    async def second_alert() -> list[Message] | None:
        alerts = await domain.events(after=before, type="pool_full", pool=pool["id"])
        if len(alerts) >= 2:
            return alerts
        refusals.append(await harness.refused_login(await domain.seat_user(pool), "seat_occupied"))
        await refusals[-1].close()
        return None

    alerts = await wait_until(second_alert, "a second pool_full", timeout=6)
    await harness.queued_login(await domain.seat_user(queued_pool), 1)

    events = await events_after(domain, before)
    denials = [e for e in events if e["type"] == "seat_denied" and e["pool"] == pool["id"]]
    full = [e for e in events if e["type"] == "pool_full" and e["pool"] == pool["id"]]
    assert full == alerts[:2], events  # no third one this soon
    assert moment(full[1]["at"]) - moment(full[0]["at"]) >= 1 - 0.002, full
    assert len(denials) >= 3, denials
    for alert in full:
        [cause] = [d for d in denials if d["id"] < alert["id"]][-1:]
        assert (alert["user_id"], alert["device_id"]) == (cause["user_id"], cause["device_id"])
        assert alert["seat"] is None, alert
    assert full[0]["device_id"] == refusals[0].id
    # a login that waits in the queue is a denial too
    [queued_alert] = await wait_until(
        lambda: domain.events(after=before, type="pool_full", pool=queued_pool["id"]),
        "pool_full for a queued login",
    )
    alerts_logged = [e for e in await events_after(domain, before) if e["type"] in ALERTS]
    received = await receiver.wait_delivered("hook", [e["id"] for e in alerts_logged])
    check_stream(received, alerts_logged, created["secret"])
    assert queued_alert in alerts_logged


async def test_near_capacity_then_recovered(harness: Harness, receiver: ReceiverProcess) -> None:
    domain = await harness.new_domain()
    busy = await create_pool(domain, 2, alert_interval_s=1, alert_threshold_pct=50)
    calm = await create_pool(domain, 4, alert_interval_s=1, alert_threshold_pct=75)
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    created = await hooks.create(receiver.url(), events=ALERTS)

    holder = await harness.login(await domain.seat_user(busy))
    await harness.login(await domain.seat_user(calm))  # 25 %: below its threshold
    [granted] = await domain.events(after=before, type="seat_granted", pool=busy["id"])
    [near] = await wait_until(
        lambda: domain.events(after=before, type="pool_near_capacity"),
        "pool_near_capacity",
        timeout=5,
    )
    await elapse(1.5)  # past another interval: it must not be repeated
    await holder.logout()
    [released] = await domain.events(after=before, type="seat_released", pool=busy["id"])
    [recovered] = await wait_until(
        lambda: domain.events(after=before, type="pool_recovered"), "pool_recovered", timeout=5
    )

    for alert in (near, recovered):
        assert (alert["pool"], alert["seat"]) == (busy["id"], None), alert
        assert (alert["user_id"], alert["device_id"]) == ("", ""), alert
    held_for = moment(near["at"]) - moment(granted["at"])
    assert 1 - 0.01 <= held_for <= 1 + 2.5, (granted, near)
    clear_for = moment(recovered["at"]) - moment(released["at"])
    assert 1 - 0.01 <= clear_for <= 1 + 2.5, (released, recovered)
    alerts = [e for e in await events_after(domain, before) if e["type"] in ALERTS]
    assert alerts == [near, recovered], alerts
    received = await receiver.wait_delivered("hook", [near["id"], recovered["id"]])
    check_stream(received, alerts, created["secret"])
