"""The console's Webhooks section, and the wallboard's words for the alert events.

Endpoints are made, changed, disabled, enabled again and deleted in the
console of a server that may deliver to 127.0.0.1
(`PRESENCE_WEBHOOK_ALLOW_PRIVATE=1`), to a receiver of the test's own (an
asyncio HTTP server on 127.0.0.1 answering 200) or to a port nobody listens
on. Every step is checked where it lands: through the API, at the receiver
(whose requests are verified with the secret the console showed) and in the
page. Refusals of a URL are checked on the shared console server, which may
deliver to public addresses only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from server.client import Domain, Harness, Message, ok
from servers import ServerProcess, free_port
from standardwebhooks.webhooks import Webhook

from presence.views import EVENT_TYPES

from .console import PHONE, SHOWN, Console

#: Seconds for a delivery (or an alert) to happen, on a loaded machine.
WAIT = 10.0


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that may deliver to 127.0.0.1 and over http://."""
    env = {"PRESENCE_WEBHOOK_ALLOW_PRIVATE": "1", "PRESENCE_WEBHOOK_TIMEOUT": "2"}
    with ServerProcess(tmp_path_factory.mktemp("hooks"), lease_ttl=3, env=env) as process:
        yield process


@pytest.fixture
async def hook_api(hook_server: ServerProcess) -> AsyncIterator[Harness]:
    async with Harness(hook_server.server) as harness:
        yield harness


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> Message:
        parsed: Message = json.loads(self.body)
        return parsed


class Receiver:
    """An HTTP endpoint on 127.0.0.1: it answers 200 to every request and keeps them."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _, path, _ = head[0].split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            async with self._arrived:
                self.requests.append(Request(path, headers, body))
                self._arrived.notify_all()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def got(self, path: str, event_id: int) -> list[Request]:
        return [r for r in self.requests if r.path == path and r.payload["data"]["id"] == event_id]

    async def request(self, path: str, event_type: str) -> Request:
        """Wait for the first request to `path` of an event of `event_type`."""

        def found() -> Request | None:
            return next(
                (r for r in self.requests if r.path == path and r.payload["type"] == event_type),
                None,
            )

        try:
            async with self._arrived:
                await asyncio.wait_for(self._arrived.wait_for(lambda: found() is not None), WAIT)
        except TimeoutError:
            raise AssertionError(f"no {event_type} at {path} within {WAIT} s") from None
        request = found()
        assert request is not None
        return request


async def hooks(domain: Domain) -> dict[str, Message]:
    """The domain's endpoints as listed, by URL."""
    listed = ok(await domain.api.get(domain.path("webhooks")))
    return {hook["url"]: hook for hook in listed}


async def recorded(domain: Domain, hook_id: str, event_id: int) -> list[Message]:
    """Wait until the endpoint's delivery log holds an attempt at `event_id`; the log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        log = ok(await domain.api.get(domain.path("webhooks", hook_id, "deliveries")))
        if any(d["event_id"] == event_id for d in log):
            return log
        assert loop.time() < deadline, f"no delivery of event {event_id} logged: {log}"
        await asyncio.sleep(0.05)


async def create(
    page: Page, url: str, description: str, types: list[str] | None = None
) -> tuple[str, str]:
    """Create an endpoint in the console; the secret it shows once, and the endpoint's id."""
    form = page.locator("#webhook-form")
    await form.get_by_label("URL", exact=True).fill(url)
    await form.get_by_label("Description", exact=True).fill(description)
    everything = form.get_by_label("All events", exact=True)
    await expect(everything).to_be_checked()  # the default
    if types is not None:
        await everything.uncheck()
        for label in types:
            await form.get_by_label(label, exact=True).check()
    await form.get_by_role("button", name="Create endpoint").click()
    box = page.locator("#webhook-secret-slot .secret-box")
    secret = box.get_by_role("textbox", name="Signing secret")
    await expect(secret).to_have_value(re.compile(r"^whsec_[A-Za-z0-9+/=]+$"), timeout=SHOWN)
    await expect(secret).to_be_focused()
    await expect(box).to_contain_text("shown only now")
    row = page.locator("#webhooks-table tbody tr", has_text=url)
    await expect(row).to_have_count(1)
    # The form is ready for the next one.
    await expect(form.get_by_label("URL", exact=True)).to_have_value("")
    await expect(everything).to_be_checked()
    hook_id = await row.get_attribute("data-webhook")
    assert hook_id
    return await secret.input_value(), hook_id


async def test_endpoints_made_in_the_console_get_the_domains_events(
    browser: Browser, hook_server: ServerProcess, hook_api: Harness
) -> None:
    domain = await hook_api.new_domain()
    member = await domain.named_user(name="Ada Lovelace")
    token = await domain.token("admin")
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    async with Receiver() as receiver, Console.opened(browser, hook_server.base_url) as console:
        page = console.page
        await console.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=hook_server.base_url
        )
        await console.sign_in(token, domain.id)
        section = await console.section("Webhooks")
        assert page.url.endswith(f"#/{domain.id}/webhooks"), page.url
        await expect(section.locator("#webhooks-empty")).to_be_visible()

        # All events to the receiver: the secret shown once, with a copy button.
        main = receiver.url("/main")
        main_secret, main_id = await create(page, main, "Ticketing")
        box = page.locator("#webhook-secret-slot .secret-box")
        await box.get_by_role("button", name="Copy").click()
        await expect(box.locator(".copied")).to_have_text("Copied")
        assert await console.evaluate("() => navigator.clipboard.readText()") == main_secret
        listed = await hooks(domain)
        assert listed[main]["id"] == main_id
        assert "secret" not in listed[main]
        assert (listed[main]["description"], listed[main]["enabled"]) == ("Ticketing", True)
        assert set(listed[main]["events"]) == set(EVENT_TYPES)
        main_row = section.locator(f'tr[data-webhook="{main_id}"]')
        await expect(main_row.locator("td.hook-events")).to_have_text("All events")
        await expect(main_row.locator(".badge")).to_have_text("Enabled")
        await expect(main_row).to_contain_text("Ticketing")
        await box.get_by_role("button", name="Done").click()
        await expect(box).to_have_count(0)

        # Named logins only, to a port nobody listens on.
        dead_secret, dead_id = await create(page, dead, "Nobody home", ["Named login"])
        assert (await hooks(domain))[dead]["events"] == ["named_login"]
        dead_row = section.locator(f'tr[data-webhook="{dead_id}"]')
        await expect(dead_row.locator("td.hook-events")).to_have_text("Named login")

        # Shown this once: not after a reload, not in any answer of the API.
        await page.reload()
        await expect(dead_row).to_be_visible(timeout=SHOWN)
        await expect(page.locator(".secret-box")).to_have_count(0)
        html = await page.content()
        assert main_secret not in html and dead_secret not in html
        assert main_secret not in json.dumps(await hooks(domain))

        # A device's login reaches the receiver, signed with the secret shown; the
        # port nobody listens on gets a failed attempt. Both in the delivery logs.
        device = await hook_api.login(member)
        login = await receiver.request("/main", "named_login")
        Webhook(main_secret).verify(login.body, login.headers)
        login_id = login.payload["data"]["id"]
        assert login.payload["data"]["user_id"] == member.id
        await recorded(domain, main_id, login_id)
        await main_row.get_by_role("button", name="Deliveries to Ticketing").click()
        log = page.locator("#webhook-log")
        await expect(log.locator("#webhook-log-title")).to_have_text("Deliveries to Ticketing")
        await expect(log.locator("#webhook-log-title")).to_be_focused()
        first = log.locator(f'tbody tr[data-event="{login_id}"]')
        await expect(first).to_have_count(1, timeout=SHOWN)
        await expect(first.locator('td[data-label="Attempt"]')).to_have_text("1")
        await expect(first.locator('td[data-label="Status"]')).to_have_text("200")
        await expect(first.locator('td[data-label="Error"]')).to_have_text("—")
        await expect(first.locator('td[data-label="Duration"]')).to_have_text(re.compile(r" ms$"))

        await recorded(domain, dead_id, login_id)
        await dead_row.get_by_role("button", name="Deliveries to Nobody home").click()
        await expect(log.locator("#webhook-log-title")).to_have_text("Deliveries to Nobody home")
        failed = log.locator(f'tbody tr[data-event="{login_id}"][data-attempt="1"]')
        await expect(failed).to_have_count(1, timeout=SHOWN)
        await expect(failed.locator('td[data-label="Status"]')).to_have_text("No answer")
        await expect(failed.locator('td[data-label="Error"]')).to_contain_text("Connection failed")

        # Edit: a refused URL stays in the dialog beside its field, nothing
        # changes; then the receiver, every event, another description. The
        # event it stopped at is delivered there, signed with its own secret.
        await dead_row.get_by_role("button", name="Edit Nobody home").click()
        dialog = console.dialog()
        url_field = dialog.get_by_label("URL", exact=True)
        await expect(url_field).to_have_value(dead)
        await expect(dialog.get_by_label("Named login", exact=True)).to_be_checked()
        await url_field.fill("ftp://127.0.0.1/files")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog.locator('[data-error="url"]')).to_have_text(
            "The URL must start with https://.", timeout=SHOWN
        )
        await expect(url_field).to_have_attribute("aria-invalid", "true")
        await expect(url_field).to_have_value("ftp://127.0.0.1/files")
        assert (await hooks(domain))[dead]["id"] == dead_id
        other = receiver.url("/other")
        await url_field.fill(other)
        await dialog.get_by_label("Description", exact=True).fill("Audit")
        await dialog.get_by_label("All events", exact=True).check()
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        changed = (await hooks(domain))[other]
        assert (changed["id"], changed["description"]) == (dead_id, "Audit")
        assert set(changed["events"]) == set(EVENT_TYPES)
        await expect(dead_row.locator("td.url")).to_have_text(other)
        await expect(dead_row.locator("td.hook-events")).to_have_text("All events")
        # The open log follows the endpoint's new name.
        await expect(log.locator("#webhook-log-title")).to_have_text("Deliveries to Audit")
        resumed = await receiver.request("/other", "named_login")
        assert resumed.payload["data"]["id"] == login_id
        Webhook(dead_secret).verify(resumed.body, resumed.headers)

        # Disabled, the endpoint gets nothing; enabled again, it gets what it missed.
        await main_row.get_by_role("button", name="Disable Ticketing").click()
        await expect(page.locator("#confirm-text")).to_contain_text("enabling it again delivers")
        await console.confirm("Disable endpoint")
        await expect(main_row.locator(".badge")).to_have_text("Disabled", timeout=SHOWN)
        assert (await hooks(domain))[main]["enabled"] is False
        await device.logout()
        logout = await receiver.request("/other", "named_logout")  # delivered elsewhere ...
        logout_id = logout.payload["data"]["id"]
        assert receiver.got("/main", logout_id) == []  # ... but not here
        await main_row.get_by_role("button", name="Enable Ticketing").click()
        await expect(page.locator("#status")).to_contain_text(
            "delivery resumes from where it stopped"
        )
        await expect(main_row.locator(".badge")).to_have_text("Enabled")
        await expect(main_row.get_by_role("button", name="Disable Ticketing")).to_be_focused()
        assert (await hooks(domain))[main]["enabled"] is True
        missed = await receiver.request("/main", "named_logout")
        assert missed.payload["data"]["id"] == logout_id
        Webhook(main_secret).verify(missed.body, missed.headers)

        # The log of the main endpoint, newest first, after a refresh.
        await main_row.get_by_role("button", name="Deliveries to Ticketing").click()
        await recorded(domain, main_id, logout_id)
        async with page.expect_response(re.compile(r"/deliveries\?limit=")) as answer:
            await log.get_by_role("button", name="Refresh").click()
        assert (await answer.value).ok
        rows = log.locator("tbody tr")
        await expect(rows.first).to_have_attribute("data-event", str(logout_id), timeout=SHOWN)
        await expect(rows.nth(1)).to_have_attribute("data-event", str(login_id))

        # At a phone's width: the list and the log as cards, no sideways scrolling.
        await page.set_viewport_size(PHONE)
        await expect(rows.first).to_be_visible()
        wide = await console.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0, f"the webhooks section is {wide} px wider than a 390 px phone"
        await page.set_viewport_size({"width": 1280, "height": 800})

        # Delete: cancelled, nothing happens; confirmed, the endpoint and its open log go.
        await dead_row.get_by_role("button", name="Delete Audit").click()
        await console.confirm("Cancel")
        assert other in await hooks(domain)
        await log.get_by_role("button", name="Close").click()
        await expect(log).to_be_hidden()
        await dead_row.get_by_role("button", name="Deliveries to Audit").click()
        await expect(log).to_be_visible()
        await dead_row.get_by_role("button", name="Delete Audit").click()
        await console.confirm("Delete endpoint")
        await expect(dead_row).to_have_count(0, timeout=SHOWN)
        await expect(log).to_be_hidden()
        assert list(await hooks(domain)) == [main]
        gone = ok(await domain.api.get(domain.path("webhooks", dead_id, "deliveries")), 404)
        assert gone["error"]["code"] == "not_found", gone


async def test_a_refused_url_is_shown_beside_its_field_and_nothing_is_made(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    token = await domain.token("admin")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(token, domain.id)
        await console.section("Webhooks")
        form = page.locator("#webhook-form")
        url = form.get_by_label("URL", exact=True)
        error = form.locator('[data-error="url"]')

        await url.fill("https://127.0.0.1/hooks")
        await form.get_by_label("Description", exact=True).fill("Loopback")
        await form.get_by_label("All events", exact=True).uncheck()
        await form.get_by_label("Pool full", exact=True).check()
        await form.get_by_label("Pool near capacity", exact=True).check()
        await form.get_by_role("button", name="Create endpoint").click()
        await expect(error).to_contain_text("127.0.0.1", timeout=SHOWN)
        await expect(error).to_contain_text("non-public")
        await expect(error).to_have_attribute("data-code", "bad_request")
        await expect(url).to_have_attribute("aria-invalid", "true")
        await expect(url).to_be_focused()
        # The form as it was typed.
        await expect(url).to_have_value("https://127.0.0.1/hooks")
        await expect(form.get_by_label("Description", exact=True)).to_have_value("Loopback")
        await expect(form.get_by_label("All events", exact=True)).not_to_be_checked()
        await expect(form.get_by_label("Pool full", exact=True)).to_be_checked()
        await expect(form.get_by_label("Pool near capacity", exact=True)).to_be_checked()
        await expect(page.locator(".secret-box")).to_have_count(0)
        assert await hooks(domain) == {}

        await url.fill("http://hooks.example.com/presence")
        await form.get_by_role("button", name="Create endpoint").click()
        await expect(error).to_have_text("The URL must start with https://.", timeout=SHOWN)
        assert await hooks(domain) == {}

        # No type at all: said beside the types, before asking the server.
        await form.get_by_label("Pool full", exact=True).uncheck()
        await form.get_by_label("Pool near capacity", exact=True).uncheck()
        await form.get_by_role("button", name="Create endpoint").click()
        await expect(form.locator('[data-error="events"]')).to_contain_text("at least one")
        await expect(error).to_be_empty()
        assert await hooks(domain) == {}
        await expect(page.locator("#webhooks-empty")).to_be_visible()


async def test_the_wallboard_names_every_event_and_shows_pool_alerts(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    pool = await domain.pool(1, name="Help desk")
    changed = await domain.api.patch(
        domain.path("pools", pool["id"]), {"alert_interval_s": 1, "alert_threshold_pct": 100}
    )
    ok(changed)
    holder = await domain.seat_user(pool, name="Grace Hopper")
    turned_away = await domain.seat_user(pool, name="Alan Turing")
    token = await domain.token("wallboard")
    context = await browser.new_context(viewport={"width": 1920, "height": 1080})
    errors: list[str] = []
    try:
        page = await context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        await page.goto(f"{console_server.base_url}/#token={token}")
        await expect(page.locator("#board")).to_be_visible(timeout=SHOWN)

        # Every type the server logs has a label and an icon the page defines.
        known: dict[str, Any] = await page.evaluate(
            """types => Object.fromEntries(types.map(t => [t, EVENTS[t] && {
                label: EVENTS[t][2], icon: Boolean(document.getElementById(`i-${EVENTS[t][1]}`)),
            }]))""",
            EVENT_TYPES,
        )
        missing = [t for t, entry in known.items() if not entry or not entry["icon"]]
        assert not missing, f"the wallboard has no words or no icon for {missing}"
        assert known["webhook_disabled"]["label"] == "Webhook disabled"

        # A full pool refuses a login, stays full, then has a seat again.
        device = await api.login(holder)
        await api.refused_login(turned_away, "seat_occupied")
        feed = page.locator("#feed")
        full = feed.locator('.event[data-type="pool_full"]')
        await expect(full.locator(".event-label")).to_have_text("Pool full", timeout=WAIT * 1000)
        await expect(full.locator(".event-who")).to_have_text("Alan Turing")
        await expect(full.locator(".event-where")).to_have_text("Help desk")
        near = feed.locator('.event[data-type="pool_near_capacity"]')
        await expect(near.locator(".event-label")).to_have_text(
            "Near capacity", timeout=WAIT * 1000
        )
        await expect(near.locator(".event-who")).to_be_empty()  # nobody's
        await expect(near.locator(".event-where")).to_have_text("Help desk")
        await device.logout()
        recovered = feed.locator('.event[data-type="pool_recovered"]')
        await expect(recovered.locator(".event-label")).to_have_text(
            "Pool recovered", timeout=WAIT * 1000
        )
        await expect(recovered.locator(".event-where")).to_have_text("Help desk")
    finally:
        await context.close()
    assert not errors, f"errors in the page: {errors}"
