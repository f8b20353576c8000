"""What the API's description promises at its edges, over HTTP to a real server:
the console's page, the domain list, errors for paths and methods the API
lacks, and requests checked by the same types the document shows."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate
from server.client import Harness, ok, refused

from presence.web.api import DOCUMENT

API = "/api/v1"


async def test_the_console_is_served_at_admin(harness: Harness) -> None:
    async with httpx.AsyncClient(base_url=harness.server.base_url) as web:
        page = await web.get("/admin")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "/admin/" in page.text  # its files, by absolute path
        assert (await web.get("/admin/app.js")).status_code == 200


async def test_only_the_server_admin_lists_the_domains(harness: Harness) -> None:
    domain = await harness.new_domain()
    listed = ok(await harness.admin.get(f"{API}/domains"))
    assert await domain.get() in listed
    assert [d["id"] for d in listed] == sorted(d["id"] for d in listed)
    admin = harness.api(await domain.token("admin"))
    refused(await admin.get(f"{API}/domains"), 403, "forbidden")
    refused(await harness.api(None).get(f"{API}/domains"), 401, "unauthorized")


async def test_paths_and_methods_the_api_lacks_are_json_errors(harness: Harness) -> None:
    refused(await harness.admin.get(f"{API}/nothing-here"), 404, "not_found")
    answer = await harness.admin.request("PUT", f"{API}/domains")
    refused(answer, 405, "method_not_allowed")
    assert set(answer.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_the_document_is_public_valid_and_describes_every_route(harness: Harness) -> None:
    async with httpx.AsyncClient(base_url=harness.server.base_url) as web:
        served = ok(await web.get(f"{API}/openapi.json"))
    assert served == DOCUMENT
    validate(served)  # against the OpenAPI 3.1 specification's own schema
    assert served["openapi"] == "3.1.0"
    operations = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    assert ("GET", f"{API}/domains/{{domain}}/usage/series") in operations
    assert ("POST", f"{API}/domains/{{domain}}/webhooks") in operations
    assert ("PUT", f"{API}/domains/{{domain}}/identity") in operations
    assert len(operations) == 29
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            assert {"400", "401", "403", "404", "429", "503"} <= set(op["responses"]), (
                path,
                method,
            )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "desk", "name": "Desk", "seats": "3"}, "seats"),  # a string is not a number
        ({"id": "desk", "name": "Desk", "seats": True}, "seats"),
        ({"id": "desk", "name": "Desk", "seats": 2.5}, "seats"),
        ({"id": "desk", "name": "Desk", "seats": 3, "idle_logoff_s": None}, "idle_logoff_s"),
        ({"id": "desk", "name": " \u2003 ", "seats": 3}, "name"),
        ({"id": "desk", "name": "Desk", "seats": 3, "sets": 3}, "sets"),
        ({"id": "Desk", "name": "Desk", "seats": 3}, "id"),
        ({"id": "desk", "name": "Desk", "seats": 3, "alert_interval_s": 0}, "alert_interval_s"),
        (
            {"id": "desk", "name": "Desk", "seats": 3, "alert_threshold_pct": 101},
            "alert_threshold_pct",
        ),
    ],
)
async def test_a_body_that_does_not_fit_names_its_field_and_changes_nothing(
    harness: Harness, body: dict[str, object], field: str
) -> None:
    domain = await harness.new_domain()
    refused(await harness.admin.post(domain.path("pools"), body), 400, "bad_request", field)
    assert await domain.pools() == {}


async def test_a_whole_number_written_with_a_zero_fraction_is_a_whole_number(
    harness: Harness,
) -> None:
    domain = await harness.new_domain()
    body = {"id": "desk", "name": "  Desk ", "seats": 3.0}
    assert ok(await harness.admin.post(domain.path("pools"), body), 201) == {
        "id": "desk", "name": "Desk", "seats": 3, "idle_logoff_s": 0, "occupied": 0,
        "alert_interval_s": 300, "alert_threshold_pct": None,
    }  # fmt: skip
