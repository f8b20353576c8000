"""The client: a device's login, kept through lost connections (see :mod:`presence.client`)."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Literal

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.uri import parse_uri

from .. import wire
from ..core import seats
from .connection import Connection, Lost, Message
from .errors import (
    CallRefused,
    ClientStopped,
    ConnectionFailed,
    LoginRefused,
    PresenceError,
    ProtocolViolation,
)

#: Session endings after which the client stops instead of logging in again.
FINAL_REASONS = frozenset(
    {
        seats.TAKEN_OVER,
        seats.REPLACED,
        seats.IDLE_LOGOFF,
        seats.USER_DELETED,
        seats.RELEASED_BY_ADMIN,
        seats.TOKEN_REVOKED,
    }
)
#: Refused a seat: the connection stays open, holding nothing.
SEAT_REFUSALS = frozenset({"seat_occupied", "already_logged_in"})
#: Refused the user: the token or the license is no good, and trying again never helps.
USER_REFUSALS = frozenset({"unauthorized", "no_license"})
LOGIN_REFUSALS = SEAT_REFUSALS | USER_REFUSALS
#: Seconds ``stop()`` waits for the server's ``bye``.
STOP_TIMEOUT = 5.0
#: Doublings of the backoff's bound: enough for any ``max_delay``, and no overflow.
MAX_DOUBLINGS = 32

logger = logging.getLogger(__name__)


def backoff_delay(first_delay: float, max_delay: float, attempt: int) -> float:
    """The wait before connecting again after ``attempt`` failed attempts (0: the
    first wait): drawn from 0 to ``first_delay``, the bound doubling with each
    attempt up to ``max_delay`` (full jitter)."""
    return random.uniform(0, min(max_delay, first_delay * 2 ** min(attempt, MAX_DOUBLINGS)))


class State(enum.Enum):
    """Where a client is; it holds its license only while ``HOLDING``."""

    IDLE = "idle"  # not started
    CONNECTING = "connecting"  # opening a connection, or waiting for the answer to hello
    HOLDING = "holding"  # welcomed
    REFUSED = "refused"  # refused a seat; asks again when availability shows a free one
    QUEUED = "queued"  # waits in its pool's queue
    RECONNECTING = "reconnecting"  # waits before connecting again
    STOPPING = "stopping"
    STOPPED = "stopped"


class Messages:
    """An async iterator over a client's messages, ending when the client stops
    (see :meth:`Client.messages`). Messages wait here until read: ``aclose()``
    one that you stop reading before then."""

    def __init__(self, readers: set[Messages]) -> None:
        self._readers = readers
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        readers.add(self)

    def __aiter__(self) -> Messages:
        return self

    async def __anext__(self) -> Message:
        message = await self._queue.get()
        if message is None:
            raise StopAsyncIteration
        return message

    def put(self, message: Message | None) -> None:
        self._queue.put_nowait(message)

    async def aclose(self) -> None:
        self._readers.discard(self)
        self.put(None)


class Client:
    """One device's login to a presence server, kept through drops and restarts.

    ``url`` is the device endpoint, ``ws://host:port/ws/device`` (or
    ``wss://``). Sign in one way: ``token``, or ``get_token`` (an async
    callable returning one); or, for a domain that signs in with its identity
    provider, ``domain`` (its id) with ``id_token`` (an OpenID Connect ID
    token) or ``get_id_token`` (an async callable returning one). A callable
    is awaited before each connection, the first and every reconnection, so
    that each sends a fresh token; if it raises, that attempt failed: before
    any server answered, ``start()`` raises its exception, later the client
    waits with the backoff and asks again. ``device_id`` must stay the same
    across the device's restarts: it is how the server gives the device its
    seat back. ``queue=True`` waits in the pool's queue when no seat is free;
    ``takeover=True`` moves the user's seat from another device to this one.
    Waits before connecting again are drawn from 0 to ``first_delay`` seconds,
    the bound doubling with each attempt up to ``max_delay``. ``timeout``
    bounds the opening of a connection and the wait for the answer to
    ``hello``, in seconds. ``proxy`` is as websockets' ``connect`` takes it:
    ``True`` for the environment's proxy settings, ``None`` for none, or a
    proxy's URL.

    Raises :exc:`ValueError` for a device the server would refuse, and unless
    exactly one way of signing in is given.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        get_token: Callable[[], Awaitable[str]] | None = None,
        domain: str | None = None,
        id_token: str | None = None,
        get_id_token: Callable[[], Awaitable[str]] | None = None,
        device_id: str,
        kind: str,
        name: str | None = None,
        queue: bool = False,
        takeover: bool = False,
        first_delay: float = 0.5,
        max_delay: float = 20.0,
        timeout: float = 10.0,
        proxy: str | Literal[True] | None = True,
    ) -> None:
        ways = (token, get_token, id_token, get_id_token)
        if sum(way is not None for way in ways) != 1:
            raise ValueError("give one of token, get_token, id_token and get_id_token")
        federated = id_token is not None or get_id_token is not None
        if federated and not (isinstance(domain, str) and domain):
            raise ValueError("id_token and get_id_token need the domain's id as domain")
        if not federated and domain is not None:
            raise ValueError("domain goes with id_token or get_id_token, not a presence token")
        if not 0 <= first_delay <= max_delay or timeout <= 0:
            raise ValueError("need 0 <= first_delay <= max_delay and timeout > 0")
        self.device: Message = {"id": device_id, "kind": kind}
        if name is not None:
            self.device["name"] = name
        try:  # as the server checks a hello
            wire.parse(json.dumps({"type": "hello", "device": self.device}))
        except wire.BadMessage as exc:
            raise ValueError(exc.message) from None
        self.url = url
        self.queue = queue
        self.takeover = takeover
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._domain = domain  # set for an ID token, which then stands where a token would
        self._token = token if token is not None else id_token
        self._get_token = get_token if get_token is not None else get_id_token
        self._proxy = proxy
        self._state = State.IDLE
        self._license: Message | None = None
        self._held_before: Message | None = None  # the license held when a connection was lost
        self._seat_taken = False  # refused a seat since then: what it gets is not the same
        self._attempt = 0  # attempts to connect since the last welcome
        self._reached = False  # a server answered once
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._asking = asyncio.Lock()
        self._readers: set[Messages] = set()
        self._started = asyncio.Event()  # start() has its outcome
        self._start_outcome: Message | BaseException = ClientStopped("Not started.")
        self._stopped = asyncio.Event()
        self._final: Message | None = None  # the message that stopped the client

    @property
    def license(self) -> Message | None:
        """The license held now, as the welcome gave it; None while not holding one."""
        return self._license

    @property
    def state(self) -> State:
        return self._state

    async def start(self) -> Message:
        """Connect and log in; the welcome's ``license``. Call it once.

        Raises :exc:`LoginRefused`, after which the client is stopped; with
        ``queue=True`` it waits in the queue instead of ``seat_occupied``.
        Raises :exc:`ConnectionFailed` or :exc:`ProtocolViolation` when the URL
        leads to no presence server, and what ``get_token`` or ``get_id_token``
        raised; ``unavailable`` is waited out.
        """
        if self._state is not State.IDLE:
            raise RuntimeError("start() is called once, before stop()")
        try:
            parse_uri(self.url)
        except (WebSocketException, ValueError) as exc:
            self._finish(None)
            raise ConnectionFailed(f"{self.url!r} is not a ws:// or wss:// URL: {exc}") from None
        self._state = State.CONNECTING
        self._task = asyncio.create_task(self._run())
        try:
            await self._started.wait()
        except asyncio.CancelledError:
            self._task.cancel()
            raise
        if isinstance(self._start_outcome, BaseException):
            raise self._start_outcome
        return self._start_outcome

    async def stop(self) -> None:
        """Log out, which frees the seat, and stop; return once stopped.

        Waits at most :data:`STOP_TIMEOUT` for the server's ``bye``. Safe at
        any time and more than once.
        """
        task = self._task
        if task is None:
            self._finish(None)
            return
        if self._state is not State.STOPPING and self._state is not State.STOPPED:
            self._state = State.STOPPING
            conn = self._conn
            if conn is not None and conn.authenticated:
                with contextlib.suppress(ConnectionClosed):
                    await conn.send({"type": "logout"})
                    await asyncio.wait({task}, timeout=STOP_TIMEOUT)  # ended by bye and close
            task.cancel()
        await asyncio.wait({task})

    async def wait_stopped(self) -> Message | None:
        """Wait until the client stops; the message that stopped it (a final
        ``session_ended``, or the ``error`` refusing it), or None after ``stop()``."""
        await self._stopped.wait()
        return self._final

    def messages(self) -> Messages:
        """Every message from now on: the server's, as sent, and the client's own
        ``{"type": "reconnecting", "attempt", "delay"}`` before each wait to
        connect again and ``{"type": "reconnected", "recovered"}`` once logged
        in again (``recovered``: the license held before is held again). Ends
        when the client stops."""
        reader = Messages(self._readers)
        if self._stopped.is_set():
            reader.put(None)
        return reader

    @contextlib.asynccontextmanager
    async def call(self, call_id: str) -> AsyncIterator[Message]:
        """Start a call (``call_start``) and end it (``call_end``) on leaving,
        unless the session it started on is gone (the call ended with it).
        Yields ``call_started``; raises :exc:`CallRefused`, or
        :exc:`ClientStopped` once stopped."""
        conn = self._conn
        if self._state is State.STOPPING or self._state is State.STOPPED:
            raise ClientStopped("The client is stopped.")
        if conn is None or self._state is not State.HOLDING:
            raise CallRefused("not_logged_in", "No license is held now; it is reconnecting.", True)
        try:
            started = await self._ask(conn, {"type": "call_start", "call_id": call_id})
        except Lost:
            raise CallRefused("not_logged_in", "The connection was lost.", True) from None
        ending = {"type": "call_end", "call_id": call_id}
        try:
            yield started
        except BaseException:
            with contextlib.suppress(PresenceError, Lost):
                await self._ask(conn, ending)
            raise
        with contextlib.suppress(Lost):
            await self._ask(conn, ending)

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _ask(self, conn: Connection, message: Message) -> Message:
        """Send a call's message and wait for its answer; :exc:`Lost` if the
        connection ends first. One at a time: the server's errors name no call."""
        async with self._asking:
            if conn is not self._conn:
                raise Lost
            conn.pending = asyncio.get_running_loop().create_future()
            try:
                await conn.send(message)
                answer = await conn.pending
            except ConnectionClosed:
                raise Lost from None
            finally:
                conn.pending = None
        if answer["type"] == "error":
            raise CallRefused.of(answer)
        return answer

    # Connecting, and again.

    async def _run(self) -> None:
        final: Message | None = None
        try:
            final = await self._keep_connected()
        except LoginRefused as exc:
            final = exc.as_message()
            self._settle_start(exc)
        except Exception as exc:  # start() failed, or a token callable did
            if self._started.is_set():
                logger.exception("%s: the client failed", self.device["id"])
            self._settle_start(exc)
        finally:
            self._finish(final)

    async def _keep_connected(self) -> Message | None:
        """Connect, and again after each loss, until stopped; the message of a final end."""
        while True:
            try:
                credentials = await self._credentials()
                conn = await Connection.open(self.url, self.device["id"], self.timeout, self._proxy)
            except Exception as exc:
                if not self._reached:
                    raise
                logger.info("%s: %s", self.device["id"], exc)
            else:
                self._conn = conn
                try:
                    final = await self._serve(conn, credentials)
                finally:
                    self._conn = None
                    with contextlib.suppress(Exception):
                        await conn.close()
                if final is not None:
                    return final
            if self._state is State.STOPPING:
                return None
            if self._license is not None:
                self._held_before, self._license = self._license, None
            delay = backoff_delay(self.first_delay, self.max_delay, self._attempt)
            self._attempt += 1
            self._state = State.RECONNECTING
            self._emit({"type": "reconnecting", "attempt": self._attempt, "delay": delay})
            await asyncio.sleep(delay)
            self._state = State.CONNECTING

    async def _credentials(self) -> Message:
        """What ``hello`` signs in with: ``token``, or ``domain`` and ``id_token``;
        from the callable, if one was given, asked again for each connection."""
        secret = self._token if self._get_token is None else await self._get_token()
        if not isinstance(secret, str):
            raise TypeError(f"the token callable returned {type(secret).__name__}, not str")
        if self._domain is None:
            return {"token": secret}
        return {"domain": self._domain, "id_token": secret}

    async def _serve(self, conn: Connection, credentials: Message) -> Message | None:
        """Log in on ``conn`` and follow it to its end; the message of a final end,
        or None when the connection was lost."""
        hello: Message = {"type": "hello", **credentials, "device": self.device}
        hello.update(queue=self.queue, takeover=self.takeover)
        try:
            async with asyncio.timeout(self.timeout) as answering:
                await conn.send(hello)
                while True:
                    message = await conn.receive()
                    answering.reschedule(None)
                    self._reached = True
                    final = await self._on(conn, message)
                    if final is not None:
                        return final
        except TimeoutError:
            if not self._started.is_set():
                text = f"{self.url} did not answer hello within {self.timeout:g} s."
                raise ProtocolViolation(text) from None
        except ConnectionClosed as closed:
            if not self._reached:
                text = f"{self.url} closed the connection without answering hello ({closed})."
                raise ConnectionFailed(text) from None
        except ProtocolViolation as exc:
            if not self._started.is_set():
                raise
            logger.warning("%s: %s", self.device["id"], exc)
        except Lost:
            pass
        return None

    async def _on(self, conn: Connection, message: Message) -> Message | None:
        """Act on a message of the server; the message itself if it stops the client."""
        self._emit(message)
        kind = message["type"]
        if kind == "welcome":
            self._welcomed(conn, message)
        elif kind == "queued":
            self._authenticated(conn, State.QUEUED)
        elif kind == "availability":
            free = message.get("free")
            if self._state is State.REFUSED and isinstance(free, int) and free > 0:
                await conn.send({"type": "acquire", "queue": self.queue, "takeover": self.takeover})
        elif kind == "call_started" or kind == "call_ended":
            conn.answer(message)
        elif kind == "error":
            return self._refused(conn, message)
        elif kind == "session_ended":
            if message.get("reason") in FINAL_REASONS:
                return message
            raise Lost
        return None

    def _welcomed(self, conn: Connection, welcome: Message) -> None:
        license = welcome.get("license")
        if not isinstance(license, dict):
            raise ProtocolViolation(f"A welcome without a license: {welcome}")
        self._license = license
        self._attempt = 0
        self._authenticated(conn, State.HOLDING)
        if not self._started.is_set():
            self._settle_start(license)
        elif self._held_before is not None:
            recovered = not self._seat_taken and _same_license(self._held_before, license)
            self._held_before, self._seat_taken = None, False
            self._emit({"type": "reconnected", "recovered": recovered})

    def _refused(self, conn: Connection, error: Message) -> Message | None:
        code = error.get("code")
        if conn.pending is not None and code not in LOGIN_REFUSALS:
            conn.answer(error)  # a call's
        elif not self._started.is_set() and (code in LOGIN_REFUSALS or not error.get("retryable")):
            raise LoginRefused.of(error)
        elif code in SEAT_REFUSALS:
            self._license = None
            self._seat_taken = True
            self._authenticated(conn, State.REFUSED)
        elif code in USER_REFUSALS:
            return error
        elif not conn.authenticated and error.get("retryable"):
            raise Lost  # unavailable, rate_limited...: come back later
        return None

    def _authenticated(self, conn: Connection, state: State) -> None:
        if self._state is not State.STOPPING:
            self._state = state
        conn.keep_alive(self.timeout)

    def _emit(self, message: Message) -> None:
        for reader in self._readers:
            reader.put(message)

    def _finish(self, final: Message | None) -> None:
        self._state = State.STOPPED
        self._license = None
        self._settle_start(ClientStopped("The client stopped before it logged in."))
        if not self._stopped.is_set():
            self._final = final
            self._stopped.set()
        for reader in self._readers:
            reader.put(None)
        self._readers.clear()

    def _settle_start(self, outcome: Message | BaseException) -> None:
        if not self._started.is_set():
            self._start_outcome = outcome
            self._started.set()


def _same_license(before: Message, now: Message) -> bool:
    """Whether ``now`` is the license held ``before``: for a seat, the same seat."""
    if before.get("model") != now.get("model"):
        return False
    if now.get("model") != "seat":
        return True
    return (_pool_id(before), before.get("seat")) == (_pool_id(now), now.get("seat"))


def _pool_id(license: Message) -> Any:
    pool = license.get("pool")
    return pool.get("id") if isinstance(pool, dict) else None
