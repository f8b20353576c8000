"""A demo domain, and simulated devices that bring it to life.

:func:`prepare` creates the ``demo`` Enterprise domain through the admin HTTP
API if it does not exist, then hands out fresh tokens: one for a wallboard and
one per user. :func:`simulate` then runs one simulated person per user, each a
real device client (:mod:`presence.client`): seat users log in, take calls, get
refused when their pool is full and log out; named users come and go on
several devices. Everything waits human-ish random times (seconds), and every
person logs out when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
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

from .client import Client, LoginRefused, PresenceError

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
    """One person on one device, logging in and out until ``stop`` is set.

    The device is a :class:`presence.client.Client`, which keeps each login
    through lost connections by itself.
    """

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
            pause = await self._visit()

    async def _visit(self) -> tuple[float, float]:
        """One login: a shift of calls, then logout. A refused login just leaves.
        Returns the bounds of the pause before the next."""
        client = Client(
            self.ws_url,
            token=self.person.token,
            device_id=self.device["id"],
            kind=self.device["kind"],
            proxy=None,  # the server is local or named explicitly
        )
        try:
            await client.start()
        except LoginRefused as exc:
            logger.info("%s: refused (%s)", self.person.name, exc.code)
            return OFF_DUTY
        except PresenceError as exc:
            logger.info("%s: connection failed (%s)", self.person.name, exc)
            return RETRY_AFTER_ERROR
        logger.info("%s: logged in on %s", self.person.name, self.device["kind"])
        try:
            await self._shift(client)
        finally:
            await client.stop()
        logger.info("%s: logged out", self.person.name)
        return OFF_DUTY

    async def _shift(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + self._draw(ON_DUTY)
        if not self.takes_calls:
            await self._wait(end - loop.time(), client)
            return
        while loop.time() < end and not await self._wait(self._draw(BETWEEN_CALLS), client):
            try:
                async with client.call(uuid.uuid4().hex):
                    await self._wait(self._draw(CALL), client)
            except PresenceError as exc:  # reconnecting, say
                logger.info("%s: no call (%s)", self.person.name, exc)

    async def _wait(self, seconds: float, client: Client | None = None) -> bool:
        """Wait ``seconds``, or until stopped or ``client`` stops; true if either did."""
        waits: set[asyncio.Future[object]] = {asyncio.ensure_future(self.stop.wait())}
        if client is not None:
            waits.add(asyncio.ensure_future(client.wait_stopped()))
        first = asyncio.FIRST_COMPLETED
        done, pending = await asyncio.wait(waits, timeout=seconds, return_when=first)
        for wait in pending:
            wait.cancel()
        return bool(done)

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
