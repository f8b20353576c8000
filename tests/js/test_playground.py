"""The device playground (/client/) in real headless Chromium, against a real
server process: the JavaScript client in a browser, driven through the page.

Each test fills the form, clicks, and waits, bounded, for the page to show
what the server did (Chromium as `tests/browser.py` launches it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from browser import CHROMIUM_ARGS, chromium
from playwright.async_api import Locator, Page, Route, async_playwright, expect
from server.client import Domain, Harness, Member, Message, ok
from servers import ServerProcess

#: Scripts, styles and connections of the page's own origin only ('self' takes in
#: its ws:// too); the icon is a data: URL.
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src data:"
#: ms for the page to show what happens at once.
SHOWN = 5_000
#: ms for what takes a backoff and a restart.
RECONNECT = 15_000


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium(), headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(viewport={"width": 1600, "height": 1000})
        opened = await context.new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda error: errors.append(str(error)))
        yield opened
        await browser.close()
    assert not errors, f"errors in the page: {errors}"


async def log_in(page: Page, process: ServerProcess, member: Member, device_id: str) -> None:
    """Open the playground, fill the form for `member` and click Start."""
    await page.goto(f"{process.base_url}/client/")
    await expect(page.locator("#url")).to_have_value(process.ws_url)
    await page.fill("#token", member.token)
    await page.fill("#device-id", device_id)
    await page.fill("#device-name", "Playground")
    await page.click("#start")


def log_entry(page: Page, kind: str, text: str = "") -> Locator:
    """The entries of the page's event log of type `kind` that hold `text`."""
    return page.locator(f'#log li[data-type="{kind}"]', has_text=text)


async def seat_pool(harness: Harness, seats: int) -> tuple[Domain, Message, Member]:
    domain = await harness.new_domain()
    pool = await domain.pool(seats, name="Help desk")
    return domain, pool, await domain.seat_user(pool)


async def test_the_module_is_served_as_javascript(restartable: ServerProcess, page: Page) -> None:
    answer = await page.request.get(f"{restartable.base_url}/client/presence-client.js")
    assert answer.ok
    content_type = answer.headers["content-type"].split(";")[0]
    assert content_type in ("text/javascript", "application/javascript"), content_type
    assert "export class PresenceClient" in await answer.text()

    # The page works under a strict Content Security Policy: nothing inline,
    # nothing from elsewhere.
    async def strict(route: Route) -> None:
        served = await route.fetch()
        headers = {**served.headers, "content-security-policy": CSP}
        await route.fulfill(response=served, headers=headers)

    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.extend(re.findall(r"Content.Security.*", message.text)),
    )
    await page.route("**/client/", strict)
    await page.goto(f"{restartable.base_url}/client/")
    await page.fill("#token", "prs_not-a-token")
    await page.click("#start")
    await expect(page.locator("#failure")).to_contain_text("unauthorized", timeout=SHOWN)
    await expect(page.locator("#state")).to_have_text("stopped")
    await expect(page.locator("#start")).to_be_enabled()
    assert violations == [], violations


async def test_start_availability_a_call_and_stop(restartable: ServerProcess, page: Page) -> None:
    async with Harness(restartable.server) as harness:
        domain, pool, member = await seat_pool(harness, seats=2)
        await log_in(page, restartable, member, "pg-desk")
        await expect(page.locator("#state")).to_have_text("holding", timeout=SHOWN)
        await expect(page.locator("#license-model")).to_have_text("seat")
        await expect(page.locator("#license-seat")).to_have_text("1")
        await expect(page.locator("#license-pool")).to_have_text(f"Help desk ({pool['id']})")
        await expect(page.locator("#license-fencing")).to_have_text(re.compile(r"^\d+$"))
        availability = page.locator("#availability")
        await expect(availability).to_have_text("1 of 2 free, 0 in a call, 0 queued")
        entry = await domain.wait_pool(pool, occupied=1)
        assert entry["holders"][0]["device"] == {
            "id": "pg-desk",
            "kind": "browser",
            "name": "Playground",
        }

        # Availability is pushed as another user takes the other seat.
        other = await harness.login(await domain.seat_user(pool))
        await expect(availability).to_have_text("0 of 2 free, 0 in a call, 0 queued", timeout=SHOWN)

        await page.click("#call-start")
        await expect(page.locator("#call")).to_contain_text("In call c-1 since", timeout=SHOWN)
        await expect(availability).to_have_text("0 of 2 free, 1 in a call, 0 queued", timeout=SHOWN)
        await domain.wait_pool(pool, in_call=1)
        await expect(log_entry(page, "call_started", "c-1")).to_have_count(1)
        await page.click("#call-end")
        await expect(page.locator("#call")).to_contain_text("Call c-1 ended", timeout=SHOWN)
        await domain.wait_pool(pool, in_call=0)

        await page.click("#stop")
        await expect(page.locator("#state")).to_have_text("stopped", timeout=SHOWN)
        await expect(log_entry(page, "bye")).to_have_count(1)
        await expect(log_entry(page, "stopped", "by stop()")).to_have_count(1)
        await expect(page.locator("#license-seat")).to_have_text("–")
        await domain.wait_pool(pool, occupied=1)  # freed at once by the logout
        await other.expect("availability", free=1)


async def test_a_seat_reclaimed_through_a_server_restart(
    restartable: ServerProcess, page: Page
) -> None:
    async with Harness(restartable.server) as harness:
        domain, pool, member = await seat_pool(harness, seats=3)
        await log_in(page, restartable, member, "pg-restart")
        await expect(page.locator("#state")).to_have_text("holding", timeout=SHOWN)
        seat = await page.locator("#license-seat").text_content()
        fencing = int(await page.locator("#license-fencing").text_content() or 0)

        await asyncio.to_thread(restartable.kill)
        await expect(log_entry(page, "reconnecting", "attempt 1")).to_have_count(1, timeout=SHOWN)
        await expect(page.locator("#license-seat")).to_have_text("–")
        await asyncio.to_thread(restartable.start)
        reconnected = log_entry(page, "reconnected", "recovered: true")
        await expect(reconnected).to_have_count(1, timeout=RECONNECT)
        await expect(page.locator("#state")).to_have_text("holding")
        await expect(page.locator("#license-seat")).to_have_text(seat or "?")
        assert int(await page.locator("#license-fencing").text_content() or 0) > fencing
        entry = await domain.wait_pool(pool, occupied=1)
        assert [(str(h["seat"]), h["device"]["id"]) for h in entry["holders"]] == [
            (seat, "pg-restart")
        ]
        await page.click("#stop")
        await expect(page.locator("#state")).to_have_text("stopped", timeout=SHOWN)


async def test_released_by_admin_stops_it(restartable: ServerProcess, page: Page) -> None:
    async with Harness(restartable.server) as harness:
        domain, pool, member = await seat_pool(harness, seats=1)
        await log_in(page, restartable, member, "pg-release")
        await expect(page.locator("#state")).to_have_text("holding", timeout=SHOWN)
        lease_id = (await domain.pool_presence(pool))["holders"][0]["lease_id"]
        ok(await harness.admin.delete(domain.path("leases", lease_id)), 204)
        await expect(page.locator("#state")).to_have_text("stopped", timeout=SHOWN)
        ended = log_entry(page, "session_ended", "released_by_admin")
        await expect(ended).to_have_count(1)
        await expect(log_entry(page, "stopped", "released_by_admin")).to_have_count(1)
        await expect(page.locator("#failure")).to_contain_text("Stopped:")
        await expect(page.locator("#start")).to_be_enabled()
        await domain.wait_pool(pool, occupied=0)
        assert await log_entry(page, "reconnecting").count() == 0
