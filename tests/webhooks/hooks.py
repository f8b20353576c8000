"""The test side of webhooks: the receiver process, the webhooks API, waiting.

`ReceiverProcess` runs `receiver.py` as a process of the test's own, on a port
that stays the same across `stop`/`start` (so that an endpoint's URL outlives
an outage), and reads what it logged as `Received` requests. `Webhooks` is
the webhooks API of one domain. `wait_until` polls a condition until a
deadline: nothing here sleeps a fixed time to let the server catch up, except
`elapse`, for what must not happen.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import controlled
import httpx
from server.client import Device, Domain, Harness, Member, Message, ok, parse_utc
from servers import free_port
from standardwebhooks.webhooks import Webhook

T = TypeVar("T")

RECEIVER = Path(__file__).resolve().parent / "receiver.py"
#: Seconds for the receiver to answer its control port after its start.
RECEIVER_STARTUP = 10.0
#: Seconds between looks at a log or the API while waiting for a condition.
POLL = 0.05
#: Generous bound for what the server should do within a second or so.
WAIT = 10.0

#: Every event type of the spec (sections 2 and 11).
EVENT_TYPES = frozenset(
    {
        "seat_granted",
        "seat_denied",
        "seat_released",
        "lease_expired",
        "taken_over",
        "idle_logoff",
        "released_by_admin",
        "license_changed",
        "call_started",
        "call_ended",
        "named_login",
        "named_logout",
        "webhook_disabled",
        "pool_full",
        "pool_near_capacity",
        "pool_recovered",
        "token_revoked",
    }
)
WEBHOOK_KEYS = frozenset({"id", "url", "events", "description", "enabled", "created_at"})
DELIVERY_KEYS = frozenset({"event_id", "attempt", "at", "status", "error", "duration_ms"})
#: The latest page of the event log (`before` past any id).
LATEST = 4611686018427387904


async def wait_until(
    condition: Callable[[], Awaitable[T | None]], what: str, timeout: float = WAIT
) -> T:
    """Poll `condition` until it returns something true (not None, empty or False); return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await condition()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(POLL)


async def elapse(seconds: float) -> None:
    """Let `seconds` pass: only to give something that must not happen the time to show."""
    await asyncio.sleep(seconds)


@dataclass(frozen=True)
class Received:
    """One request the receiver logged."""

    received_at: float
    path: str
    method: str
    webhook_id: str | None
    timestamp: str | None
    signature: str | None
    headers: dict[str, str]
    body: str
    status: int | None

    @property
    def payload(self) -> Message:
        decoded = json.loads(self.body)
        assert isinstance(decoded, dict), self.body
        return decoded

    @property
    def event_id(self) -> int:
        """The event id the body carries."""
        event_id = self.payload["data"]["id"]
        assert isinstance(event_id, int), self.body
        return event_id

    def verify(self, secret: str) -> Message:
        """Check the signature with standardwebhooks' own verifier; the verified body."""
        verified = Webhook(secret).verify(self.body, self.headers)
        assert isinstance(verified, dict), verified
        return verified


@dataclass(eq=False)
class ReceiverProcess:
    """`receiver.py` as a process: started, stopped, killed, its mode set, its log read."""

    workdir: Path
    _: KW_ONLY
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    #: Paths of this receiver start with it, so that requests meant for an
    #: earlier receiver on the same port are never taken for this one's.
    prefix: str = field(default_factory=lambda: f"/r-{uuid.uuid4().hex[:12]}")
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log(self) -> Path:
        return self.workdir / "received.jsonl"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def path(self, name: str = "hook") -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str = "hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{self.path(name)}"

    def start(self, mode: str = "ok") -> None:
        """Start the process with default `mode` and wait until it answers."""
        assert not self.running, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, str(RECEIVER), "--port", str(self.port),
            "--control-port", str(self.control_port), "--log", str(self.log), "--mode", mode,
        ]  # fmt: skip
        self.process = controlled.start(
            command, self.workdir / "receiver.err", self.control, RECEIVER_STARTUP
        )

    def stop(self) -> None:
        """SIGTERM and wait; the port is free again when this returns."""
        if self.running:
            assert self.process is not None
            controlled.stop(self.process)

    def kill(self) -> None:
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.control_port}/control"

    async def set_mode(self, mode: str, name: str | None = None) -> None:
        """Set the default mode, or that of the path `name` (see `path`)."""
        body: Message = {"mode": mode}
        if name is not None:
            body["path"] = self.path(name)
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
            answer = await http.post(self.control, json=body)
        assert answer.status_code == 200, answer.text

    def entries(self) -> list[Message]:
        """Every complete line of the log, oldest first."""
        if not self.log.exists():
            return []
        text = self.log.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def requests(self, name: str | None = None) -> list[Received]:
        """The requests logged, oldest first: to this receiver's path `name`, or to any."""
        found = []
        for entry in self.entries():
            if entry["kind"] != "request":
                continue
            if name is not None and entry["path"] != self.path(name):
                continue
            found.append(
                Received(
                    received_at=entry["received_at"],
                    path=entry["path"],
                    method=entry["method"],
                    webhook_id=entry["webhook_id"],
                    timestamp=entry["timestamp"],
                    signature=entry["signature"],
                    headers=entry["headers"],
                    body=entry["body"],
                    status=entry["status"],
                )
            )
        return found

    def connections(self) -> int:
        """How many connections were accepted on the webhook port, over every run."""
        return sum(1 for entry in self.entries() if entry["kind"] == "connection")

    def delivered(self, name: str) -> list[Received]:
        """The requests to `name` answered 2xx, oldest first."""
        return [r for r in self.requests(name) if r.status is not None and 200 <= r.status < 300]

    async def wait_delivered(
        self, name: str, event_ids: list[int], timeout: float = WAIT
    ) -> list[Received]:
        """Wait until every event of `event_ids` was delivered to `name`; the deliveries."""
        wanted = set(event_ids)

        async def arrived() -> list[Received] | None:
            delivered = self.delivered(name)
            return delivered if wanted <= {r.event_id for r in delivered} else None

        return await wait_until(arrived, f"events {sorted(wanted)} delivered to {name}", timeout)

    async def wait_requests(
        self,
        name: str,
        count: int,
        timeout: float = WAIT,
        status: int | Literal["any"] | None = "any",
    ) -> list[Received]:
        """Wait until `name` got `count` requests answered `status` (`None`: left
        unanswered; `"any"`: whatever the answer); those requests."""

        async def arrived() -> list[Received] | None:
            got = [r for r in self.requests(name) if status == "any" or r.status == status]
            return got if len(got) >= count else None

        return await wait_until(arrived, f"{count} requests ({status}) to {name}", timeout)


class Webhooks:
    """The webhooks API of one domain, as the domain's server admin sees it."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.api = domain.api

    def path(self, *parts: str) -> str:
        return self.domain.path("webhooks", *parts)

    async def create(self, url: str, **fields: Any) -> Message:
        """POST an endpoint; the answer (with its secret)."""
        created = ok(await self.api.post(self.path(), {"url": url, **fields}), 201)
        assert isinstance(created, dict), created
        return created

    async def listed(self) -> list[Message]:
        listed = ok(await self.api.get(self.path()))
        assert isinstance(listed, list), listed
        return listed

    async def get(self, webhook_id: str) -> Message:
        """The endpoint as listed."""
        for webhook in await self.listed():
            if webhook["id"] == webhook_id:
                return webhook
        raise AssertionError(f"webhook {webhook_id} not listed")

    async def patch(self, webhook_id: str, **fields: Any) -> Message:
        patched = ok(await self.api.patch(self.path(webhook_id), fields))
        assert isinstance(patched, dict), patched
        return patched

    async def delete(self, webhook_id: str) -> None:
        ok(await self.api.delete(self.path(webhook_id)), 204)

    async def deliveries(self, webhook_id: str, limit: int | None = None) -> list[Message]:
        """The endpoint's delivery attempts, newest first."""
        params = {} if limit is None else {"limit": limit}
        answer = await self.api.request("GET", self.path(webhook_id, "deliveries"), params=params)
        listed = ok(answer)
        assert isinstance(listed, list), listed
        return listed

    async def wait_attempts(
        self,
        webhook_id: str,
        condition: Callable[[list[Message]], bool],
        what: str,
        timeout: float = WAIT,
    ) -> list[Message]:
        """Poll the deliveries log until `condition` holds of it (newest first); the log."""

        async def holds() -> list[Message] | None:
            attempts = await self.deliveries(webhook_id, limit=1000)
            return attempts if condition(attempts) else None

        return await wait_until(holds, what, timeout)


async def visit(harness: Harness, member: Member) -> Device:
    """Log `member` in on a new device and out again: two events for a named user."""
    device = await harness.login(member)
    await device.logout()
    return device


async def last_event_id(domain: Domain) -> int:
    """The id of the domain's latest event, 0 when it has none."""
    latest = await domain.events(before=LATEST, limit=1)
    return int(latest[-1]["id"]) if latest else 0


async def events_after(domain: Domain, after: int) -> list[Message]:
    """Every event of the domain after id `after`, oldest first."""
    events: list[Message] = []
    while page := await domain.events(after=events[-1]["id"] if events else after, limit=1000):
        events.extend(page)
    return events


def check_delivery(received: Received, event: Message, secret: str) -> None:
    """`received` is `event` as the contract delivers it, signed with `secret`."""
    verified = received.verify(secret)
    assert verified == received.payload
    assert received.method == "POST", received
    assert received.headers.get("content-type", "").startswith("application/json"), received
    assert received.webhook_id == str(event["id"]), (received.webhook_id, event)
    assert set(verified) == {"type", "timestamp", "data"}, verified
    assert verified["data"] == event, (verified, event)
    assert verified["type"] == event["type"], verified
    assert parse_utc(verified["timestamp"]) == parse_utc(event["at"]), verified


def check_stream(received: list[Received], events: list[Message], secret: str) -> None:
    """`received` are exactly `events`, once each, in order, each as the contract delivers it."""
    got = [r.event_id for r in received]
    assert got == [e["id"] for e in events], f"delivered {got}, logged {[e['id'] for e in events]}"
    for one, event in zip(received, events, strict=True):
        check_delivery(one, event, secret)


def check_attempt(attempt: Message) -> None:
    """A deliveries log entry has the contract's fields and types."""
    assert set(attempt) == DELIVERY_KEYS, attempt
    assert isinstance(attempt["event_id"], int) and isinstance(attempt["attempt"], int), attempt
    assert attempt["attempt"] >= 1, attempt
    parse_utc(attempt["at"])
    assert attempt["status"] is None or isinstance(attempt["status"], int), attempt
    delivered = attempt["status"] is not None and 200 <= attempt["status"] < 300
    if delivered:
        assert attempt["error"] is None, attempt
    else:
        assert isinstance(attempt["error"], str) and attempt["error"].strip(), attempt
    duration = attempt["duration_ms"]
    assert isinstance(duration, int | float) and not isinstance(duration, bool), attempt
    assert duration >= 0, attempt


def moment(value: str) -> float:
    """An ISO time of the server as epoch seconds."""
    return parse_utc(value).timestamp()


async def create_pool(domain: Domain, seats: int, **fields: Any) -> Message:
    """POST a pool with alert fields (`alert_interval_s`, `alert_threshold_pct`)."""
    body = {"id": f"pool-{uuid.uuid4().hex[:12]}", "name": "Help desk", "seats": seats, **fields}
    created = ok(await domain.api.post(domain.path("pools"), body), 201)
    assert isinstance(created, dict), created
    return created


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels` (in any order), or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        sample_name, _, rest = head.partition("{")
        if sample_name != name:
            continue
        found = dict(
            (key, raw.strip('"'))
            for key, _, raw in (pair.partition("=") for pair in rest.rstrip("}").split(",") if pair)
        )
        if found == labels:
            return float(value)
    return None
