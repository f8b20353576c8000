"""Schemathesis, a property-based API tester, against a real server from its OpenAPI document.

For every operation of `GET /api/v1/openapi.json`, schemathesis generates
requests that fit the document and requests that do not, sends them to a
real server process over HTTP, and checks every answer: no 5xx, the status
documented, the body conforming to its schema, schema-valid requests
accepted (or refused by a licensing rule or a missing resource), and
invalid ones refused. On top of its checks, every refused request must
leave the state exactly as it was (every domain, pool, user, token,
webhook, identity provider, lease and event, before and after).

(The server's SQLite file is its own while it runs, so the state is read
through the API as the server admin: every domain, and all of `acme`.)

Path ids are steered towards things that exist (the domain `acme`, its
pools, users and tokens), so that requests reach the rules instead of
stopping at `404`. The examples are derandomized: the suite runs the same
cases every time. `SCHEMATHESIS_EXAMPLES=500 python -m pytest tests/api`
runs a longer campaign.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from servers import ServerProcess

from presence.web.api import DOCUMENT

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
DOMAIN = "acme"
STATE = (
    "/pools", "/users", "/tokens", "/webhooks", "/identity", "/presence",
    f"/events?before={2**62}&limit=1000",
)  # fmt: skip

schema = schemathesis.openapi.from_dict(DOCUMENT)
# Valid requests may still be refused by the licensing rules (409) or name a
# pool, user, token or lease that does not exist (404); never with 400.
schema.config.checks.positive_data_acceptance.expected_statuses = ["2xx", "404", "409"]


@dataclass
class World:
    """The server, its database file, and ids that exist in it."""

    process: ServerProcess
    api: httpx.Client  # the server admin's
    session: requests.Session  # schemathesis', kept: a new one per request costs 40 ms
    ids: dict[str, list[str]] = field(default_factory=dict)
    tried: list[tuple[str, str]] = field(default_factory=list)  # (operation, mode)
    last_state: list[Any] = field(default_factory=list)  # after the latest request

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.process.admin_token}"}

    def refresh(self) -> None:
        """Learn the ids that exist now."""
        base = f"/api/v1/domains/{DOMAIN}"
        self.ids = {
            "domain": [DOMAIN],
            "pool": [p["id"] for p in self.api.get(f"{base}/pools").json()],
            "user": [u["id"] for u in self.api.get(f"{base}/users").json()],
            "token": [t["id"] for t in self.api.get(f"{base}/tokens").json()],
            "webhook": [w["id"] for w in self.api.get(f"{base}/webhooks").json()],
        }

    def steer(self, case: Any) -> None:
        """Most path ids of a valid request become ones that exist; the rest
        stay as generated (a request meant to be invalid stays invalid)."""
        if negative(case):
            return
        for name, value in (case.path_parameters or {}).items():
            case.path_parameters[name] = self.known("pool" if name == "pool" else name, value)
        license = case.body.get("license", case.body) if isinstance(case.body, dict) else None
        if isinstance(license, dict) and isinstance(license.get("pool"), str):
            license["pool"] = self.known("pool", license["pool"])

    def known(self, kind: str, value: Any) -> Any:
        """Three times in four, an id of ``kind`` that exists instead of ``value``."""
        known = self.ids.get(kind)
        if not known or not isinstance(value, str) or not zlib.crc32(value.encode()) % 4:
            return value
        return known[zlib.crc32(value.encode()) % len(known)]

    def state(self) -> list[Any]:
        """What the server admin reads: every domain, and all that `acme` holds
        (where requests are steered to)."""
        with httpx.Client(base_url=self.process.base_url, headers=self.headers) as api:
            base = f"/api/v1/domains/{DOMAIN}"
            return [
                api.get(path).json() for path in ["/api/v1/domains", *(base + p for p in STATE)]
            ]


#: Refusals of requests that fit the document, for what a schema cannot say, by field.
UNFORESEEABLE = {
    "license.pool": "a seat license naming a pool that does not exist",
    "provision.pool": "an identity's seat provision naming a pool that does not exist",
    "step": "a usage series of more than 2,000 points",
    "url": "a webhook URL whose host does not resolve, or not to public addresses only",
    "issuer": "an identity provider's issuer that is not an https:// URL of a public host",
}


@schemathesis.check
def valid_requests_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' `positive_data_acceptance`, but for the refusals of
    :data:`UNFORESEEABLE`."""
    if response.status_code == 400 and response.json()["error"].get("field") in UNFORESEEABLE:
        return None
    return positive_data_acceptance(ctx, response, case)


def negative(case: Any) -> bool:
    """Whether schemathesis meant the request not to fit the document."""
    return case.meta is not None and bool(case.meta.generation.mode.is_negative)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ServerProcess(tmp_path_factory.mktemp("schemathesis"), lease_ttl=30) as process:
        headers = {"Authorization": f"Bearer {process.admin_token}"}
        with httpx.Client(base_url=process.base_url, headers=headers) as api:
            world = World(process, api, requests.Session())
            seed(api)
            world.refresh()
            world.last_state = world.state()
            yield world
    modes = Counter(mode for _, mode in world.tried)
    print(
        f"\nschemathesis: {len(world.tried)} requests over "
        f"{len({op for op, _ in world.tried})} operations "
        f"({modes['positive']} fitting the document, {modes['negative']} not)"
    )


def seed(api: httpx.Client) -> None:
    """A domain with pools, users of each license and tokens, for requests to find."""
    base = f"/api/v1/domains/{DOMAIN}"
    domain = {"id": DOMAIN, "name": "Acme", "plan": "enterprise"}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/domains", {**domain, "named_licenses": 5, "seat_licenses": 6}),
        (f"{base}/pools", {"id": "desk", "name": "Help desk", "seats": 3}),
        (f"{base}/pools", {"id": "field", "name": "Field", "seats": 2}),
        (f"{base}/pools", {"id": "spare", "name": "Spare", "seats": 1}),
        (f"{base}/users", user("a", "Ann", {"model": "named"})),
        (f"{base}/users", user("b", "Bo", {"model": "seat", "pool": "desk"})),
        (f"{base}/users", user("c", "Cy", {"model": "none"})),
        (f"{base}/tokens", {"role": "wallboard", "label": "Lobby"}),
        (f"{base}/webhooks", {"url": "https://93.184.215.14/hook", "events": ["pool_full"]}),
    ]  # fmt: skip
    for path, body in calls:
        response = api.post(path, json=body)
        assert response.status_code == 201, response.text


def user(mailbox: str, name: str, license: dict[str, str]) -> dict[str, Any]:
    return {"email": f"{mailbox}@acme.test", "name": name, "license": license}


def test_the_served_document_is_the_one_tested(world: World) -> None:
    response = httpx.get(f"{world.process.base_url}/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert response.json()["openapi"].startswith("3.1")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_conforms_and_every_refusal_changes_nothing(case: Any, world: World) -> None:
    world.steer(case)
    world.tried.append((case.operation.label, "negative" if negative(case) else "positive"))
    # A request meant to be invalid may carry a mangled Authorization of its own.
    mangled = negative(case) and "Authorization" in (case.headers or {})
    headers = {} if mangled else world.headers
    response = case.call(base_url=world.process.base_url, headers=headers, session=world.session)
    # Nothing else changes the state meanwhile: the state after the previous
    # request is the state before this one.
    before, world.last_state = world.last_state, world.state()
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[valid_requests_accepted],
    )
    if response.status_code >= 400:
        assert world.last_state == before, f"{case.method} {case.formatted_path} changed the state"
    else:
        world.refresh()
