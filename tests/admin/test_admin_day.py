"""An admin's day in the console, against a real server and real devices.

The admin creates a pool and users, makes user tokens, moves a user from a
named license to the pool while their device is connected, runs into the
named license limit, releases a seat held live, creates and revokes tokens,
and reads usage (chart and CSV) and the event log. Every step is checked where
it lands: on the device, through the API, and on the page.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from typing import Any

from playwright.async_api import Browser, expect
from server.client import Harness, Message, ok, unique_id
from servers import ServerProcess

from .console import SHOWN, Console


async def new_domain(api: Harness, named: int, seats: int) -> tuple[Any, str]:
    """A fresh Enterprise domain and a domain admin token of it."""
    domain = await api.new_domain(named_licenses=named, seat_licenses=seats, name="Acme")
    return domain, await domain.token("admin")


async def create_user(console: Console, name: str, email: str, license: str) -> None:
    """Create a user in the console; `license` is "named", "none" or a pool's id."""
    page = console.page
    await page.get_by_role("button", name="New user").click()
    dialog = console.dialog()
    await dialog.get_by_label("Name", exact=True).fill(name)
    await dialog.get_by_label("E-mail", exact=True).fill(email)
    await pick_license(console, license)
    await dialog.get_by_role("button", name="Create user").click()
    await expect(dialog).to_be_hidden(timeout=SHOWN)
    await expect(console.user_row(name)).to_have_count(1)


async def pick_license(console: Console, license: str) -> None:
    dialog = console.dialog()
    if license in ("named", "none"):
        await dialog.locator(f'input[name="model"][value="{license}"]').check()
    else:
        await dialog.locator('input[name="model"][value="seat"]').check()
        await dialog.get_by_label("Seat pool", exact=True).select_option(license)


async def user_token(console: Console, name: str, label: str) -> str:
    """Make a token for user `name` from their row; the secret the console shows once."""
    await console.user_row(name).get_by_role("button", name=f"New token for {name}").click()
    dialog = console.dialog()
    await dialog.get_by_label("Label", exact=True).fill(label)
    await dialog.get_by_role("button", name="Create token").click()
    secret = dialog.get_by_role("textbox", name="Token")
    await expect(secret).to_have_value(re.compile(r"^prs_"), timeout=SHOWN)
    value = await secret.input_value()
    await dialog.get_by_role("button", name="Done").click()
    await expect(dialog).to_be_hidden()
    return value


async def test_an_admins_day(browser: Browser, console_server: ServerProcess, api: Harness) -> None:
    domain, admin_token = await new_domain(api, named=1, seats=2)
    pool_id = unique_id("help")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(admin_token, domain.id)
        await expect(page.locator("#who")).to_have_text(f"Admin of {domain.id}")
        await expect(page.locator("#sum-named")).to_have_text("0 of 1 used · 1 left")

        # A pool of one seat.
        pools = await console.section("Pools")
        await page.get_by_role("button", name="New pool").click()
        dialog = console.dialog()
        await dialog.get_by_label("Id", exact=True).fill(pool_id)
        await dialog.get_by_label("Name", exact=True).fill("Help desk")
        await dialog.get_by_label("Seats", exact=True).fill("1")
        await dialog.get_by_role("button", name="Create pool").click()
        card = pools.locator(f'.pool[data-pool="{pool_id}"]')
        await expect(card.locator(".seat-tile")).to_have_count(1, timeout=SHOWN)
        await expect(page.locator("#live")).to_have_text("Live")
        assert (await domain.pools())[pool_id]["seats"] == 1

        # Users, and a token for each made from their row.
        await console.section("Users")
        await create_user(console, "Ada Lovelace", "ada@acme.example", "named")
        await create_user(console, "Grace Hopper", "grace@acme.example", pool_id)
        await expect(page.locator("#sum-named")).to_have_text("1 of 1 used · 0 left")
        ada_token = await user_token(console, "Ada Lovelace", "Ada's PC")
        grace_token = await user_token(console, "Grace Hopper", "Grace's desk")

        # Ada logs in with a named license...
        ada = await api.device(kind="desktop", name="Ada's PC")
        assert (await ada.login(ada_token))["license"] == {"model": "named"}

        # ...and is moved to the pool: the impact is shown before she is.
        row = console.user_row("Ada Lovelace")
        await row.get_by_role("button", name="Change the license of Ada Lovelace").click()
        dialog = console.dialog()
        await expect(dialog.locator(".impact")).to_contain_text(
            "Named licenses: 1 of 1 used, 0 left"
        )
        await pick_license(console, pool_id)
        await expect(dialog.locator(".impact")).to_contain_text(
            "Help desk: 1 member (2 with this user) sharing 1 seat"
        )
        await dialog.get_by_role("button", name="Save license").click()
        await expect(dialog).to_be_hidden(timeout=SHOWN)
        await ada.expect_ended("license_changed", 4411)
        await expect(row.locator("td.license")).to_have_text("Pool: Help desk")
        await expect(page.locator("#sum-named")).to_have_text("0 of 1 used · 1 left")

        # Bob takes the one named license; Grace cannot have another.
        await create_user(console, "Bob Kahn", "bob@acme.example", "named")
        before = await domain.users()
        grace_row = console.user_row("Grace Hopper")
        await grace_row.get_by_role("button", name="Change the license of Grace Hopper").click()
        await pick_license(console, "named")
        await expect(dialog.locator(".impact .warn")).to_contain_text("more than the domain's 1")
        await dialog.get_by_role("button", name="Save license").click()
        refusal = dialog.locator('[data-error="license"]')
        await expect(refusal).to_contain_text("named", timeout=SHOWN)
        await expect(refusal).to_have_attribute("data-code", "license_limit")
        # Nothing changed, and the form is as the admin left it.
        assert await domain.users() == before
        await expect(dialog.locator('input[name="model"][value="named"]')).to_be_checked()
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(grace_row.locator("td.license")).to_have_text("Pool: Help desk")

        # Ada holds the seat; Grace is refused (a denial), then waits in the queue.
        ada = await api.device(kind="desktop", name="Ada's PC")
        assert (await ada.login(ada_token))["license"]["seat"] == 1
        grace = await api.device(kind="phone", name="Pixel")
        assert (await grace.login(grace_token))["code"] == "seat_occupied"
        await grace.enqueue()

        await console.section("Pools")
        seat = card.locator('.seat-tile[data-seat="1"]')
        await expect(seat.locator(".holder")).to_have_text("Ada Lovelace", timeout=SHOWN)
        await expect(seat.locator(".device-label")).to_have_text("Desktop · Ada's PC")
        await expect(card.locator(".n-queued")).to_have_text("1")
        await seat.get_by_role("button", name="Release seat 1 held by Ada Lovelace").click()
        await expect(page.locator("#confirm")).to_contain_text(
            "Ada Lovelace holds seat 1 of Help desk"
        )
        await console.confirm("Release seat")
        await ada.expect_ended("released_by_admin", 4412)
        await grace.granted()  # the queue's head gets the seat
        await expect(seat.locator(".holder")).to_have_text("Grace Hopper", timeout=SHOWN)

        # Tokens: revoking Grace's cuts her device off and frees the seat.
        tokens = await console.section("Tokens")
        row = tokens.locator("tbody tr", has_text="Grace's desk")
        await expect(row).to_contain_text("Grace Hopper")
        await row.get_by_role("button", name=re.compile("^Revoke User token Grace's desk")).click()
        await console.confirm("Revoke token")
        await grace.expect_ended("token_revoked", 4401)
        await expect(tokens.locator("tbody tr", has_text="Grace's desk")).to_have_count(0)
        await domain.wait_pool({"id": pool_id}, occupied=0)

        # A domain admin token made here works on the API until it is revoked.
        form = page.locator("#token-form")
        await form.get_by_label("Role", exact=True).select_option("admin")
        await form.get_by_label("Label", exact=True).fill("Ops laptop")
        await form.get_by_label("Expires", exact=True).select_option(label="In 1 day")
        await form.get_by_role("button", name="Create token").click()
        shown = page.locator("#token-secret-slot .secret")
        await expect(shown).to_have_value(re.compile(r"^prs_"), timeout=SHOWN)
        ops = api.api(await shown.input_value())
        ok(await ops.get(domain.path("users")))
        board = await api.wallboard(await shown.input_value())
        listed = [t for t in (await domain.tokens()).values() if t["label"] == "Ops laptop"]
        assert len(listed) == 1 and listed[0]["role"] == "admin" and listed[0]["expires_at"]
        row = tokens.locator("tbody tr", has_text="Ops laptop")
        await row.get_by_role(
            "button", name=re.compile("^Revoke Domain admin token Ops laptop")
        ).click()
        await console.confirm("Revoke token")
        await board.expect_error("unauthorized")
        await board.expect_closed(4401)
        assert (await ops.get(domain.path("users"))).status_code == 401
        await expect(row).to_have_count(0)

        # The event log, filtered, names the user.
        events = await console.section("Events")
        await events.locator("summary").click()
        await events.get_by_label("Released by admin", exact=True).check()
        await events.get_by_role("button", name="Show").click()
        first = events.locator("tbody tr").first
        await expect(first).to_have_attribute("data-type", "released_by_admin", timeout=SHOWN)
        await expect(first.locator(".event-user")).to_have_text("Ada Lovelace")
        await expect(first).to_contain_text("Help desk · seat 1")
        await expect(events.locator("tbody tr")).to_have_count(1)
        await events.get_by_label("Released by admin", exact=True).uncheck()
        await events.get_by_label("User", exact=True).fill("grace@acme.example")
        await events.get_by_role("button", name="Show").click()
        await expect(events.locator('tbody tr[data-type="token_revoked"]')).to_have_count(
            1, timeout=SHOWN
        )
        await expect(events.locator('tbody tr[data-type="released_by_admin"]')).to_have_count(0)
        users = await events.locator("tbody .event-user").all_text_contents()
        assert users and set(users) == {"Grace Hopper"}, users


async def test_usage_chart_and_csv_show_what_the_api_answers(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain(named_licenses=5, seat_licenses=3, name="Usage Co")
    desk = await domain.pool(1, name="Front desk")
    field = await domain.pool(2, name="Field")
    first, second = await domain.seat_user(desk), await domain.seat_user(desk)
    holder = await api.login(first)
    await holder.call_start("c-1")
    await holder.expect("call_started")
    await api.refused_login(second, "seat_occupied")  # a denial
    worker = await api.login(await domain.seat_user(field))
    await holder.call_end("c-1")
    await holder.expect("call_ended")
    # Sessions closed: the figures of the period stay as they are while compared.
    await holder.logout()
    await worker.logout()

    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(console_server.admin_token)
        await page.goto(f"{console_server.base_url}/admin#/{domain.id}/usage")
        charts = page.locator("#usage-charts")
        await expect(charts.locator(".usage-pool")).to_have_count(2, timeout=SHOWN)
        await expect(charts.locator(f'[data-pool="{desk["id"]}"] canvas')).to_have_count(3)

        answer, query = await shown_usage(console)
        params = {key: query[key] for key in ("from", "to", "step")}
        expected = ok(
            await domain.api.request("GET", domain.path("usage", "series"), params=params)
        )
        if expected != answer:  # an hour began between the two: ask both again
            await page.locator("#usage-form").get_by_role("button", name="Show").click()
            answer, query = await shown_usage(console)
            expected = ok(
                await domain.api.request("GET", domain.path("usage", "series"), params=params)
            )
        assert answer == expected
        by_pool = {entry["pool"]: entry for entry in expected}
        assert set(by_pool) == {desk["id"], field["id"]}
        points = by_pool[desk["id"]]["points"]
        assert sum(p["denials"] for p in points) >= 1
        assert max(p["peak_occupied"] for p in points) == 1
        assert sum(p["calls"] for p in points) == 1

        # Each chart draws exactly those figures.
        for entry in expected:
            drawn = await console.evaluate(
                """(pool) => Object.fromEntries(Object.entries(presenceAdmin.usage.charts[pool])
                    .map(([name, chart]) => [name, chart.data]))""",
                entry["pool"],
            )
            points = entry["points"]
            xs = [to_seconds(p["at"]) for p in points]

            def column(key: str, points: list[Message] = points) -> list[Any]:
                return [p[key] for p in points]

            seats = entry.get("seats", 1 if entry["pool"] == desk["id"] else 2)
            assert drawn["occupancy"] == [xs, column("peak_occupied"), [seats] * len(xs)]
            assert drawn["demand"] == [xs, column("denials"), column("peak_queued")]
            assert drawn["calls"] == [xs, column("calls")]

        # The CSV download: the same figures, one row per pool and step.
        async with page.expect_download() as waiting:
            await page.get_by_role("button", name="Download CSV").click()
        download = await waiting.value
        assert download.suggested_filename.startswith(f"usage-{domain.id}-")
        path = await download.path()
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert rows, "an empty CSV"
        assert list(rows[0]) == [
            "pool", "at", "peak_occupied", "seat_seconds", "denials", "peak_queued", "calls",
        ]  # fmt: skip
        served = [
            {"pool": e["pool"], "at": p["at"], **{k: v for k, v in p.items() if k != "at"}}
            for e in expected
            for p in e["points"]
        ]
        assert len(rows) == len(served)
        for row, point in zip(rows, served, strict=True):
            assert row["pool"] == point["pool"] and row["at"] == point["at"], (row, point)
            for key in ("peak_occupied", "seat_seconds", "denials", "peak_queued", "calls"):
                assert float(row[key]) == point[key], (key, row, point)

        # One pool picked: only its charts.
        form = page.locator("#usage-form")
        await form.get_by_label("Pool", exact=True).select_option(label="Field")
        await form.get_by_role("button", name="Show").click()
        await expect(charts.locator(".usage-pool")).to_have_count(1, timeout=SHOWN)
        await expect(charts.locator(".usage-pool")).to_have_attribute("data-pool", field["id"])


async def shown_usage(console: Console) -> tuple[list[Message], dict[str, str]]:
    shown: dict[str, Any] = await console.evaluate(
        "() => ({answer: presenceAdmin.usage.answer, query: presenceAdmin.usage.query})"
    )
    return shown["answer"], shown["query"]


def to_seconds(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()
