"""Webhook delivery: each domain's event log, POSTed to its endpoints, at least once.

Delivery reads from the event log, never from memory: an event is committed
with the log, and an endpoint's progress (the last event it received, and
the retries of the next) is stored with the endpoint and written after each
attempt. An event committed is therefore delivered, whatever crashes in
between; one delivered whose progress was not yet written when the node
died is delivered again, the only way a duplicate arises.

Each endpoint is delivered by one node at a time: the node that holds its
claim (:meth:`~presence.storage.Tx.claim_webhooks`), renewed every tick like
a lease. A node whose claim lapses stops before it could run out (an attempt
never outlasts the claim), and another node takes the endpoint over within
``lease_ttl`` of the last renewal, carrying on from the stored progress.

An endpoint gets one request at a time, in event-id order: the next event
only once the one before was answered with a 2xx. Pages of events are read
in the domain's transaction, so on PostgreSQL no event with a smaller id can
still be committing when a page is read (events are logged in that same
turn). Endpoints are delivered by tasks of their own: a slow or dead
receiver holds up nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook as Signer

from . import leases, notes, outbound
from .config import Config
from .core.model import Event
from .core.seats import Decisions
from .core.webhooks import Progress, Webhook
from .errors import StorageError
from .metrics import METRICS
from .notes import Note
from .storage import Delivery, EventQuery, Store, StoredEvent, Tx
from .views import event_view

logger = logging.getLogger(__name__)

#: Events read per transaction for an endpoint.
PAGE = 100
#: An attempt starts only if the claim has this long left (seconds) besides its timeout.
CLAIM_MARGIN = 0.25


class Deliverer:
    """This node's deliveries: the endpoints it holds, each served by a task."""

    def __init__(
        self, store: Store, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.tick = min(1.0, config.lease_ttl / 4)  # as the lease keeper's
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}  # by endpoint
        self._domains: dict[str, str] = {}  # endpoint: its domain
        self._until: dict[str, float] = {}  # endpoint: when its claim runs out (clock)
        self._claim_now = asyncio.Event()
        self._skew = 0.0  # the database's clock less this machine's
        self._policy = outbound.webhook_policy(config.webhook_allow_private)
        store.subscribe(self.noted)

    async def noted(self, note: Note) -> None:
        """Wake the endpoints of a domain that logged events or changed its endpoints."""
        if isinstance(note, notes.EventsLogged | notes.WebhooksChanged):
            for webhook_id, domain_id in self._domains.items():
                if domain_id == note.domain:
                    self._wake[webhook_id].set()
        if isinstance(note, notes.WebhooksChanged):
            self._claim_now.set()
        elif isinstance(note, notes.Resync):
            self._claim_now.set()
            for wake in self._wake.values():
                wake.set()

    async def backlog(self, tx: Tx) -> list[tuple[dict[str, str], float]]:
        """For ``/metrics``: the age of each enabled endpoint's oldest event not
        yet delivered (0: none), with its labels, from every node's endpoints."""
        now = await tx.now()
        found = []
        for webhook, progress in await tx.webhooks(None):
            if webhook.enabled:
                oldest = await tx.events(webhook.domain_id, _pending(webhook, progress, 1))
                age = max(0.0, now - oldest[0].event.at) if oldest else 0.0
                found.append(({"domain": webhook.domain_id, "webhook": webhook.id}, age))
        return found

    async def run(self) -> None:
        """Claim endpoints every tick (at once when they change) and serve them."""
        try:
            while True:
                try:
                    await self._claim()
                except StorageError as exc:
                    logger.warning("webhooks: %s", exc)
                except Exception:
                    logger.exception("webhooks: claiming failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._claim_now.wait(), self.tick)
                self._claim_now.clear()
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _claim(self) -> None:
        started = self.clock()
        async with self.store.transaction() as tx:
            now = await tx.now()
            self._skew = now - time.time()
            held = await tx.claim_webhooks(self.store.node_id, now, self.config.lease_ttl)
        for domain_id, webhook_id, left in held:
            self._until[webhook_id] = started + left
            if webhook_id not in self._tasks:
                self._domains[webhook_id] = domain_id
                self._wake[webhook_id] = asyncio.Event()
                task = asyncio.create_task(self._serve(domain_id, webhook_id))
                self._tasks[webhook_id] = task
                task.add_done_callback(lambda _, w=webhook_id: self._forget(w))  # type: ignore[misc]
        for webhook_id in set(self._tasks) - {w for _, w, _ in held}:
            self._tasks[webhook_id].cancel()  # no longer ours (or disabled, or deleted)

    def _forget(self, webhook_id: str) -> None:
        for held in (self._tasks, self._wake, self._domains, self._until):
            held.pop(webhook_id, None)

    def _now(self) -> float:
        """The time by the database's clock, which retries are due by."""
        return time.time() + self._skew

    def _left(self, webhook_id: str) -> float:
        """Seconds this node may still deliver the endpoint."""
        return self._until.get(webhook_id, 0.0) - self.clock() - CLAIM_MARGIN

    async def _serve(self, domain_id: str, webhook_id: str) -> None:
        """Deliver one endpoint's events while this node holds it."""
        wake = self._wake[webhook_id]
        while True:
            try:
                wait = await self._deliver_page(domain_id, webhook_id)
            except StorageError as exc:
                logger.warning("webhooks: %s", exc)
                wait = self.tick
            if wait is None:
                return  # gone, disabled, or no longer this node's
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            wake.clear()

    async def _deliver_page(self, domain_id: str, webhook_id: str) -> float | None:
        """Deliver the endpoint's next events, in order, until one fails; how
        long to wait before looking again (``None``: stop serving it)."""
        async with self.store.transaction(domain_id) as tx:  # no smaller id still committing
            found = await tx.webhook(domain_id, webhook_id)
            if found is None or not found[0].enabled:
                return None
            webhook, progress = found
            now = await tx.now()
            if progress.retry_at is not None and progress.retry_at > now:
                return progress.retry_at - now
            page = await tx.events(domain_id, _pending(webhook, progress, PAGE))
            if not page:
                last = await tx.latest_events(domain_id, 1)
                if last and last[0].id > progress.cursor:  # none of its types: skip them
                    await tx.advance_webhook(webhook_id, self.store.node_id, Progress(last[0].id))
                return self.tick * 5
        for stored in page:
            if self._left(webhook_id) <= 0:
                return self.tick  # until the claim is renewed
            progress_after = await self._attempt(webhook, progress, stored)
            if progress_after is None:
                return None
            progress = progress_after
            if progress.retry_at is not None:
                return max(0.0, progress.retry_at - self._now())
        return 0.0

    async def _attempt(
        self, webhook: Webhook, progress: Progress, stored: StoredEvent
    ) -> Progress | None:
        """Try one event once; the progress after it (``None``: stop serving the
        endpoint, which is no longer this node's, or was disabled now)."""
        view = event_view(stored)
        body = json.dumps({"type": view["type"], "timestamp": view["at"], "data": view})
        sent_at = datetime.now(UTC)
        msg_id = str(stored.id)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": Signer(webhook.secret).sign(msg_id, sent_at, body),
        }
        at = self._now()
        timeout = min(self.config.webhook_timeout, self._left(webhook.id))
        answer = await outbound.request(
            "POST", webhook.url, self._policy, timeout=timeout, body=body.encode(),
            headers=headers,
        )  # fmt: skip
        METRICS.webhook_deliveries.inc("delivered" if answer.ok else "failed")
        delivery = Delivery(
            webhook.id, stored.id, progress.attempts + 1, at, answer.status, answer.error,
            round(answer.duration * 1000, 1),
        )  # fmt: skip
        if answer.ok:
            after: Progress | None = progress.delivered(stored.id)
        else:
            after = progress.failed(at, self.config.webhook_retry_scale)
        if after is None:
            await self._disable(webhook, delivery)
            return None
        async with self.store.transaction() as tx:
            if not await tx.advance_webhook(webhook.id, self.store.node_id, after):
                return None
            await tx.add_delivery(delivery)
        return after

    async def _disable(self, webhook: Webhook, delivery: Delivery) -> None:
        """Give up on an endpoint that failed for a day: disable it, log why."""
        async with self.store.transaction(webhook.domain_id) as tx:
            found = await tx.webhook(webhook.domain_id, webhook.id)
            if found is None or not found[0].enabled:
                return
            current, progress = found
            await tx.add_delivery(delivery)
            await tx.update_webhook(replace(current, enabled=False), Progress(progress.cursor))
            event = Event("webhook_disabled", await tx.now(), webhook.domain_id, "", "")
            await leases.commit(tx, webhook.domain_id, Decisions(events=[event]))
            tx.notify(notes.WebhooksChanged(webhook.domain_id))
        logger.warning("webhooks: %s disabled after a day of failures", webhook.url)


def _pending(webhook: Webhook, progress: Progress, limit: int) -> EventQuery:
    """The first ``limit`` events the endpoint has yet to receive."""
    return EventQuery(after=progress.cursor, limit=limit, types=webhook.events or frozenset())
