"""A demo domain, and simulated devices that bring it to life.

:func:`prepare` creates the ``demo`` Enterprise domain through the admin HTTP
API if it does not exist, then hands out fresh tokens: one for a wallboard and
one per user. :func:`simulate` then runs one simulated person per user, each a
real WebSocket client of ``/ws/device``: seat users log in, take calls, get
refused when their pool is full and log out; named users come and go on
several devices. Everything waits human-ish random times (seconds), and every
person logs out when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import unicodedata
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

logger = logging.getLogger(__name__)

DOMAIN = {"name": "Demo Co", "plan": "enterprise", "named_licenses": 5, "seat_licenses": 5}
POOLS = [
    {"id": "helpdesk", "name": "Help desk", "seats": 3},
    {"id": "field", "name": "Field service", "seats": 2},
]
# More seat users than seats, so some logins are refused.
SEAT_USERS = {
    "helpdesk": ["Amara Okafor", "Lukas Weber", "Sofia Rossi", "Kenji Tanaka", "Priya Nair"],
    "field": ["Mateo García", "Ingrid Larsen", "Yusuf Demir"],
}
NAMED_USERS = ["Dr. Elena Petrova", "Omar Haddad", "Grace Liu"]

SEAT_KINDS = ["desktop", "desktop", "browser", "tablet", "phone", "glasses"]
NAMED_KINDS = ["desktop", "phone", "glasses", "tablet"]

# Seconds, as (low, high) bounds of a uniform draw.
FIRST_LOGIN = (0.2, 3.0)
OFF_DUTY = (5.0, 30.0)
ON_DUTY = (10.0, 40.0)
BETWEEN_CALLS = (2.0, 10.0)
CALL = (4.0, 20.0)
RETRY_AFTER_ERROR = (2.0, 5.0)
LOGOUT_TIMEOUT = 2.0


class ApiError(Exception):
    """An admin API request that did not succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


@dataclass(frozen=True)
class Person:
    """A user of the demo domain, with a token to log in with."""

    name: str
    token: str
    model: str


@dataclass(frozen=True)
class Demo:
    """A domain ready for simulation: its wallboard token and its people."""

    created: bool
    wallboard_token: str
    people: list[Person]


class AdminApi:
    """The few admin API calls the demo needs, over urllib in a worker thread."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # The server is local or named explicitly: never go through a proxy.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self._call, method, path, body)

    def _call(self, method: str, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            f"{self.base_url}/api/v1{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with self._opener.open(request, timeout=10) as response:
                text = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, exc.read().decode(errors="replace")) from None
        return json.loads(text) if text else None


async def prepare(base_url: str, admin_token: str, domain: str = "demo") -> Demo:
    """Create the demo domain unless it exists; give out a wallboard token and user tokens."""
    api = AdminApi(base_url, admin_token)
    path = f"/domains/{domain}"
    try:
        await api.call("GET", path)
        created = False
    except ApiError as exc:
        if exc.status != 404:
            raise
        await _create(api, domain)
        created = True
    wallboard = await api.call("POST", f"{path}/tokens", {"role": "wallboard"})
    people = []
    for user in await api.call("GET", f"{path}/users"):
        model = user["license"]["model"]
        if model != "none":
            grant = await api.call("POST", f"{path}/users/{user['id']}/tokens")
            people.append(Person(user["name"], grant["token"], model))
    return Demo(created, wallboard["token"], people)


async def _create(api: AdminApi, domain: str) -> None:
    await api.call("POST", "/domains", {"id": domain, **DOMAIN})
    path = f"/domains/{domain}"
    for pool in POOLS:
        await api.call("POST", f"{path}/pools", pool)
    users = [(name, {"model": "named"}) for name in NAMED_USERS] + [
        (name, {"model": "seat", "pool": pool})
        for pool, names in SEAT_USERS.items()
        for name in names
    ]
    for name, license in users:
        plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        email = plain.lower().removeprefix("dr. ").replace(" ", ".") + "@demo.example"
        await api.call("POST", f"{path}/users", {"email": email, "name": name, "license": license})


async def simulate(base_url: str, people: list[Person], stop: asyncio.Event) -> None:
    """Run every person until ``stop`` is set; they log out before this returns."""
    ws_url = base_url.replace("http", "ws", 1).rstrip("/") + "/ws/device"
    rng = random.Random()
    async with asyncio.TaskGroup() as group:
        for person in people:
            for n, kind in enumerate(_kinds(person, rng)):
                device = {"id": f"demo-{uuid.uuid4().hex[:12]}", "kind": kind}
                # A person takes calls on one device; the others just stay connected.
                sim = Simulated(ws_url, person, device, random.Random(rng.random()), stop, n == 0)
                group.create_task(sim.run())


def _kinds(person: Person, rng: random.Random) -> list[str]:
    """The devices a person uses: one for a seat user, one to three for a named user."""
    if person.model == "seat":
        return [rng.choice(SEAT_KINDS)]
    return rng.sample(NAMED_KINDS, rng.randint(1, 3))


class Simulated:
    """One person on one device, logging in and out until ``stop`` is set."""

    def __init__(
        self,
        ws_url: str,
        person: Person,
        device: dict[str, str],
        rng: random.Random,
        stop: asyncio.Event,
        takes_calls: bool = True,
    ) -> None:
        self.ws_url = ws_url
        self.person = person
        self.device = device
        self.rng = rng
        self.stop = stop
        self.takes_calls = takes_calls

    async def run(self) -> None:
        pause = FIRST_LOGIN
        while not await self._wait(self._draw(pause)):
            pause = OFF_DUTY
            try:
                await self._visit()
            except (OSError, TimeoutError, WebSocketException) as exc:
                logger.info("%s: connection failed (%s)", self.person.name, exc)
                pause = RETRY_AFTER_ERROR

    async def _visit(self) -> None:
        """One login: a shift of calls, then logout. A refused login just leaves."""
        async with connect(self.ws_url, proxy=None, open_timeout=10, close_timeout=2) as ws:
            hello = {"type": "hello", "token": self.person.token, "device": self.device}
            await ws.send(json.dumps(hello))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if answer["type"] != "welcome":
                logger.info("%s: refused (%s)", self.person.name, answer.get("code"))
                return
            logger.info("%s: logged in on %s", self.person.name, self.device["kind"])
            keeper = asyncio.create_task(self._keep_alive(ws, answer["heartbeat_interval"]))
            try:
                await self._shift(ws)
                await ws.send(json.dumps({"type": "logout"}))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ws.wait_closed(), LOGOUT_TIMEOUT)
                logger.info("%s: logged out", self.person.name)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketException):
                    await keeper

    async def _shift(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._draw(ON_DUTY)
        if not self.takes_calls:
            await self._wait(end - loop.time())
            return
        while loop.time() < end and not await self._wait(self._draw(BETWEEN_CALLS)):
            call_id = uuid.uuid4().hex
            await ws.send(json.dumps({"type": "call_start", "call_id": call_id}))
            await self._wait(self._draw(CALL))
            await ws.send(json.dumps({"type": "call_end", "call_id": call_id}))

    @staticmethod
    async def _keep_alive(ws: ClientConnection, interval: float) -> None:
        """Send heartbeats, reading meanwhile what the server sends so it never backs up."""
        loop = asyncio.get_running_loop()
        beat = loop.time() + interval
        while True:
            try:
                await asyncio.wait_for(ws.recv(), max(0.0, beat - loop.time()))
            except TimeoutError:
                await ws.send(json.dumps({"type": "heartbeat"}))
                beat = loop.time() + interval

    async def _wait(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stopped; true if stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    def _draw(self, bounds: tuple[float, float]) -> float:
        return self.rng.uniform(*bounds)


async def run(
    base_url: str,
    admin_token: str,
    stop: asyncio.Event,
    domain: str = "demo",
    say: Callable[[str], None] = print,
) -> None:
    """Prepare the domain, tell where its wallboard is, and simulate until ``stop``."""
    demo = await prepare(base_url, admin_token, domain)
    if demo.created:
        pools = " and ".join(f"{p['name']} ({p['seats']} seats)" for p in POOLS)
        say(f"Demo: created domain {domain!r} with pools {pools}.")
    say(f"Wallboard: {base_url.rstrip('/')}/#token={demo.wallboard_token}")
    await simulate(base_url, demo.people, stop)
