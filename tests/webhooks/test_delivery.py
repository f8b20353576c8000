"""Webhook delivery against a real server and a real receiver (spec section 8).

Each test sets up a domain, registers endpoints at the receiver, makes devices
log in, call and log out, and compares what the receiver got with the
domain's event log (`GET .../events`): every event logged after an
endpoint's creation, once, in id order, signed as Standard Webhooks say
(checked with the `standardwebhooks` package's own verifier).

Delivery is in id order per endpoint, so once the last expected event has
arrived, an event that should not have come would already be there: the
tests that check what must not arrive (filters, other domains) end with an
event that must, and need no fixed wait.
"""

from __future__ import annotations

import base64
import time

import pytest
from server.client import Device, Domain, Harness, Message, ok, refused
from standardwebhooks.webhooks import WebhookVerificationError

from .hooks import (
    EVENT_TYPES,
    WEBHOOK_KEYS,
    ReceiverProcess,
    Webhooks,
    check_attempt,
    check_stream,
    create_pool,
    events_after,
    last_event_id,
    metric,
    moment,
    visit,
    wait_until,
)


async def scripted_run(harness: Harness, domain: Domain, pool: Message) -> dict[str, Device]:
    """Two seat users fill the pool, a third is refused, a call, a named user, logouts."""
    ann, bob, cat = [await domain.seat_user(pool, name) for name in ("Ann", "Bob", "Cat")]
    ned = await domain.named_user("Ned")
    devices = {"ann": await harness.login(ann), "bob": await harness.login(bob, kind="phone")}
    devices["cat"] = await harness.refused_login(cat, "seat_occupied")
    await devices["ann"].call_start("c-1")
    await devices["ann"].expect("call_started", call_id="c-1")
    await devices["ann"].call_end("c-1")
    await devices["ann"].expect("call_ended", call_id="c-1")
    devices["ned"] = await visit(harness, ned)
    await devices["ann"].logout()
    await devices["bob"].logout()
    await devices["cat"].close()
    return devices


async def scripted_run_one_seat(harness: Harness, domain: Domain, pool: Message) -> None:
    """A named user's visit, then a seat user's call; ends with `seat_released`."""
    await visit(harness, await domain.named_user())
    holder = await harness.login(await domain.seat_user(pool))
    await holder.call_start("c-1")
    await holder.expect("call_started")
    await holder.call_end("c-1")
    await holder.expect("call_ended")
    await holder.logout()


# What arrives


async def test_every_event_arrives_signed_in_order(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    pool = await create_pool(domain, 2)
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    created = await hooks.create(receiver.url())

    devices = await scripted_run(harness, domain, pool)

    events = await events_after(domain, before)
    assert sorted(e["type"] for e in events) == sorted(
        ["seat_granted"] * 2
        + ["seat_denied", "pool_full", "call_started", "call_ended"]
        + ["named_login", "named_logout"]
        + ["seat_released"] * 2
    ), events
    received = await receiver.wait_delivered("hook", [e["id"] for e in events])
    check_stream(received, events, created["secret"])
    [denied] = [e for e in events if e["type"] == "seat_denied"]
    [full] = [e for e in events if e["type"] == "pool_full"]
    assert full["id"] > denied["id"], events
    assert (full["user_id"], full["device_id"]) == (denied["user_id"], devices["cat"].id), full
    assert (full["pool"], full["seat"]) == (pool["id"], None), full


async def test_only_the_listed_types_arrive(harness: Harness, receiver: ReceiverProcess) -> None:
    domain = await harness.new_domain()
    pool = await create_pool(domain, 1)
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    wanted = ["seat_granted", "seat_released"]
    created = await hooks.create(receiver.url(), events=wanted)
    assert sorted(created["events"]) == wanted, created

    await scripted_run_one_seat(harness, domain, pool)

    everything = await events_after(domain, before)
    events = [e for e in everything if e["type"] in wanted]
    assert events[-1] == everything[-1] and len(events) < len(everything), everything
    received = await receiver.wait_delivered("hook", [e["id"] for e in events])
    check_stream(received, events, created["secret"])


async def test_two_endpoints_each_get_everything(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    pool = await create_pool(domain, 1)
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    first = await hooks.create(receiver.url("first"))
    second = await hooks.create(receiver.url("second"))
    assert first["secret"] != second["secret"]

    await scripted_run_one_seat(harness, domain, pool)

    events = await events_after(domain, before)
    ids = [e["id"] for e in events]
    check_stream(await receiver.wait_delivered("first", ids), events, first["secret"])
    check_stream(await receiver.wait_delivered("second", ids), events, second["secret"])
    with pytest.raises(WebhookVerificationError):
        receiver.delivered("first")[0].verify(second["secret"])


async def test_another_domains_events_never_arrive(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    mine, theirs = await harness.new_domain(), await harness.new_domain()
    marks = {domain.id: await last_event_id(domain) for domain in (mine, theirs)}
    secrets = {
        domain.id: (await Webhooks(domain).create(receiver.url(domain.id)))["secret"]
        for domain in (mine, theirs)
    }

    # theirs first, mine last: mine's endpoint would get theirs before its own last one
    await visit(harness, await theirs.named_user())
    await visit(harness, await mine.named_user())
    await visit(harness, await theirs.named_user())

    for domain in (mine, theirs):
        events = await events_after(domain, marks[domain.id])
        assert len(events) == (2 if domain is mine else 4), events
        received = await receiver.wait_delivered(domain.id, [e["id"] for e in events])
        check_stream(received, events, secrets[domain.id])


async def test_a_disabled_endpoint_resumes_where_it_stopped(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    before = await last_event_id(domain)
    paused = await hooks.create(receiver.url("paused"))
    watch = await hooks.create(receiver.url("watch"))
    member = await domain.named_user()
    await visit(harness, member)
    first = await events_after(domain, before)
    await receiver.wait_delivered("paused", [e["id"] for e in first])

    patched = await hooks.patch(paused["id"], enabled=False)
    assert patched["enabled"] is False and "secret" not in patched, patched
    await visit(harness, member)
    await visit(harness, member)
    events = await events_after(domain, before)
    await receiver.wait_delivered("watch", [e["id"] for e in events])
    assert [r.event_id for r in receiver.delivered("paused")] == [e["id"] for e in first]

    assert (await hooks.patch(paused["id"], enabled=True))["enabled"] is True
    received = await receiver.wait_delivered("paused", [e["id"] for e in events])
    check_stream(received, events, paused["secret"])
    check_stream(receiver.delivered("watch"), events, watch["secret"])


async def test_changes_and_deletion_apply_to_the_next_events(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    member = await domain.named_user()
    before = await last_event_id(domain)
    created = {name: await hooks.create(receiver.url(name)) for name in ("mover", "narrow", "gone")}
    await visit(harness, member)
    first = await events_after(domain, before)
    for name in created:
        await receiver.wait_delivered(name, [e["id"] for e in first])

    await hooks.patch(created["mover"]["id"], url=receiver.url("moved"))
    await hooks.patch(created["narrow"]["id"], events=["named_logout"])
    await hooks.delete(created["gone"]["id"])
    watch = await hooks.create(receiver.url("watch"))
    mark = first[-1]["id"]
    await visit(harness, member)
    later = await events_after(domain, mark)

    check_stream(
        await receiver.wait_delivered("watch", [e["id"] for e in later]), later, watch["secret"]
    )
    moved = await receiver.wait_delivered("moved", [e["id"] for e in later])
    check_stream(moved, later, created["mover"]["secret"])
    narrowed = await receiver.wait_delivered("narrow", [later[-1]["id"]])
    check_stream(narrowed, [*first, later[-1]], created["narrow"]["secret"])
    for name in ("mover", "gone"):
        assert [r.event_id for r in receiver.delivered(name)] == [e["id"] for e in first], name


# The API


async def test_create_list_patch_delete(harness: Harness, receiver: ReceiverProcess) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    started = time.time()
    first = await hooks.create(receiver.url("first"))
    second = await hooks.create(
        receiver.url("second"), events=["seat_denied", "pool_full"], description="Ops pager"
    )

    assert set(first) == WEBHOOK_KEYS | {"secret"}, first
    assert first["url"] == receiver.url("first")
    assert set(first["events"]) == EVENT_TYPES and len(first["events"]) == len(EVENT_TYPES)
    assert (first["description"], first["enabled"]) == (None, True), first
    assert started - 1 <= moment(first["created_at"]) <= time.time() + 1, first
    for webhook in (first, second):
        secret = webhook["secret"]
        assert isinstance(secret, str) and secret.startswith("whsec_"), webhook
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 16
    assert first["secret"] != second["secret"] and first["id"] != second["id"]
    assert sorted(second["events"]) == ["pool_full", "seat_denied"], second
    assert second["description"] == "Ops pager", second

    def shown(webhook: Message) -> Message:
        return {key: value for key, value in webhook.items() if key != "secret"}

    assert await hooks.listed() == [shown(first), shown(second)]

    changes = {
        "url": receiver.url("moved"),
        "events": ["named_login"],
        "description": "Moved",
        "enabled": False,
    }
    patched = await hooks.patch(first["id"], **changes)
    assert patched == {**shown(first), **changes}, patched
    assert await hooks.listed() == [patched, shown(second)]

    await hooks.delete(second["id"])
    assert [w["id"] for w in await hooks.listed()] == [first["id"]]
    api = harness.admin
    refused(await api.delete(hooks.path(second["id"])), 404, "not_found")
    refused(await api.patch(hooks.path(second["id"]), {"enabled": True}), 404, "not_found")
    refused(await api.get(hooks.path(second["id"], "deliveries")), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": []}, "events"),
        ({"events": ["seat_granted", "no_such_type"]}, "events"),
        ({"events": "seat_granted"}, "events"),
        ({"description": 5}, "description"),
        ({"secret": "whsec_AAAA"}, "secret"),
    ],
)
async def test_bad_bodies_are_refused_and_change_nothing(
    harness: Harness, receiver: ReceiverProcess, body: Message, field: str
) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    existing = await hooks.create(receiver.url())
    listed = await hooks.listed()

    answer = await harness.admin.post(hooks.path(), {"url": receiver.url("other"), **body})
    refused(answer, 400, "bad_request", field)
    refused(await harness.admin.patch(hooks.path(existing["id"]), body), 400, "bad_request", field)
    assert await hooks.listed() == listed


async def test_who_may_manage_webhooks(harness: Harness, receiver: ReceiverProcess) -> None:
    domain, other = await harness.new_domain(), await harness.new_domain()
    hooks = Webhooks(domain)
    existing = await hooks.create(receiver.url())
    listed = await hooks.listed()
    own_admin = harness.api(await domain.token("admin"))
    member = await domain.named_user()

    mine = ok(await own_admin.post(hooks.path(), {"url": receiver.url("admin")}), 201)
    assert mine["secret"].startswith("whsec_")
    assert [w["id"] for w in ok(await own_admin.get(hooks.path()))] == [existing["id"], mine["id"]]
    ok(await own_admin.delete(hooks.path(mine["id"])), 204)

    outsiders = [
        (harness.api(await other.token("admin")), 404, "not_found"),
        (harness.api(await domain.token("wallboard")), 403, "forbidden"),
        (harness.api(member.token), 403, "forbidden"),
    ]
    for api, status, code in outsiders:
        refused(await api.get(hooks.path()), status, code)
        refused(await api.post(hooks.path(), {"url": receiver.url("x")}), status, code)
        refused(await api.patch(hooks.path(existing["id"]), {"enabled": False}), status, code)
        refused(await api.get(hooks.path(existing["id"], "deliveries")), status, code)
        refused(await api.delete(hooks.path(existing["id"])), status, code)
    # another domain's admin reaching for this domain's endpoint through its own domain
    theirs = Webhooks(other).path(existing["id"])
    refused(await outsiders[0][0].patch(theirs, {"enabled": False}), 404, "not_found")
    refused(await outsiders[0][0].delete(theirs), 404, "not_found")
    assert await hooks.listed() == listed


# The deliveries log


async def test_the_deliveries_log(harness: Harness, receiver: ReceiverProcess) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    await receiver.set_mode("fail", "hook")
    before = await last_event_id(domain)
    created = await hooks.create(receiver.url())
    await visit(harness, await domain.named_user())
    first, second = await events_after(domain, before)
    failed = await receiver.wait_requests("hook", 3)
    await receiver.set_mode("ok", "hook")
    received = await receiver.wait_delivered("hook", [first["id"], second["id"]])
    check_stream(received, [first, second], created["secret"])

    requests = receiver.requests("hook")
    attempts = await hooks.wait_attempts(
        created["id"], lambda logged: len(logged) >= len(requests), "every attempt logged"
    )
    assert len(attempts) == len(requests), (attempts, requests)
    for attempt in attempts:
        check_attempt(attempt)
    oldest_first = attempts[::-1]
    assert [moment(a["at"]) for a in oldest_first] == sorted(moment(a["at"]) for a in attempts)
    requests_of_first = [r for r in receiver.requests("hook") if r.event_id == first["id"]]
    assert len(requests_of_first) >= len(failed) + 1
    assert [(a["event_id"], a["attempt"], a["status"]) for a in oldest_first] == [
        *[(first["id"], n, 500) for n in range(1, len(requests_of_first))],
        (first["id"], len(requests_of_first), 200),
        (second["id"], 1, 200),
    ]
    for attempt in oldest_first[: len(requests_of_first) - 1]:
        assert "500" in attempt["error"], attempt
    assert all(r.webhook_id == str(first["id"]) for r in requests_of_first)

    assert await hooks.deliveries(created["id"], limit=2) == attempts[:2]
    for limit in (0, 1001):
        answer = await harness.admin.request(
            "GET", hooks.path(created["id"], "deliveries"), params={"limit": limit}
        )
        refused(answer, 400, "bad_request", "limit")


async def test_a_redirect_is_a_failure_and_not_followed(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    await receiver.set_mode("redirect", "hook")
    before = await last_event_id(domain)
    created = await hooks.create(receiver.url())
    await visit(harness, await domain.named_user())
    events = await events_after(domain, before)

    await receiver.wait_requests("hook", 2)
    await receiver.set_mode("ok", "hook")
    received = await receiver.wait_delivered("hook", [e["id"] for e in events])

    check_stream(received, events, created["secret"])
    assert [r.path for r in receiver.requests() if not r.path.startswith(receiver.prefix)] == []
    redirected = [a for a in await hooks.deliveries(created["id"]) if a["status"] == 302]
    assert len(redirected) >= 2, redirected
    assert all(a["event_id"] == events[0]["id"] and a["error"] for a in redirected), redirected


# Metrics


async def test_metrics_count_attempts_and_the_oldest_undelivered(
    harness: Harness, receiver: ReceiverProcess
) -> None:
    domain = await harness.new_domain()
    hooks = Webhooks(domain)
    anon = harness.api(None)

    async def figures(**labels: str) -> dict[str, float | None]:
        text = (await anon.get("/metrics")).text
        return {
            "delivered": metric(text, "presence_webhook_deliveries_total", outcome="delivered"),
            "failed": metric(text, "presence_webhook_deliveries_total", outcome="failed"),
            "oldest": metric(text, "presence_webhook_oldest_undelivered_seconds", **labels),
        }

    start = await figures()
    await receiver.set_mode("fail", "hook")
    created = await hooks.create(receiver.url())
    labels = {"domain": domain.id, "webhook": created["id"]}
    await visit(harness, await domain.named_user())
    failed = await receiver.wait_requests("hook", 3)

    async def stuck() -> dict[str, float | None] | None:
        now = await figures(**labels)
        return now if (now["oldest"] or 0) >= 0.2 else None

    during = await wait_until(stuck, "oldest undelivered age above 0.2 s")
    assert (during["failed"] or 0) >= (start["failed"] or 0) + len(failed), (start, during)

    await receiver.set_mode("ok", "hook")

    async def caught_up() -> dict[str, float | None] | None:
        now = await figures(**labels)
        return now if now["oldest"] == 0 else None

    after = await wait_until(caught_up, "oldest undelivered age back to 0")
    assert len(receiver.delivered("hook")) == 2
    assert (after["delivered"] or 0) >= (start["delivered"] or 0) + 2, (start, after)
