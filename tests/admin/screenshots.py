"""The console's screenshots in docs/: `python -m tests.admin` writes
docs/admin-users.png and docs/admin-usage.png at 1280x800 from the demo of
`demo.py` (a week of history, devices live now) on a server of its own."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from playwright.async_api import expect
from server.client import Harness
from servers import ServerProcess

from .console import DESKTOP, SHOWN, Console, open_browser
from .demo import DOMAIN, go_live, seed

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def take(out: Path, workdir: Path) -> list[Path]:
    """Run the demo in `workdir` and write both screenshots into `out`."""
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'presence.db'}"
    demo = await seed(database, time.time())
    process = ServerProcess(workdir, database=database, lease_ttl=30, heartbeat_interval=10)
    process.start()
    try:
        async with Harness(process.server) as harness, open_browser() as browser:
            await go_live(harness, demo)
            async with Console.opened(browser, process.base_url, DESKTOP) as console:
                page = console.page
                await console.sign_in(process.admin_token, DOMAIN)
                await expect(page.locator("#users-table tbody tr").first).to_be_visible()
                users = out / "admin-users.png"
                await page.screenshot(path=users)

                await console.section("Usage")
                form = page.locator("#usage-form")
                three_days_ago = (datetime.now() - timedelta(days=2)).date().isoformat()
                await form.get_by_label("From").fill(three_days_ago)
                await form.get_by_label("Step").select_option(label="Hour")
                await form.get_by_label("Pool").select_option("helpdesk")
                await form.get_by_role("button", name="Show").click()
                charts = page.locator('#usage-charts .usage-pool[data-pool="helpdesk"] canvas')
                await expect(charts).to_have_count(3, timeout=SHOWN)
                await page.mouse.move(0, 0)
                usage = out / "admin-usage.png"
                await page.screenshot(path=usage)
                return [users, usage]
    finally:
        process.stop()
