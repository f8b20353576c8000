"""The storage contract for webhook endpoints and their claims, pools' alert
states and identity providers, on every backend (see `conftest.py`)."""

from __future__ import annotations

import pytest

from presence.core.alerts import QUIET, AlertState
from presence.core.model import Domain, Identity, Lease, License, Pool, User
from presence.core.webhooks import Progress, Webhook
from presence.storage import Delivery, Store
from presence.storage.rows import DELIVERIES_KEPT

from .conftest import Nodes
from .test_contract import new_domain, new_lease

TTL = 30.0
NOW = 1_000_000.0


def hook(webhook_id: str = "w1", domain_id: str = "acme", **changes: object) -> Webhook:
    fields: dict[str, object] = {
        "domain_id": domain_id, "id": webhook_id, "url": "https://hooks.example/x",
        "events": frozenset({"pool_full", "seat_denied"}), "description": "Tickets",
        "enabled": True, "secret": "whsec_c2VjcmV0", "created_at": 1000.0,
    }  # fmt: skip
    return Webhook(**{**fields, **changes})  # type: ignore[arg-type]


async def with_domain(store: Store, *domains: Domain) -> None:
    async with store.transaction() as tx:
        for domain in domains or (new_domain(),):
            await tx.insert_domain(domain)
        await tx.insert_pool(Pool("acme", "desk", "Desk", 2, alert_threshold_pct=50))


async def test_endpoints_are_stored_changed_listed_and_deleted_with_their_log(
    store: Store,
) -> None:
    await with_domain(store, new_domain(), new_domain("other"))
    first, second = hook(), hook("w2", events=None, description=None)
    elsewhere = hook("w3", domain_id="other")
    async with store.transaction("acme") as tx:
        await tx.insert_webhook(first, Progress(7))
        await tx.insert_webhook(second, Progress(0))
        await tx.insert_webhook(elsewhere, Progress(0))
        await tx.add_delivery(Delivery("w1", 8, 1, 1001.0, 500, "HTTP 500", 12.5))
    async with store.transaction() as tx:
        assert await tx.webhook("acme", "w1") == (first, Progress(7))
        assert await tx.webhook("other", "w1") is None  # another domain's id
        assert [w for w, _ in await tx.webhooks("acme")] == [first, second]
        assert len(await tx.webhooks(None)) == 3
    changed = hook(url="https://hooks.example/y", events=None, enabled=False)
    failing = Progress(9, 2, 1001.0, 1036.0)
    async with store.transaction("acme") as tx:
        await tx.update_webhook(changed, failing)
    async with store.transaction() as tx:
        assert await tx.webhook("acme", "w1") == (changed, failing)
        assert await tx.deliveries("w1", 10) == [
            Delivery("w1", 8, 1, 1001.0, 500, "HTTP 500", 12.5)
        ]
        await tx.delete_webhook("acme", "w1")
    async with store.transaction() as tx:
        assert await tx.webhook("acme", "w1") is None
        assert await tx.deliveries("w1", 10) == []
        assert [w.id for w, _ in await tx.webhooks(None)] == ["w2", "w3"]


async def test_the_delivery_log_keeps_the_latest_attempts_newest_first(store: Store) -> None:
    await with_domain(store)
    async with store.transaction("acme") as tx:
        await tx.insert_webhook(hook(), Progress(0))
        for event_id in range(DELIVERIES_KEPT + 3):
            await tx.add_delivery(Delivery("w1", event_id, 1, float(event_id), 200, None, 1.0))
    async with store.transaction() as tx:
        kept = await tx.deliveries("w1", DELIVERIES_KEPT + 10)
    assert [d.event_id for d in kept] == list(range(DELIVERIES_KEPT + 2, 2, -1))


async def test_one_node_holds_an_endpoint_until_its_claim_runs_out(nodes: Nodes) -> None:
    a = await nodes.open()
    b = await nodes.open() if nodes.shared else a
    await with_domain(a)
    async with a.transaction("acme") as tx:
        await tx.insert_webhook(hook(), Progress(0))
        await tx.insert_webhook(hook("off", enabled=False), Progress(0))
        assert await tx.claim_webhooks("a", NOW, TTL) == [("acme", "w1", TTL)]
    async with b.transaction() as tx:
        assert await tx.claim_webhooks("b", NOW + 1, TTL) == []  # a holds it
        assert not await tx.advance_webhook("w1", "b", Progress(5))
        # Renewed once a third of the TTL has passed, not before.
        assert await tx.claim_webhooks("a", NOW + TTL / 6, TTL) == [
            ("acme", "w1", pytest.approx(TTL * 5 / 6))
        ]
        assert await tx.claim_webhooks("a", NOW + TTL / 2, TTL) == [("acme", "w1", TTL)]
        assert await tx.advance_webhook("w1", "a", Progress(5))
        # a stopped renewing: once the claim ran out, b takes it over.
        later = NOW + TTL / 2 + TTL + 0.5
        assert await tx.claim_webhooks("b", later, TTL) == [("acme", "w1", TTL)]
        assert await tx.claim_webhooks("a", later, TTL) == []
        assert not await tx.advance_webhook("w1", "a", Progress(6))
        assert await tx.advance_webhook("w1", "b", Progress(6, 1, later, later + 5))
        assert await tx.webhook("acme", "w1") == (hook(), Progress(6, 1, later, later + 5))
        # A disabled endpoint is nobody's, and its progress is not written.
        await tx.update_webhook(hook(enabled=False), Progress(6))
        assert await tx.claim_webhooks("b", later + 1, TTL) == []
        assert not await tx.advance_webhook("w1", "b", Progress(7))


async def test_pools_keep_their_alert_settings_and_states(store: Store) -> None:
    await with_domain(store)
    async with store.transaction("acme") as tx:
        pool = await tx.pool("acme", "desk")
        assert pool is not None
        assert (pool.alert_interval_s, pool.alert_threshold_pct) == (300, 50)
        await tx.insert_pool(Pool("acme", "quiet", "Quiet", 1))
        await tx.insert_pool(Pool("acme", "full", "Full", 1))
        await tx.update_pool(Pool("acme", "desk", "Desk", 2, 0, 60, None))
        lease = await tx.insert_lease(new_lease(store, pool="full"))
        assert await tx.alert_state("acme", "desk") == QUIET
        open_alert = AlertState(full_at=5.0, full_open=True, clear_since=7.0)
        await tx.set_alert_state("acme", "full", open_alert)
        watched = await tx.watched_pools()
    assert [(p.id, occupied, state) for p, occupied, state in watched] == [
        ("full", 1, open_alert)
    ]  # desk lost its threshold, quiet has none and never alerted
    async with store.transaction("acme") as tx:
        assert (await tx.pool("acme", "desk")) == Pool("acme", "desk", "Desk", 2, 0, 60, None)
        await tx.set_alert_state("acme", "full", QUIET)
        assert await tx.watched_pools() == []
        await tx.set_alert_state("acme", "full", open_alert)
        await tx.delete_leases([lease.id])
        await tx.delete_pool("acme", "full")
        assert await tx.watched_pools() == []
        assert await tx.alert_state("acme", "full") == QUIET  # gone with its pool


async def test_identity_providers_and_users_by_e_mail(store: Store) -> None:
    await with_domain(store, new_domain(), new_domain("other"))
    ann = User("acme", "u1", "Ann@Acme.test", "Ann", License("named"))
    identity = Identity("acme", "https://idp.example/realms/acme", "presence")
    async with store.transaction("acme") as tx:
        await tx.insert_user(ann)
        assert await tx.identity("acme") is None
        await tx.set_identity(identity)
        provisioning = Identity(
            "acme", "https://idp.example/realms/acme", "devices", "upn", License("seat", "desk")
        )
        await tx.set_identity(provisioning)  # replaces
        assert await tx.identity("acme") == provisioning
        assert await tx.identity("other") is None
        assert await tx.user_by_email("acme", "ann@acme.TEST") == ann
        assert await tx.user_by_email("other", "ann@acme.test") is None
        assert await tx.delete_identity("acme")
        assert not await tx.delete_identity("acme")
        assert await tx.identity("acme") is None


async def test_a_lease_of_the_pool_counts_toward_its_occupancy(store: Store) -> None:
    await with_domain(store)
    async with store.transaction("acme") as tx:
        for user in ("u1", "u2"):
            held: Lease = new_lease(store, user_id=user, seat=int(user[1]))
            await tx.insert_lease(held)
        watched = await tx.watched_pools()
    assert [(p.id, occupied) for p, occupied, _ in watched] == [("desk", 2)]
