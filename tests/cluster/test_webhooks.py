"""Webhooks on two nodes sharing PostgreSQL (spec section 8): one node
delivers an endpoint at a time, and when it dies the other takes over.

Events come from license changes made through both nodes at once (each logs
`license_changed`), so ids are drawn by two nodes concurrently. The receiver
is `tests/webhooks/receiver.py`, a process of its own, and what it got is
judged by `reliability.webhooks.check`: every event logged after the
endpoint's creation arrives, first arrivals in id order, each the event as
the events API gives it, signed; a duplicate only across a kill, of an event
that first arrived just before it.

With both nodes alive each event arrives once, and a receiver that never
answers gets one attempt at a time (each after the one before timed out, with
one count of attempts), however many nodes could deliver. Which node delivers
is read from each node's `presence_webhook_deliveries_total`; that node is
killed with SIGKILL under load, and the other must take over within lease_ttl
and a tick, and carry on the retries where the dead one left them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from reliability.webhooks import HOOK, RESUMED_AFTER, Kill, check, drain
from server.client import Domain, Harness, Message
from servers import ServerProcess
from webhooks.hooks import (
    ReceiverProcess,
    Webhooks,
    last_event_id,
    metric,
    wait_until,
)

from .conftest import Cluster

ALLOW_PRIVATE = {"PRESENCE_WEBHOOK_ALLOW_PRIVATE": "1"}
#: The hang test's request timeout, and the lease TTL that leaves every attempt
#: its whole timeout (an attempt never outlasts its node's claim).
HANG_TIMEOUT = 2.0
HANG_LEASE_TTL = 6.0
HANG_ENV = {
    **ALLOW_PRIVATE,
    "PRESENCE_WEBHOOK_TIMEOUT": f"{HANG_TIMEOUT:g}",
    "PRESENCE_WEBHOOK_RETRY_SCALE": "0.001",  # retries after 5 ms, 30 ms, 120 ms, 600 ms...
}
#: The nodes' tick (claims are looked at every min(1, lease_ttl / 4) s), and what a
#: loaded machine adds to a takeover besides: a generous margin, not the expectation.
TICK = 1.0
MARGIN = 2.0
#: Seconds between license changes of one node's generator: about 40 events a
#: second from the two, which the deliverer keeps up with.
PACE = 0.05


@pytest.fixture
def node_env() -> dict[str, str]:
    """The nodes' environment (the cluster fixture's); a test may parametrize it."""
    return ALLOW_PRIVATE


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverProcess]:
    process = ReceiverProcess(tmp_path / "receiver")
    process.start()
    try:
        yield process
    finally:
        process.stop()


class LicenseChanges:
    """Each node of `nodes` changes the licenses of users of its own, one after
    another (each change logs `license_changed`), until `stop`; `leave(node)`
    stops that node's changes (before it is killed)."""

    def __init__(
        self, nodes: list[ServerProcess], domain: str, users: list[str], pool: str
    ) -> None:
        self.domain = domain
        self.pool = pool
        self.users = {node.base_url: users[n :: len(nodes)] for n, node in enumerate(nodes)}
        self.token = nodes[0].server.admin_token
        self.changes = 0
        self.errors: list[str] = []
        self._left: set[str] = set()
        self._tasks = [asyncio.create_task(self._change(node.base_url)) for node in nodes]

    def leave(self, node: ServerProcess) -> None:
        self._left.add(node.base_url)

    async def stop(self) -> None:
        self._left.update(self.users)
        await asyncio.gather(*self._tasks)
        assert not self.errors, self.errors[:5]
        assert self.changes > 0, "no license changed"

    async def _change(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        seated = {"model": "seat", "pool": self.pool}
        async with httpx.AsyncClient(
            base_url=url, headers=headers, trust_env=False, timeout=10.0
        ) as http:
            turn = 0
            while url not in self._left:
                user = self.users[url][turn % len(self.users[url])]
                license = seated if turn // len(self.users[url]) % 2 else {"model": "none"}
                path = f"/api/v1/domains/{self.domain}/users/{user}/license"
                try:
                    answer = await http.put(path, json=license)
                except httpx.HTTPError as exc:
                    if url in self._left:  # killed under the request
                        return
                    self.errors.append(f"PUT {path}: {exc!r}")
                    return
                if answer.status_code == 200:
                    self.changes += 1
                else:
                    self.errors.append(f"PUT {path}: {answer.status_code} {answer.text}")
                turn += 1
                await asyncio.sleep(PACE)  # pacing of the load


class Setup:
    """A domain of the cluster with an endpoint at the receiver, made after event `after`."""

    def __init__(
        self,
        cluster: Cluster,
        receiver: ReceiverProcess,
        domain: Domain,
        pool: str,
        users: list[str],
        after: int,
        endpoint: Message,
    ) -> None:
        self.cluster = cluster
        self.receiver = receiver
        self.domain = domain
        self.pool = pool
        self.users = users
        self.after = after
        self.endpoint = endpoint

    def changes(self, *nodes: ServerProcess) -> LicenseChanges:
        return LicenseChanges(list(nodes), self.domain.id, self.users, self.pool)

    async def all_delivered(self, domain: Domain | None = None) -> list[Message]:
        """Every event since the endpoint's creation, once all have arrived."""
        events = await drain(domain or self.domain, self.receiver, self.after)
        assert events is not None, "some events never arrived"
        return events


@pytest.fixture
async def setup(cluster: Cluster, receiver: ReceiverProcess) -> AsyncIterator[Setup]:
    async with Harness(cluster.a.server) as harness:
        domain = await harness.new_domain(seat_licenses=20)
        pool = await domain.pool(10)
        users = [(await domain.seat_user(pool)).id for _ in range(6)]
        after = await last_event_id(domain)
        endpoint = await Webhooks(domain).create(receiver.url(HOOK))
        yield Setup(cluster, receiver, domain, pool["id"], users, after, endpoint)


async def delivered_count(node: ServerProcess, outcome: str = "delivered") -> float:
    """The node's `presence_webhook_deliveries_total{outcome=...}`."""
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        answer = await http.get(f"{node.base_url}/metrics")
    assert answer.status_code == 200, answer.text
    return metric(answer.text, "presence_webhook_deliveries_total", outcome=outcome) or 0.0


async def delivering_node(
    cluster: Cluster, outcome: str = "delivered", least: int = 10
) -> ServerProcess:
    """The node that delivers: the only one whose count of attempts with
    `outcome` grows between two looks, once it has made `least` of them."""
    nodes = (cluster.a, cluster.b)
    counts = [await delivered_count(node, outcome) for node in nodes]

    async def one_grew() -> ServerProcess | None:
        nonlocal counts
        now = [await delivered_count(node, outcome) for node in nodes]
        grew = [node for node, old, new in zip(nodes, counts, now, strict=True) if new > old]
        counts = now
        if len(grew) == 1 and max(now) >= least:
            return grew[0]
        return None

    return await wait_until(one_grew, "one node delivering", timeout=20.0)


async def _some(receiver: ReceiverProcess, count: int, since: float = 0.0) -> bool:
    """Whether `count` requests answered 2xx arrived (after `since`)."""
    return sum(r.received_at > since for r in receiver.delivered(HOOK)) >= count


async def _holding(receiver: ReceiverProcess) -> bool:
    """Whether the receiver holds a request unanswered."""
    return any(r.status is None for r in receiver.requests(HOOK))


async def test_both_nodes_alive_deliver_each_event_once(setup: Setup) -> None:
    load = setup.changes(setup.cluster.a, setup.cluster.b)
    await wait_until(
        lambda: _some(setup.receiver, 150), "150 events delivered under load", timeout=60.0
    )
    await load.stop()
    events = await setup.all_delivered()
    verdict = check(events, setup.receiver.requests(HOOK), setup.endpoint["secret"])
    print(f"both nodes alive: {verdict.summary()}")
    assert verdict.ok, (verdict.summary(), verdict.problems()[:10])
    assert sum(verdict.duplicates.values()) == 0, verdict.duplicates
    assert verdict.events >= 150, verdict.summary()


@pytest.mark.parametrize("moment", ["under load", "with a request in flight"])
async def test_the_other_node_takes_over_a_killed_deliverer_within_lease_ttl(
    setup: Setup, lease_ttl: float, moment: str
) -> None:
    cluster, receiver = setup.cluster, setup.receiver
    load = setup.changes(cluster.a, cluster.b)
    deliverer = await delivering_node(cluster)
    survivor = cluster.b if deliverer is cluster.a else cluster.a
    before = await delivered_count(survivor)
    if moment == "with a request in flight":
        # The receiver holds the next request: its event was not delivered.
        await receiver.set_mode("hang")
        await wait_until(lambda: _holding(receiver), "a request held", timeout=30.0)
    load.leave(deliverer)
    await asyncio.to_thread(deliverer.kill)
    killed = time.time()
    await receiver.set_mode("ok")

    async def first_after_kill() -> float | None:
        # Later than RESUMED_AFTER: the receiver may log the dead node's last request late.
        later = [r.received_at for r in receiver.requests(HOOK)]
        return next((at for at in later if at > killed + RESUMED_AFTER), None)

    first = await wait_until(first_after_kill, "a request after the kill", timeout=30.0)
    takeover = first - killed
    # The survivor delivers a while under load, then everything arrives.
    await wait_until(
        lambda: _some(receiver, 50, since=first), "50 requests from the survivor", timeout=60.0
    )
    await load.stop()
    async with Harness(survivor.server) as harness:
        domain = Domain(harness, {"id": setup.domain.id})
        events = await setup.all_delivered(domain)
    verdict = check(events, receiver.requests(HOOK), setup.endpoint["secret"], [Kill(killed, "")])
    print(
        f"takeover {takeover:.2f} s after the kill (lease_ttl {lease_ttl:g} s); {verdict.summary()}"
    )
    assert verdict.ok, (verdict.summary(), verdict.problems()[:10])
    assert takeover <= lease_ttl + TICK + MARGIN, f"took over after {takeover:.2f} s"
    assert await delivered_count(survivor) > before, "the survivor delivered nothing"


@pytest.mark.parametrize("node_env", [HANG_ENV], ids=["timeout-2s"])
@pytest.mark.parametrize("lease_ttl", [HANG_LEASE_TTL], ids=["ttl-6s"])
async def test_one_attempt_in_flight_at_a_time_with_both_nodes(setup: Setup) -> None:
    receiver = setup.receiver
    await receiver.set_mode("hang")
    load = setup.changes(setup.cluster.a, setup.cluster.b)
    hung = await receiver.wait_requests(HOOK, 4, timeout=30.0)
    await load.stop()
    first_id = hung[0].webhook_id
    assert [r.webhook_id for r in hung] == [first_id] * len(hung), "a later event was tried"
    # One at a time: each attempt only after the one before timed out.
    gaps = [b.received_at - a.received_at for a, b in zip(hung, hung[1:], strict=False)]
    assert min(gaps) >= HANG_TIMEOUT - 0.5, f"attempts {gaps} s apart: two in flight"
    attempts = await Webhooks(setup.domain).deliveries(setup.endpoint["id"], limit=1000)
    numbers = sorted(a["attempt"] for a in attempts if str(a["event_id"]) == first_id)
    assert numbers == list(range(1, len(numbers) + 1)), f"attempt numbers {numbers}"

    await receiver.set_mode("ok")
    events = await setup.all_delivered()
    verdict = check(events, receiver.requests(HOOK), setup.endpoint["secret"])
    assert verdict.ok, (verdict.summary(), verdict.problems()[:10])
    assert sum(verdict.duplicates.values()) == 0, verdict.duplicates


@pytest.mark.parametrize("node_env", [HANG_ENV], ids=["retry-scale-0.001"])
async def test_the_other_node_carries_on_the_retries_of_a_killed_deliverer(
    setup: Setup, lease_ttl: float
) -> None:
    cluster, receiver = setup.cluster, setup.receiver
    await receiver.set_mode("fail")
    load = setup.changes(cluster.a, cluster.b)
    # Waits 5 ms, 30 ms, 120 ms, 600 ms: the fifth attempt comes within a second.
    deliverer = await delivering_node(cluster, "failed", least=5)
    survivor = cluster.b if deliverer is cluster.a else cluster.a
    load.leave(deliverer)
    await asyncio.to_thread(deliverer.kill)
    killed = time.time()
    failing = [r for r in receiver.requests(HOOK) if r.received_at <= killed]
    event_id = failing[0].webhook_id
    await receiver.wait_requests(HOOK, len(failing) + 2, timeout=lease_ttl + 30.0)
    await load.stop()
    tried = receiver.requests(HOOK)
    assert {r.webhook_id for r in tried} == {event_id}, "a later event was tried while failing"
    async with Harness(survivor.server) as harness:
        domain = Domain(harness, {"id": setup.domain.id})
        attempts = await Webhooks(domain).deliveries(setup.endpoint["id"], limit=1000)
        numbers = [a["attempt"] for a in reversed(attempts) if str(a["event_id"]) == event_id]
        # Counted on from the dead node's (its last may be tried again), never from 1.
        assert numbers[0] == 1 and len(numbers) >= len(failing), numbers
        steps = [b - a for a, b in zip(numbers, numbers[1:], strict=False)]
        assert set(steps) <= {0, 1} and steps.count(0) <= 1, f"attempt numbers {numbers}"

        await receiver.set_mode("ok")
        events = await setup.all_delivered(domain)
    verdict = check(events, receiver.requests(HOOK), setup.endpoint["secret"], [Kill(killed, "")])
    assert verdict.ok, (verdict.summary(), verdict.problems()[:10])
    assert sum(verdict.duplicates.values()) == 0, verdict.duplicates
