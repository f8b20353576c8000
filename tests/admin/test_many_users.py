"""10,000 users in the console: how long the users page takes to load and a
search to show its results (printed; run with `-s`), and that what it shows
is right: the user searched for, the counts of every page.

Creating 10,000 users one `POST` at a time costs more here than the test may
take (each creation reads every e-mail address of the domain, so the n-th
costs O(n): about 200 s for 10,000 with 8 at a time, measured). The domain's
users are therefore written before the server starts, through the server's
own storage layer (`presence.storage`, in one transaction); the test then
creates more through the API and prints what each costs at that size.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from pathlib import Path

import httpx
from playwright.async_api import Browser, expect
from servers import ServerProcess

from presence.core.model import Domain, License, Pool, User
from presence.storage import store_for_url

from .console import SHOWN, Console

USERS = 10_000
BY_API = 100
DOMAIN = "big"
FIRST = ["Ada", "Alan", "Barbara", "Claude", "Dennis", "Edsger", "Frances", "Grace", "Hedy", "Ivan"]
LAST = [
    "Allen",
    "Backus",
    "Cerf",
    "Dijkstra",
    "Engelbart",
    "Hamilton",
    "Knuth",
    "Liskov",
    "Ritchie",
]
#: The one user the search looks for.
NEEDLE = ("Zelda Quintero", "zelda.quintero@big.example")


def seed_users() -> list[User]:
    users = []
    for i in range(USERS - 1):
        name = f"{FIRST[i % len(FIRST)]} {LAST[i // len(FIRST) % len(LAST)]} {i:05d}"
        license = (
            License("named") if i % 3 == 0 else License("seat", f"pool-{i % 4}") if i % 3 == 1
            else License("none")
        )  # fmt: skip
        users.append(User(DOMAIN, uuid.uuid4().hex, f"user{i:05d}@big.example", name, license))
    users.append(User(DOMAIN, uuid.uuid4().hex, NEEDLE[1], NEEDLE[0], License("named")))
    return users


async def seed(database: str) -> float:
    """Write the domain, 4 pools and USERS users; seconds taken."""
    started = time.perf_counter()
    store = store_for_url(database, "seed")
    await store.open(lease_ttl=3)
    try:
        async with store.transaction(DOMAIN) as tx:
            await tx.insert_domain(Domain(DOMAIN, "Big Co", "enterprise", 20_000, 400))
            for n in range(4):
                await tx.insert_pool(Pool(DOMAIN, f"pool-{n}", f"Pool {n}", 100))
            for user in seed_users():
                await tx.insert_user(user)
    finally:
        await store.close()
    return time.perf_counter() - started


async def create_by_api(process: ServerProcess, count: int, concurrency: int = 8) -> float:
    """POST `count` more users, `concurrency` at a time; seconds taken."""
    headers = {"Authorization": f"Bearer {process.admin_token}"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=f"{process.base_url}/api/v1/domains/{DOMAIN}",
        headers=headers, limits=limits, timeout=60, trust_env=False,
    ) as http:  # fmt: skip
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            body = {
                "email": f"api{i:04d}@big.example",
                "name": f"Api User {i:04d}",
                "license": {"model": "none"},
            }
            async with gate:
                answer = await http.post("/users", json=body)
            assert answer.status_code == 201, answer.text

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        return time.perf_counter() - started


async def test_ten_thousand_users_load_search_and_page(browser: Browser, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'presence.db'}"
    seeded = await seed(database)
    process = ServerProcess(tmp_path, database=database, lease_ttl=3)
    process.start()
    try:
        by_api = await create_by_api(process, BY_API)
        total = USERS + BY_API
        async with Console.opened(browser, process.base_url) as console:
            page = console.page
            started = time.perf_counter()
            await console.sign_in(process.admin_token, DOMAIN)
            count = page.locator("#users-count")
            await expect(count).to_have_text(f"1–50 of {total:,} users", timeout=SHOWN)
            load_wall = time.perf_counter() - started
            load_page = await console.evaluate("() => presenceAdmin.timings.usersLoad")
            # Again, from the tab (the list read and drawn anew).
            await console.section("Pools")
            await console.evaluate("() => { presenceAdmin.timings.usersLoad = null; }")
            await console.section("Users")
            await page.wait_for_function("() => presenceAdmin.timings.usersLoad != null")
            await expect(count).to_have_text(f"1–50 of {total:,} users")
            reload_page = await console.evaluate("() => presenceAdmin.timings.usersLoad")

            rows = page.locator("#users-table tbody tr")
            await expect(rows).to_have_count(50)
            await expect(page.locator("#users-pager .page-of")).to_have_text(
                f"Page 1 of {-(-total // 50)}"
            )

            # A search, from the keystroke to the next frame drawn.
            searched = await console.evaluate(
                """async (query) => {
                    const input = document.getElementById("users-search");
                    const started = performance.now();
                    input.value = query;
                    input.dispatchEvent(new Event("input", {bubbles: true}));
                    await new Promise(requestAnimationFrame);
                    return performance.now() - started;
                }""",
                "zelda",
            )
            await expect(count).to_have_text("1–1 of 1 user (10,100 in all)")
            await expect(rows).to_have_count(1)
            await expect(rows.first.locator("td.name")).to_have_text(NEEDLE[0])
            await expect(rows.first.locator("td.email")).to_have_text(NEEDLE[1])
            await expect(rows.first.locator("td.license")).to_have_text("Named")

            # Searching by e-mail, and a search matching many: paged.
            search = page.locator("#users-search")
            await search.fill("user00042@")
            await expect(rows).to_have_count(1)
            await expect(rows.first.locator("td.email")).to_have_text("user00042@big.example")
            await search.fill("grace")
            grace = sum(1 for i in range(USERS - 1) if i % len(FIRST) == FIRST.index("Grace"))
            await expect(count).to_have_text(f"1–50 of {grace:,} users (10,100 in all)")
            await page.locator("#users-pager").get_by_role("button", name="Next").click()
            await expect(count).to_have_text(f"51–100 of {grace:,} users (10,100 in all)")
            names = await rows.locator("td.name").all_text_contents()
            assert len(names) == 50 and all(name.startswith("Grace ") for name in names), names

            # The license filter, and the last page.
            await search.fill("")
            await page.locator("#users-filter").select_option("named")
            named = (USERS - 1 + 2) // 3 + 1  # every third seeded user, and the needle
            await expect(count).to_have_text(f"1–50 of {named:,} users (10,100 in all)")
            await page.locator("#users-filter").select_option("")
            await page.locator("#users-pager").get_by_role("button", name="Last page").click()
            await expect(count).to_have_text(f"10,051–10,100 of {total:,} users")
            await expect(rows).to_have_count(50)
            await expect(page.locator("#users-pager .page-of")).to_have_text(
                f"Page {-(-total // 50)} of {-(-total // 50)}"
            )
            await expect(page.locator("#sum-named")).to_have_text(
                re.compile(rf"^{named:,} of 20,000 used")
            )
    finally:
        process.stop()

    print(
        f"\n{USERS:,} users written through presence.storage in {seeded:.2f} s; "
        f"{BY_API} more through the API (8 at a time) in {by_api:.2f} s "
        f"({by_api / BY_API * 1000:.1f} ms each at {USERS:,} users)\n"
        f"users page, {total:,} users: shown {load_wall * 1000:.0f} ms after the address was "
        f"opened (sign-in included); list read and drawn {load_page:.0f} ms, "
        f"again from the tab {reload_page:.0f} ms\n"
        f"search 'zelda' to the next frame: {searched:.1f} ms"
    )
