"""One device connection that records everything it observes.

A `Line` is one device connection. A task of its own reads every message and
keeps the line's `Phase` as the device knows it (asking, refused, queued,
seated, named, ended, closed); it heartbeats once it has asked for a seat.
Every `welcome` of a seat becomes a `history.Grant`, every answer to a call a
`history.Proof`, and the time from each `hello` or `acquire` to its answer
(`welcome`, `queued` or `error`) is measured; all of it goes to the line's
`fleet.Fleet`. Its `story` keeps what it did and saw, for reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .history import Grant, Proof

if TYPE_CHECKING:
    from .fleet import Fleet

Message = dict[str, Any]

#: The longest a live server takes to answer; past it a line counts as lost.
ANSWER_TIMEOUT = 3.0
HEARTBEAT_PERIOD = 0.5
#: What `Line.answer` returns when the connection closed, or nothing came in time.
CLOSED: Message = {"type": "closed"}
#: Errors pushed to a queued session after which it stays open, holding
#: nothing. `unavailable` (a node that cannot decide now) is a quick refusal too.
STAYS_OPEN = frozenset({"seat_occupied", "already_logged_in", "unavailable"})
#: Errors after which the server closes the connection.
CLOSES = frozenset({"unauthorized", "no_license"})


def clock() -> float:
    return time.monotonic()


class Phase(enum.Enum):
    """Where a device connection stands, as the device knows it."""

    CONNECTED = "connected"  # nothing said yet
    ASKING = "asking"  # hello or acquire sent, not answered yet
    REFUSED = "refused"  # authenticated, holding nothing
    QUEUED = "queued"  # waiting in its pool's queue
    SEATED = "seated"  # holding a seat
    NAMED = "named"  # logged in with a named license
    ENDED = "ended"  # told of the end (session_ended, bye, a closing error)
    CLOSED = "closed"  # the connection is gone, or the device let it go


#: Phases of a session the server must know: authenticated and not ended.
LIVE = frozenset({Phase.REFUSED, Phase.QUEUED, Phase.SEATED, Phase.NAMED})


@dataclass(frozen=True)
class Member:
    """A user of a fleet, with a user token to log in with."""

    id: str
    name: str
    token: str


@dataclass
class _Request:
    """A request waiting for its answer: a message of `kinds`, or an error."""

    kinds: frozenset[str]
    answer: asyncio.Future[Message]
    sent: float
    timed: bool  # a hello or acquire, whose answer time is measured


class Line:
    """One device connection: reads everything, heartbeats, records grants."""

    def __init__(
        self, fleet: Fleet, member: Member, device: str, url: str, ws: ClientConnection
    ) -> None:
        self.fleet = fleet
        self.member = member
        self.device = device
        self.url = url
        self.ws = ws
        self.phase = Phase.CONNECTED
        self.grant: Grant | None = None  # the latest seat this line was welcomed to
        self.pool: str | None = None  # the pool it waits in or holds a seat of
        self.refusal: str | None = None  # the code of the last error that answered a request
        self.asked = 0.0  # when the latest hello or acquire was sent
        self.closed_at: float | None = None
        self._request: _Request | None = None
        self._changed = asyncio.Event()
        self._sent: dict[Any, float] = {}
        self._seq = 0
        self._beating: asyncio.Task[None] | None = None
        self.story: list[str] = []  # what the device did and saw, for reports
        self._reading = asyncio.create_task(self._read())
        fleet.lines[self] = None
        self._tell("connected")

    @property
    def open(self) -> bool:
        return self.phase is not Phase.CLOSED

    @property
    def idle(self) -> bool:
        """No request of this line waits for its answer."""
        return self._request is None

    @property
    def live(self) -> bool:
        """The server must know this session: authenticated, not ended, not let go."""
        return self.phase in LIVE

    # Requests, each answered by the server.

    async def hello(
        self, *, takeover: bool = False, queue: bool = False, patience: float = ANSWER_TIMEOUT
    ) -> Message:
        """Log in; the answer is `welcome`, `queued`, an error, or `CLOSED`."""
        await self.send_hello(takeover=takeover, queue=queue)
        return await self.answer(patience)

    async def acquire(self, *, takeover: bool = False, queue: bool = False) -> Message:
        """Ask again on a refused connection; answered as `hello` is."""
        await self.send_acquire(takeover=takeover, queue=queue)
        return await self.answer()

    async def send_hello(self, *, takeover: bool = False, queue: bool = False) -> None:
        """Send `hello` without waiting: `answer` waits for its answer."""
        device = {"id": self.device, "kind": "desktop"}
        hello = {"type": "hello", "token": self.member.token, "device": device}
        await self._ask({**hello, "takeover": takeover, "queue": queue})

    async def send_acquire(self, *, takeover: bool = False, queue: bool = False) -> None:
        await self._ask({"type": "acquire", "takeover": takeover, "queue": queue})

    async def send_call(self, kind: str, call_id: str) -> None:
        """Send `call_start` or `call_end` without waiting: see `answer`."""
        answered = "call_started" if kind == "call_start" else "call_ended"
        self._expect({answered}, timed=False)
        await self.send({"type": kind, "call_id": call_id}, key=call_id)

    async def answer(self, patience: float = ANSWER_TIMEOUT) -> Message:
        """The answer to the request just sent, or `CLOSED` if the connection
        closed first or nothing came within `patience` s (counted as a timeout;
        the line is then dropped: a server that does not answer is as good as
        gone)."""
        request = self._request
        assert request is not None, "no request sent"
        try:
            async with asyncio.timeout(patience):
                message = await request.answer
        except TimeoutError:
            self.fleet.count("timeouts")
            self._tell(f"no answer within {patience:g} s")
            self.drop(let_go=False)
            self.fleet.unanswered.append(self.describe())
            return CLOSED
        finally:
            self._request = None
        if request.timed and message is not CLOSED:
            self.fleet.latencies.append(clock() - request.sent)
            self.fleet.answers[message.get("code", message["type"])] += 1
        return message

    async def prove(self) -> bool:
        """Start and end a call: each answer proves the lease existed."""
        call_id = f"call-{random.getrandbits(48):x}"
        for kind in ("call_start", "call_end"):
            await self.send_call(kind, call_id)
            answer = await self.answer()
            if answer is CLOSED or answer["type"] == "error":
                return False
        self.fleet.count("proofs")
        return True

    # Endings chosen by the device.

    async def logout(self, *, wait: bool = True) -> None:
        """Send `logout`; with `wait`, wait for the server to close, then close."""
        self._let_go()
        await self.send({"type": "logout"})
        if wait:
            await self.until(lambda: self.phase is Phase.CLOSED, ANSWER_TIMEOUT)
            await self.close()

    def drop(self, let_go: bool = True) -> None:
        """Lose the connection abruptly (`transport.abort()`), as a device that crashed."""
        if let_go:
            self._let_go()
        self._tell("dropped")
        self.ws.transport.abort()
        self._gone(clock())

    async def close(self) -> None:
        """Close the connection with a closing handshake, and stop reading."""
        self._let_go()
        if self.phase is not Phase.CLOSED:
            self._tell("closing")
        self._gone(clock())
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await self.ws.close()
        self.ws.transport.abort()
        tasks = [task for task in (self._reading, self._beating) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition()` holds, re-checked at each change of the line."""
        deadline = clock() + timeout
        while not condition():
            left = deadline - clock()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._changed.wait()
        return True

    def describe(self) -> str:
        """This connection's story, in seconds since the fleet began."""
        return f"{self.device} on {self.url}: {', '.join(self.story)}"

    async def send(self, message: Message, key: Any = None) -> None:
        if key is not None:
            self._sent[key] = clock()
        if message["type"] != "heartbeat":
            flags = [flag for flag in ("takeover", "queue") if message.get(flag)]
            self._tell(" ".join([f"sent {message['type']}", *flags]))
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(message))

    # Internals.

    async def _ask(self, message: Message) -> None:
        self.asked = clock()
        if self.phase not in (Phase.ENDED, Phase.CLOSED):
            self.phase = Phase.ASKING
        self._expect({"welcome", "queued"}, timed=True)
        await self.send(message)
        if self._beating is None:
            self._beating = asyncio.create_task(self._beat())

    def _expect(self, kinds: set[str], timed: bool) -> None:
        assert self._request is None, "a request is already waiting for its answer"
        answer = asyncio.get_running_loop().create_future()
        self._request = _Request(frozenset(kinds), answer, clock(), timed)
        if self.phase is Phase.CLOSED:
            answer.set_result(CLOSED)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._on(json.loads(raw), clock())
        except ConnectionClosed:
            pass
        finally:
            now = clock()
            self._tell(f"connection closed ({self.ws.close_code})")
            grant = self.grant
            if grant is not None and grant.ended is None and grant.let_go is None:
                code = self.ws.close_code
                if code is not None and code != 1006:
                    # The server closed the session itself (e.g. 1011, its database
                    # out of reach): the device knows the session is over.
                    grant.ended = now
                    grant.end_reason = f"closed:{code}"
                else:
                    grant.lost = now
            self._gone(now)

    def _on(self, message: Message, now: float) -> None:
        if self.phase is Phase.CLOSED:
            return  # the device let the connection go: it reads nothing more
        kind = message.get("type")
        if kind == "heartbeat_ack":
            sent = self._sent.pop(message.get("seq"), None)
            grant = self.grant
            if grant is not None and sent is not None and sent >= grant.asked:
                grant.promised = max(grant.promised, sent + float(message["expires_in"]))
            return
        if kind != "availability":
            self._tell(f"got {kind}{_detail(message)}")
        if kind == "welcome":
            self._welcomed(message, now)
        elif kind == "queued":
            if self.phase in (Phase.ASKING, Phase.QUEUED):
                self.phase, self.pool = Phase.QUEUED, message["pool"]
        elif kind == "error":
            code = message.get("code")
            if code in CLOSES:
                self.phase, self.refusal = Phase.ENDED, code
            elif self.phase is Phase.ASKING or (self.phase is Phase.QUEUED and code in STAYS_OPEN):
                # Refused, or any other error to a login: the session holds nothing.
                self.phase, self.refusal = Phase.REFUSED, code
        elif kind in ("call_started", "call_ended"):
            sent = self._sent.pop(message.get("call_id"), None)
            if self.grant is not None and sent is not None:
                self.fleet.proofs.append(Proof(self.grant.lease_id, sent, kind))
        elif kind in ("session_ended", "bye"):
            reason = message.get("reason", "logout")
            if self.grant is not None and self.grant.ended is None:
                self.grant.ended = now
                self.grant.end_reason = reason
            self.phase = Phase.ENDED
            self.fleet.count(f"ended:{reason}")
        request = self._request
        if request is not None and kind in request.kinds | {"error"}:
            if not request.answer.done():
                request.answer.set_result(message)
        self._changed.set()

    def _welcomed(self, message: Message, now: float) -> None:
        license = message["license"]
        if license["model"] != "seat":
            self.phase = Phase.NAMED
            return
        self.phase, self.pool = Phase.SEATED, license["pool"]["id"]
        if self.grant is not None and self.grant.lease_id == license["lease_id"]:
            return  # the same grant again (an acquire while seated)
        self.grant = Grant(
            self.member.id,
            self.device,
            license["pool"]["id"],
            license["seat"],
            license["lease_id"],
            license["fencing_token"],
            self.asked,
            now,
            lease_ttl=float(message["lease_ttl"]),
        )
        self.fleet.grants.append(self.grant)

    def _tell(self, what: str) -> None:
        self.story.append(f"{clock() - self.fleet.began:.3f} {what}")

    def _let_go(self) -> None:
        if self.grant is not None and self.grant.let_go is None:
            self.grant.let_go = clock()

    def _gone(self, now: float) -> None:
        if self.closed_at is None:
            self.closed_at = now
        self.phase = Phase.CLOSED
        if self in self.fleet.lines:
            del self.fleet.lines[self]
            # The fleet keeps what it did and saw (and goes on to see), for reports.
            self.fleet.stories[(self.member.id, self.device)].append(self.describe)
        request = self._request
        if request is not None and not request.answer.done():
            request.answer.set_result(CLOSED)
        self._changed.set()

    async def _beat(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(HEARTBEAT_PERIOD)  # pacing, as a device does
                self._seq += 1
                self._sent[self._seq] = clock()
                await self.ws.send(json.dumps({"type": "heartbeat", "seq": self._seq}))


def _detail(message: Message) -> str:
    """What a story says of a message besides its type."""
    license = message.get("license")
    if isinstance(license, dict) and license.get("model") == "seat":
        return f" seat {license['seat']} of {license['pool']['id']}, lease {license['lease_id']}"
    detail = message.get("code") or message.get("reason") or message.get("position")
    return f" {detail}" if detail else ""
