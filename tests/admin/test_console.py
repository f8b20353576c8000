"""The console's other paths: signing in and out, the server admin's domains,
pool settings and refusals, a phone's width, and the keyboard alone."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect
from server.client import Harness, unique_id
from servers import ServerProcess

from .console import PHONE, SHOWN, Console


async def test_sign_in_errors_sit_beside_their_field_and_sign_out_forgets(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    admin_token = await domain.token("admin")
    wallboard_token = await domain.token("wallboard")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await page.goto(f"{console_server.base_url}/admin")
        form = page.locator("#signin-form")
        token, domain_field = (
            form.get_by_label("Token", exact=True),
            form.get_by_label("Domain (for a domain admin token)"),
        )

        await token.fill("prs_not-a-token")
        await form.get_by_role("button", name="Sign in").click()
        await expect(form.locator('[data-error="token"]')).to_contain_text("valid bearer token")
        await expect(token).to_have_attribute("aria-invalid", "true")

        await token.fill(admin_token)  # a domain's token needs its domain
        await form.get_by_role("button", name="Sign in").click()
        await expect(form.locator('[data-error="domain"]')).to_contain_text("enter the domain")
        await domain_field.fill("no-such-domain")
        await form.get_by_role("button", name="Sign in").click()
        await expect(form.locator('[data-error="domain"]')).to_contain_text("no-such-domain")
        await expect(token).to_have_value(admin_token)  # kept as typed

        await token.fill(wallboard_token)
        await domain_field.fill(domain.id)
        await form.get_by_role("button", name="Sign in").click()
        await expect(form.locator('[data-error=""]')).to_contain_text("may not administer")

        await token.fill(admin_token)
        await form.get_by_role("button", name="Sign in").click()
        await expect(page.locator("#users")).to_be_visible(timeout=SHOWN)
        assert page.url.endswith(f"#/{domain.id}/users"), page.url
        # No way to the list of domains, nor to another domain, with this token.
        await expect(page.get_by_role("link", name="All domains")).to_be_hidden()
        await page.reload()
        await expect(page.locator("#users")).to_be_visible(timeout=SHOWN)

        await page.get_by_role("button", name="Sign out").click()
        await expect(form).to_be_visible()
        await expect(form.locator('[data-error=""]')).to_contain_text("Signed out")
        assert await console.evaluate("() => sessionStorage.length") == 0
        await page.reload()
        await expect(form).to_be_visible()


async def test_the_server_admin_lists_creates_and_changes_domains(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    taken = await api.new_domain(named_licenses=3, name="Taken Co")
    await taken.named_user()
    await taken.named_user()
    new_id = unique_id("new")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(console_server.admin_token)
        await expect(page.locator("#who")).to_have_text("Server admin")
        table = page.locator("#domains-table")
        await expect(table.locator(f'tr[data-domain="{taken.id}"]')).to_contain_text("Taken Co")

        await page.get_by_role("button", name="New domain").click()
        dialog = console.dialog()
        await dialog.get_by_label("Id", exact=True).fill(taken.id)
        await dialog.get_by_label("Name", exact=True).fill("Second")
        await dialog.get_by_role("button", name="Create domain").click()
        await expect(dialog.locator('[data-error="id"]')).to_contain_text("exists already")
        await dialog.get_by_label("Id", exact=True).fill(new_id)
        await dialog.get_by_label("Plan", exact=True).select_option("business")
        await dialog.get_by_label("Named licenses", exact=True).fill("25")
        await dialog.get_by_role("button", name="Create domain").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        row = table.locator(f'tr[data-domain="{new_id}"]')
        await expect(row).to_contain_text("business")
        assert (await api.admin.get(f"/api/v1/domains/{new_id}")).json()["named_licenses"] == 25

        # Fewer named licenses than are in use: refused beside the field, nothing changed.
        search = page.locator("#domains-search")
        await search.fill("taken co")
        await expect(table.locator("tbody tr")).to_have_count(1)
        await table.get_by_role("button", name="Edit Taken Co").click()
        await dialog.get_by_label("Named licenses", exact=True).fill("1")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog.locator('[data-error="named_licenses"]')).to_have_attribute(
            "data-code", "license_limit", timeout=SHOWN
        )
        assert (await taken.get())["named_licenses"] == 3
        await dialog.get_by_label("Named licenses", exact=True).fill("4")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        assert (await taken.get())["named_licenses"] == 4

        # Managing one: its sections, with its licenses above them.
        await table.get_by_role("link", name="Manage Taken Co").click()
        await expect(page.locator("#sum-named")).to_have_text("2 of 4 used · 2 left", timeout=SHOWN)
        await expect(page.locator("#users-table tbody tr")).to_have_count(2)
        await page.get_by_role("button", name="Edit plan and licenses").click()
        await dialog.get_by_label("Plan", exact=True).select_option("standard")
        await dialog.get_by_label("Seat licenses", exact=True).fill("0")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        await expect(page.locator("#sum-plan")).to_have_text("Standard")
        await page.get_by_role("link", name="All domains").click()
        await expect(table.locator(f'tr[data-domain="{taken.id}"]')).to_contain_text("standard")
        await search.fill("")
        await expect(row).to_be_visible()


async def test_pool_settings_resize_rename_and_refusals(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain(seat_licenses=4)
    pool = await domain.pool(2, name="Help desk")
    member = await domain.seat_user(pool, name="Katherine Johnson")
    token = await domain.token("admin")
    async with Console.opened(browser, console_server.base_url) as console:
        await console.sign_in(token, domain.id)
        pools = await console.section("Pools")
        card = pools.locator(f'.pool[data-pool="{pool["id"]}"]')
        # Alert settings appear only when the server's pools carry them.
        has_alerts = "alert_interval_s" in pool
        await expect(card.locator(".pool-facts")).to_have_text(
            "2 seats · 1 member · no idle log-off"
            + (" · near-capacity alert off" if has_alerts else "")
        )
        await card.get_by_role("button", name="Settings of pool Help desk").click()
        dialog = console.dialog()
        await expect(dialog.get_by_label("Alert interval (s)")).to_have_count(int(has_alerts))

        await dialog.get_by_label("Seats", exact=True).fill("9")
        await dialog.get_by_role("button", name="Save").click()
        refusal = dialog.locator('[data-error="seats"]')
        await expect(refusal).to_have_attribute("data-code", "seats_exceed_licenses", timeout=SHOWN)
        assert (await domain.pools())[pool["id"]]["seats"] == 2

        await dialog.get_by_label("Seats", exact=True).fill("3")
        await dialog.get_by_label("Name", exact=True).fill("Front desk")
        await dialog.get_by_label("Idle log-off (seconds, 0 = off)").fill("900")
        if has_alerts:
            await dialog.get_by_label("Near-capacity alert at (%)").fill("80")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        changed = (await domain.pools())[pool["id"]]
        assert (changed["name"], changed["seats"], changed["idle_logoff_s"]) == (
            "Front desk",
            3,
            900,
        )
        assert changed.get("alert_threshold_pct") == (80 if has_alerts else None)
        await expect(card.locator(".seat-tile")).to_have_count(3, timeout=SHOWN)
        await expect(card.locator(".pool-facts")).to_contain_text("idle log-off after 15:00")
        if has_alerts:
            await expect(card.locator(".pool-facts")).to_contain_text("alert at 80%")

        # A pool with users cannot go.
        await card.get_by_role("button", name="Delete pool Front desk").click()
        await console.confirm("Delete pool")
        await expect(card.locator(".form-error")).to_have_attribute("data-code", "pool_not_empty")
        await expect(card.locator(".form-error")).to_contain_text("move them first")
        assert pool["id"] in await domain.pools()
        ok_delete = await domain.api.delete(domain.path("users", member.id))
        assert ok_delete.status_code == 204
        await card.get_by_role("button", name="Delete pool Front desk").click()
        await console.confirm("Delete pool")
        await expect(card).to_have_count(0, timeout=SHOWN)
        assert pool["id"] not in await domain.pools()


async def test_a_phone_shows_every_section_without_sideways_scrolling(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    pool = await domain.pool(3, name="Help desk")
    for _ in range(3):
        await domain.seat_user(pool)
    await api.login(await domain.seat_user(pool, name="Mary Jackson"))
    async with Console.opened(browser, console_server.base_url, PHONE) as console:
        page = console.page
        await console.sign_in(console_server.admin_token, domain.id)
        for name in ("Users", "Pools", "Tokens", "Usage", "Events", "Webhooks"):
            await console.section(name)
            if name == "Pools":
                await expect(page.locator(".seat-tile .holder")).to_have_text("Mary Jackson")
            if name == "Usage":
                await expect(page.locator("#usage-charts canvas").first).to_be_visible(
                    timeout=SHOWN
                )
            wide = await console.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert wide <= 0, f"{name} is {wide} px wider than a 390 px phone"


async def test_a_license_change_by_keyboard_alone(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    pool = await domain.pool(2, name="Help desk")
    member = await domain.named_user(name="Dorothy Vaughan")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(console_server.admin_token, domain.id)
        await page.locator("#users-search").focus()
        await page.keyboard.type("dorothy")
        await page.keyboard.press("Tab")  # the license filter
        await page.keyboard.press("Tab")  # New user
        await page.keyboard.press("Tab")  # the row's License… button
        await expect(
            page.get_by_role("button", name="Change the license of Dorothy Vaughan")
        ).to_be_focused()
        await page.keyboard.press("Enter")
        dialog = console.dialog()
        await expect(dialog).to_be_visible()
        named = dialog.locator('input[value="named"]')
        await expect(named).to_be_focused()
        await page.keyboard.press("ArrowDown")  # the seat choice, its pool chosen
        await expect(dialog.locator('input[value="seat"]')).to_be_checked()
        await expect(dialog.locator(".impact")).to_contain_text("Help desk: 0 members")
        await page.keyboard.press("Escape")  # nothing saved
        await expect(dialog).to_be_hidden()
        assert (await domain.users())[member.id]["license"] == {"model": "named"}

        await page.keyboard.press("Enter")  # focus is back on the button
        await expect(dialog).to_be_visible()
        await page.keyboard.press("ArrowDown")
        await page.keyboard.press("Enter")  # submits the form
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        row = console.user_row("Dorothy Vaughan")
        await expect(row.locator("td.license")).to_have_text("Pool: Help desk")
        changed = (await domain.users())[member.id]["license"]
        assert changed == {"model": "seat", "pool": pool["id"]}
        assert re.fullmatch(
            r"Dorothy Vaughan: Pool: Help desk\.", await page.locator("#status").inner_text()
        )
