"""Black-box clients for a running presence server.

Server tests talk to a real server process only through this module: `Api` for
the admin HTTP API, `Device` for one device's WebSocket session, `Domain` for a
customer domain set up through the API, and `Harness`, which owns every client
a test opens and closes them all at the end.

Waiting is always for an expected message or state, with a timeout; nothing
here sleeps a fixed time to let the server catch up. The only pacing is the
heartbeat a `Device` sends in the background once it is authenticated, as a
real device must.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Message = dict[str, Any]

API = "/api/v1"

#: Timeout for a message or state change the server should produce at once.
#: Generous on purpose: a wait only takes this long when a test fails.
WAIT = 3.0

#: Seconds between background heartbeats; well inside the shortest lease TTL.
HEARTBEAT_PERIOD = 0.4

#: Errors after which a device session stays open and authenticated.
REFUSALS = frozenset({"seat_occupied", "already_logged_in"})

AVAILABILITY_KEYS = frozenset({"pool", "seats", "occupied", "in_call", "free", "queued"})


@dataclass(frozen=True)
class Server:
    """Where a running server listens and how it was configured."""

    base_url: str
    admin_token: str
    heartbeat_interval: float
    lease_ttl: float

    @property
    def ws_url(self) -> str:
        return self.ws_base + "/ws/device"

    @property
    def ws_base(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)


def unique_id(prefix: str = "t") -> str:
    """A fresh id matching `[a-z0-9][a-z0-9-]{0,62}`."""
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def fields_of(obj: Any, keys: set[str] | frozenset[str]) -> dict[str, Any]:
    """Assert that `obj` is an object with at least `keys`; return just those."""
    assert isinstance(obj, dict), f"expected a JSON object, got {obj!r}"
    missing = set(keys) - obj.keys()
    assert not missing, f"missing {sorted(missing)} in {obj!r}"
    return {key: obj[key] for key in keys}


def parse_utc(value: Any) -> datetime:
    """Assert that `value` is an ISO 8601 UTC timestamp; return it."""
    assert isinstance(value, str), f"expected an ISO 8601 string, got {value!r}"
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() == timedelta(0), f"not UTC: {value!r}"
    return moment


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ok(response: httpx.Response, status: int = 200) -> Any:
    """Assert a success status; return the decoded body (None for 204)."""
    request = response.request
    assert response.status_code == status, (
        f"{request.method} {request.url.path}: expected {status}, "
        f"got {response.status_code} {response.text}"
    )
    if status == 204:
        return None
    return response.json()


def refused(
    response: httpx.Response,
    status: int,
    code: str,
    field: str | tuple[str, ...] | None = None,
) -> Message:
    """Assert an error answer of the spec's shape; return its `error` object.

    `field`, when given, is the field the error must name (or one of several
    acceptable spellings, for nested fields).
    """
    request = response.request
    assert response.status_code == status, (
        f"{request.method} {request.url.path}: expected {status} {code}, "
        f"got {response.status_code} {response.text}"
    )
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error: Message = body["error"]
    assert error.get("code") == code, body
    message = error.get("message")
    assert isinstance(message, str) and message.strip(), body
    if field is not None:
        accepted = (field,) if isinstance(field, str) else field
        assert error.get("field") in accepted, f"expected error.field in {accepted}: {body}"
    return error


def check_error(error: Message) -> Message:
    """Assert that a WebSocket `error` message has the spec's fields."""
    assert isinstance(error.get("code"), str), error
    assert isinstance(error.get("message"), str) and error["message"].strip(), error
    assert isinstance(error.get("retryable"), bool), error
    return error


class Api:
    """The admin HTTP API, as one bearer token sees it."""

    def __init__(self, base_url: str, token: str | None) -> None:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(
            base_url=base_url, headers=headers, timeout=10.0, trust_env=False
        )

    async def request(
        self, method: str, path: str, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        if body is not None:
            kwargs["json"] = body
        return await self._http.request(method, path, **kwargs)

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any = None) -> httpx.Response:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any) -> httpx.Response:
        return await self.request("PATCH", path, body)

    async def put(self, path: str, body: Any) -> httpx.Response:
        return await self.request("PUT", path, body)

    async def delete(self, path: str) -> httpx.Response:
        return await self.request("DELETE", path)

    async def aclose(self) -> None:
        await self._http.aclose()


@dataclass(frozen=True)
class Member:
    """A user of a domain, with a user token to log in with (and its id)."""

    id: str
    name: str
    email: str
    token: str
    token_id: str


class Domain:
    """A customer domain, managed with the server admin token."""

    def __init__(self, harness: Harness, data: Message) -> None:
        self.harness = harness
        self.api = harness.admin
        self.id: str = data["id"]
        self.data = data

    def path(self, *parts: str) -> str:
        return "/".join([f"{API}/domains/{self.id}", *parts])

    async def get(self) -> Message:
        return ok(await self.api.get(self.path()))

    async def token(self, role: str) -> str:
        return (await self.new_token(role))["token"]

    async def new_token(self, role: str, **options: Any) -> Message:
        """Create a domain token (`options`: `label`, `expires_in`); the answer."""
        answer = ok(await self.api.post(self.path("tokens"), {"role": role, **options}), 201)
        assert answer["role"] == role, answer
        return answer

    async def user_token(self, member: Member, **options: Any) -> Message:
        """Create another token of `member`; the answer."""
        answer = ok(await self.api.post(self.path("users", member.id, "tokens"), options), 201)
        assert answer["role"] == "user", answer
        return answer

    async def tokens(self) -> dict[str, Message]:
        """The domain's tokens as listed, by id."""
        listed = ok(await self.api.get(self.path("tokens")))
        assert isinstance(listed, list), listed
        return {token["id"]: token for token in listed}

    async def revoke(self, token_id: str) -> None:
        ok(await self.api.delete(self.path("tokens", token_id)), 204)

    async def pool(
        self,
        seats: int,
        *,
        name: str | None = None,
        pool_id: str | None = None,
        idle_logoff_s: int | None = None,
    ) -> Message:
        body: Message = {
            "id": pool_id or unique_id("pool"),
            "name": name or "Help desk",
            "seats": seats,
        }
        if idle_logoff_s is not None:
            body["idle_logoff_s"] = idle_logoff_s
        return ok(await self.api.post(self.path("pools"), body), 201)

    async def pools(self) -> dict[str, Message]:
        listed = ok(await self.api.get(self.path("pools")))
        assert isinstance(listed, list), listed
        return {pool["id"]: pool for pool in listed}

    async def users(self) -> dict[str, Message]:
        listed = ok(await self.api.get(self.path("users")))
        assert isinstance(listed, list), listed
        return {user["id"]: user for user in listed}

    async def user(self, license: Message, name: str | None = None) -> Member:
        key = uuid.uuid4().hex[:12]
        body = {
            "email": f"{key}@example.com",
            "name": name or f"User {key}",
            "license": license,
        }
        user = ok(await self.api.post(self.path("users"), body), 201)
        grant = ok(await self.api.post(self.path("users", user["id"], "tokens")), 201)
        assert grant["role"] == "user", grant
        return Member(user["id"], body["name"], body["email"], grant["token"], grant["id"])

    async def named_user(self, name: str | None = None) -> Member:
        return await self.user({"model": "named"}, name)

    async def seat_user(self, pool: Message, name: str | None = None) -> Member:
        return await self.user({"model": "seat", "pool": pool["id"]}, name)

    async def presence(self) -> Message:
        return ok(await self.api.get(self.path("presence")))

    async def events(self, **params: Any) -> list[Message]:
        """One page of the event log (`after`, `limit` as query parameters)."""
        events = ok(await self.api.request("GET", self.path("events"), params=params))
        assert isinstance(events, list), events
        return events

    async def all_events(self) -> list[Message]:
        """The whole event log of the domain, oldest first, page by page."""
        events: list[Message] = []
        while page := await self.events(after=events[-1]["id"] if events else 0):
            events.extend(page)
        return events

    async def pool_presence(self, pool: Message) -> Message:
        snapshot = await self.presence()
        for entry in snapshot["pools"]:
            if entry["id"] == pool["id"]:
                return entry
        raise AssertionError(f"pool {pool['id']} missing from presence {snapshot}")

    async def wait_pool(self, pool: Message, timeout: float = WAIT, **expected: Any) -> Message:
        """Poll the presence snapshot until the pool's entry shows `expected`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            entry = await self.pool_presence(pool)
            if all(entry.get(key) == value for key, value in expected.items()):
                return entry
            if loop.time() > deadline:
                raise AssertionError(f"pool never showed {expected} within {timeout}s: {entry}")
            await asyncio.sleep(0.05)


class Device:
    """One device's WebSocket session, read one JSON message at a time.

    Messages that arrive while a test waits for something else are kept, so
    the order in which the server sends messages of different types does not
    matter. Waiting for a message of one type discards the older messages of
    that type: a test sees each type's messages in order.
    """

    def __init__(
        self,
        ws: ClientConnection,
        *,
        device_id: str,
        kind: str,
        name: str | None,
        heartbeats: bool,
    ) -> None:
        self.ws = ws
        self.id = device_id
        self.kind = kind
        self.name = name
        self.welcome: Message | None = None
        self.close_code: int | None = None
        self._auto_heartbeat = heartbeats
        self._inbox: list[Message] = []
        self._received: list[Message] = []
        self._beating: asyncio.Task[None] | None = None

    @property
    def license(self) -> Message:
        assert self.welcome is not None, "not logged in"
        return self.welcome["license"]

    async def send(self, message: Message) -> None:
        await self.ws.send(json.dumps(message))

    async def send_text(self, text: str) -> None:
        await self.ws.send(text)

    async def hello(
        self,
        token: str | None,
        *,
        takeover: bool | None = None,
        queue: bool | None = None,
        **device: Any,
    ) -> None:
        """Send hello as this device; `device` overrides fields of `device`."""
        described: Message = {"id": self.id, "kind": self.kind}
        if self.name is not None:
            described["name"] = self.name
        described.update(device)
        message: Message = {"type": "hello", "device": described}
        if token is not None:
            message["token"] = token
        if takeover is not None:
            message["takeover"] = takeover
        if queue is not None:
            message["queue"] = queue
        await self.send(message)

    async def outcome(self, timeout: float = WAIT) -> Message:
        """Wait for the answer to hello or acquire: a welcome or an error.

        A device that is authenticated (welcomed, or refused a seat) starts
        heartbeating, unless it was opened with heartbeats off.
        """
        answer = await self.expect(("welcome", "error"), timeout)
        if answer["type"] == "welcome":
            self.welcome = answer
        if answer["type"] == "welcome" or answer.get("code") in REFUSALS:
            self.start_heartbeats()
        return answer

    async def login(self, token: str, *, takeover: bool | None = None) -> Message:
        await self.hello(token, takeover=takeover)
        return await self.outcome()

    async def acquire(self, *, takeover: bool | None = None) -> Message:
        message: Message = {"type": "acquire"}
        if takeover is not None:
            message["takeover"] = takeover
        await self.send(message)
        return await self.outcome()

    async def enqueue(self, token: str | None = None) -> Message:
        """Ask for a seat with `queue: true` (by hello with `token`, else by
        acquire) when none is free; expect `queued` and keep heartbeating."""
        if token is None:
            await self.send({"type": "acquire", "queue": True})
        else:
            await self.hello(token, queue=True)
        queued = await self.expect("queued")
        self.start_heartbeats()
        return queued

    async def granted(self, timeout: float = WAIT) -> Message:
        """Expect the `welcome` of a seat granted while waiting in the queue."""
        self.welcome = await self.expect("welcome", timeout)
        return self.welcome

    async def heartbeat(self, seq: int) -> Message:
        await self.send({"type": "heartbeat", "seq": seq})
        return await self.expect("heartbeat_ack", seq=seq)

    async def call_start(self, call_id: str) -> None:
        await self.send({"type": "call_start", "call_id": call_id})

    async def call_end(self, call_id: str) -> None:
        await self.send({"type": "call_end", "call_id": call_id})

    async def logout(self) -> None:
        """Log out: expect `bye`, then close 1000."""
        await self.send({"type": "logout"})
        await self.expect("bye")
        await self.expect_closed(1000)

    def start_heartbeats(self) -> None:
        if self._auto_heartbeat and self._beating is None:
            self._beating = asyncio.create_task(self._beat())

    async def stop_heartbeats(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            try:
                await self._beating
            except asyncio.CancelledError:
                pass
            self._beating = None

    async def _beat(self) -> None:
        try:
            while True:
                await asyncio.sleep(HEARTBEAT_PERIOD)
                await self.ws.send('{"type": "heartbeat"}')
        except ConnectionClosed:
            return

    async def expect(
        self,
        kind: str | tuple[str, ...],
        timeout: float = WAIT,
        **fields: Any,
    ) -> Message:
        """Return the first message of type `kind` whose fields match `fields`.

        Fails with what was received if none comes within `timeout` seconds or
        the connection closes first.
        """
        kinds = (kind,) if isinstance(kind, str) else kind
        wanted = f"{'|'.join(kinds)} {fields or ''}".strip()
        deadline = asyncio.get_running_loop().time() + timeout
        checked = 0
        while True:
            for index in range(checked, len(self._inbox)):
                message = self._inbox[index]
                if message.get("type") in kinds and all(
                    message.get(key) == value for key, value in fields.items()
                ):
                    self._inbox = [
                        other
                        for position, other in enumerate(self._inbox)
                        if position > index or other.get("type") != message["type"]
                    ]
                    return message
            checked = len(self._inbox)
            self._inbox.append(await self._next(deadline, wanted))

    async def expect_no(self, kind: str, seconds: float) -> None:
        """Assert that no message of type `kind` comes within `seconds` and the
        connection stays open.

        The one wait that always takes its full time: use it only for what
        must not happen, bounded well past when it would. (It relies on the
        timeout of `expect` itself: cancelling `expect` from an outer
        `asyncio.wait_for` can be lost on Python 3.11 when a message arrives at
        the same moment.)
        """
        try:
            message = await self.expect(kind, seconds)
        except AssertionError:
            if self.close_code is not None:
                raise
            return
        raise AssertionError(f"unexpected {message}; {self._seen()}")

    async def expect_error(self, code: str, timeout: float = WAIT) -> Message:
        """Expect `error` with `code`, of the spec's shape."""
        return check_error(await self.expect("error", timeout, code=code))

    async def expect_closed(self, code: int, timeout: float = WAIT) -> None:
        """Expect the server to close the connection with `code`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.close_code is None:
            try:
                self._inbox.append(await self._next(deadline, f"close {code}"))
            except AssertionError:
                if self.close_code is None:
                    raise
        assert self.close_code == code, (
            f"closed with {self.close_code}, expected {code}; {self._seen()}"
        )

    async def expect_ended(self, reason: str, code: int, timeout: float = WAIT) -> None:
        """Expect `session_ended` with `reason`, then close `code`."""
        ended = await self.expect("session_ended", timeout, reason=reason)
        assert isinstance(ended.get("message"), str) and ended["message"], ended
        await self.expect_closed(code, timeout)

    def received(self, kind: str) -> list[Message]:
        """Every message of type `kind` received so far."""
        return [message for message in self._received if message["type"] == kind]

    async def _next(self, deadline: float, wanted: str) -> Message:
        if self.close_code is not None:
            raise AssertionError(
                f"connection closed ({self.close_code}) before {wanted}; {self._seen()}"
            )
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            if remaining <= 0:
                raise TimeoutError
            raw = await asyncio.wait_for(self.ws.recv(), remaining)
        except TimeoutError:
            raise AssertionError(f"no {wanted} in time; {self._seen()}") from None
        except ConnectionClosed as closed:
            self.close_code = 1006 if closed.rcvd is None else closed.rcvd.code
            raise AssertionError(
                f"connection closed ({self.close_code}) before {wanted}; {self._seen()}"
            ) from None
        text = raw.decode() if isinstance(raw, bytes) else raw
        message = json.loads(text)
        assert isinstance(message, dict) and isinstance(message.get("type"), str), (
            f"not a message object: {text!r}"
        )
        self._received.append(message)
        return message

    def _seen(self) -> str:
        shown = [m for m in self._received if m["type"] != "heartbeat_ack"]
        return f"received (without heartbeat_ack): {shown[-20:]}"

    def drop(self) -> None:
        """Lose the connection abruptly, without a close handshake."""
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.stop_heartbeats()
        await self.ws.close()


class Harness:
    """Everything one test opens against one server; closes it all at the end."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.admin = Api(server.base_url, server.admin_token)
        self._apis = [self.admin]
        self._devices: list[Device] = []

    async def __aenter__(self) -> Harness:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*(device.close() for device in self._devices))
        for api in self._apis:
            await api.aclose()

    def api(self, token: str | None) -> Api:
        api = Api(self.server.base_url, token)
        self._apis.append(api)
        return api

    async def new_domain(
        self,
        *,
        plan: str = "enterprise",
        named_licenses: int = 50,
        seat_licenses: int = 100,
        name: str = "Test domain",
    ) -> Domain:
        body = {
            "id": unique_id("dom"),
            "name": name,
            "plan": plan,
            "named_licenses": named_licenses,
            "seat_licenses": seat_licenses,
        }
        created = ok(await self.admin.post(f"{API}/domains", body), 201)
        return Domain(self, created)

    async def device(
        self,
        *,
        kind: str = "desktop",
        name: str | None = None,
        device_id: str | None = None,
        heartbeats: bool = True,
        path: str = "/ws/device",
    ) -> Device:
        """Open a WebSocket to the device endpoint, or another (nothing sent yet)."""
        ws = await connect(
            self.server.ws_base + path,
            proxy=None,
            compression=None,
            ping_interval=None,
            open_timeout=10,
            close_timeout=2,
        )
        device = Device(
            ws,
            device_id=device_id or unique_id("dev"),
            kind=kind,
            name=name,
            heartbeats=heartbeats,
        )
        self._devices.append(device)
        return device

    async def wallboard(self, token: str) -> Device:
        """Open the wallboard stream with `token` and wait for its snapshot.

        It is read as a device's session is (`expect`, `expect_closed`).
        """
        board = await self.device(path="/ws/wallboard", heartbeats=False)
        await board.send({"type": "hello", "token": token})
        await board.expect("snapshot")
        return board

    async def unauthorized_hello(self, token: str) -> None:
        """A device saying hello with `token` is refused: `unauthorized`, close 4401."""
        device = await self.device()
        await device.hello(token)
        await device.expect_error("unauthorized")
        await device.expect_closed(4401)

    async def unauthorized_wallboard(self, token: str) -> None:
        """A wallboard opened with `token` is refused: `unauthorized`, close 4401."""
        board = await self.device(path="/ws/wallboard", heartbeats=False)
        await board.send({"type": "hello", "token": token})
        await board.expect_error("unauthorized")
        await board.expect_closed(4401)

    async def login(self, member: Member, *, takeover: bool | None = None, **device: Any) -> Device:
        """Open a device and log `member` in on it; it must be welcomed."""
        opened = await self.device(**device)
        answer = await opened.login(member.token, takeover=takeover)
        assert answer["type"] == "welcome", f"{member.name} was refused: {answer}"
        return opened

    async def queued_login(self, member: Member, position: int, **device: Any) -> Device:
        """Open a device and log `member` in with `queue: true`; it must be
        queued at `position`."""
        opened = await self.device(**device)
        queued = await opened.enqueue(member.token)
        assert queued.get("position") == position, f"expected position {position}: {queued}"
        return opened

    async def refused_login(self, member: Member, code: str, **device: Any) -> Device:
        """Open a device and log `member` in on it; it must get error `code`."""
        opened = await self.device(**device)
        answer = await opened.login(member.token)
        assert answer.get("code") == code, f"expected error {code}, got {answer}"
        check_error(answer)
        return opened
