"""The admin console (`/admin`) in real headless Chromium, as its tests drive it.

`open_browser` launches Debian's Chromium through Playwright; `Console` opens
a page on the console under a strict Content Security Policy (added to the
page's answer, as a deployment would send it), records every error and CSP
violation the page reports, and offers the few steps every test takes: sign
in, open a section, find a row, confirm a dialog. Waiting is always for a
locator or an event, bounded; nothing sleeps a fixed time.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from browser import CHROMIUM_ARGS, chromium
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Route,
    async_playwright,
    expect,
)

#: Scripts, styles and connections of the page's own origin only ('self'
#: takes in its ws:// too); the icon is a data: URL. No inline script or
#: style, no eval.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: ms for the page to show what the server did at once.
SHOWN = 5_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def open_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Console:
    """One browser tab on the console of the server at `base_url`."""

    def __init__(self, context: BrowserContext, page: Page, base_url: str) -> None:
        self.context = context
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        self.violations: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    @classmethod
    @asynccontextmanager
    async def opened(
        cls, browser: Browser, base_url: str, viewport: dict[str, int] | None = None
    ) -> AsyncIterator[Console]:
        context = await browser.new_context(viewport=viewport or DESKTOP, accept_downloads=True)
        page = await context.new_page()
        console = cls(context, page, base_url)
        await page.route(re.compile(r"/admin/?$"), _strict)
        try:
            yield console
        finally:
            await context.close()
        assert not console.errors, f"errors in the page: {console.errors}"
        assert not console.violations, f"CSP violations: {console.violations}"

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.violations.append(message.text)

    # Signing in and moving around.

    async def sign_in(self, token: str, domain: str | None = None) -> None:
        """Open `/admin#token=...` (with `&domain=`) and wait for the first section."""
        fragment = f"token={quote(token)}" + (f"&domain={quote(domain)}" if domain else "")
        await self.page.goto(f"{self.base_url}/admin#{fragment}")
        if domain:
            await expect(self.page.locator("#users-count")).to_contain_text(
                re.compile(r"of \d|No user"), timeout=SHOWN
            )
        else:
            await expect(self.page.locator("#domains")).to_be_visible(timeout=SHOWN)
        assert "token" not in self.page.url, self.page.url

    async def section(self, name: str) -> Locator:
        """Click the tab named `name` (Users, Identity provider, ...) and return its section."""
        tab = self.page.get_by_role("navigation", name="Sections").get_by_role(
            "link", name=name, exact=True
        )
        await tab.click()
        section = self.page.locator(f"#{await tab.get_attribute('data-section')}")
        await expect(section).to_be_visible()
        return section

    # What every section has.

    def user_row(self, name: str) -> Locator:
        return self.page.locator(
            "#users-table tbody tr", has=self.page.get_by_text(name, exact=True)
        )

    def dialog(self) -> Locator:
        return self.page.locator("#editor")

    async def confirm(self, action: str) -> None:
        """Confirm the open confirmation dialog with its `action` button."""
        dialog = self.page.locator("#confirm")
        await expect(dialog).to_be_visible()
        await dialog.get_by_role("button", name=action, exact=True).click()
        await expect(dialog).to_be_hidden()

    async def evaluate(self, script: str, arg: Any = None) -> Any:
        return await self.page.evaluate(script, arg)


async def _strict(route: Route) -> None:
    served = await route.fetch()
    headers = {**served.headers, "content-security-policy": CSP}
    await route.fulfill(response=served, headers=headers)
