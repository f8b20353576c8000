"""The console's Identity provider section: set, change and remove a domain's
OpenID Connect provider, and the API's refusals shown beside their fields.

The issuer is never fetched on saving, so an issuer of example.com does. Every
step is checked in the page and through the API (`GET .../identity`, which
answers 404 when none is set).
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, Locator, expect
from server.client import API, Domain, Harness, ok
from servers import ServerProcess

from .console import DESKTOP, PHONE, SHOWN, Console

ISSUER = "https://idp.example.com/realms/acme"


async def identity(domain: Domain) -> Any:
    """The domain's identity provider through the API; None when none is set."""
    answer = await domain.api.get(domain.path("identity"))
    if answer.status_code == 404:
        assert answer.json()["error"]["code"] == "not_found", answer.text
        return None
    return ok(answer)


def fields(section: Locator) -> dict[str, Locator]:
    form = section.locator("#identity-form")
    return {
        "form": form,
        "issuer": form.get_by_label("Issuer URL", exact=True),
        "audience": form.get_by_label("Audience", exact=True),
        "claim": form.get_by_label("E-mail claim", exact=True),
        "refuse": form.get_by_label("Don't create users (the sign-in is refused)", exact=True),
        "named": form.get_by_label("Create the user with a named license", exact=True),
        "seat": form.get_by_label("Create the user with a seat of pool", exact=True),
        "pool": form.get_by_label("Seat pool of new users", exact=True),
        "save": form.get_by_role("button", name="Save", exact=True),
    }


async def test_an_identity_provider_set_changed_and_removed(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    pool = await domain.pool(2, name="Help desk")
    token = await domain.token("admin")
    async with Console.opened(browser, console_server.base_url) as console:
        page = console.page
        await console.sign_in(token, domain.id)
        section = await console.section("Identity provider")
        assert page.url.endswith(f"#/{domain.id}/identity"), page.url
        await expect(page).to_have_title("Identity provider · Test domain · Presence admin")
        await expect(section.locator("#identity-none")).to_be_visible(timeout=SHOWN)
        await expect(section.locator("#identity-set")).to_be_hidden()
        await expect(section.locator("#identity-hello")).to_have_text(
            f'{{"domain":"{domain.id}","id_token":"<JWT>"}}'
        )
        f = fields(section)
        await expect(f["claim"]).to_have_value("email")  # the default
        await expect(f["refuse"]).to_be_checked()
        await expect(f["pool"]).to_be_disabled()

        # Set: new users get a named license.
        await f["issuer"].fill(ISSUER)
        await f["audience"].fill("presence-desktop")
        await f["named"].check()
        await expect(section.locator("#identity-provision-note")).to_contain_text("named licenses")
        await f["save"].click()
        shown = section.locator("#identity-set")
        await expect(shown).to_be_visible(timeout=SHOWN)
        await expect(section.locator("#identity-none")).to_be_hidden()
        await expect(section.locator("#identity-issuer")).to_have_text(ISSUER)
        await expect(section.locator("#identity-audience")).to_have_text("presence-desktop")
        await expect(section.locator("#identity-claim")).to_have_text("email")
        await expect(section.locator("#identity-provision")).to_have_text(
            "Created with a named license"
        )
        await expect(page.locator("#status")).to_contain_text(f"ID tokens from {ISSUER}")
        assert await identity(domain) == {
            "issuer": ISSUER,
            "audience": "presence-desktop",
            "email_claim": "email",
            "provision": {"model": "named"},
        }

        # Change: a seat of the pool, another claim.
        await expect(f["pool"]).to_be_disabled()
        await f["seat"].check()
        await expect(f["pool"]).to_be_enabled()
        await f["pool"].select_option(label="Help desk (2 seats)")
        await f["claim"].fill("upn")
        await f["save"].click()
        await expect(section.locator("#identity-provision")).to_have_text(
            "Created with a seat of pool Help desk", timeout=SHOWN
        )
        await expect(section.locator("#identity-claim")).to_have_text("upn")
        changed = {
            "issuer": ISSUER,
            "audience": "presence-desktop",
            "email_claim": "upn",
            "provision": {"model": "seat", "pool": pool["id"]},
        }
        assert await identity(domain) == changed

        # An http:// issuer: refused beside the issuer, the form as typed, nothing changed.
        await f["issuer"].fill("http://idp.example.com/realms/acme")
        await f["save"].click()
        error = f["form"].locator('[data-error="issuer"]')
        await expect(error).to_have_text("The URL must start with https://.", timeout=SHOWN)
        await expect(error).to_have_attribute("data-code", "bad_request")
        await expect(f["issuer"]).to_have_attribute("aria-invalid", "true")
        await expect(f["issuer"]).to_be_focused()
        await expect(f["issuer"]).to_have_value("http://idp.example.com/realms/acme")
        await expect(f["claim"]).to_have_value("upn")
        await expect(f["seat"]).to_be_checked()
        await expect(f["pool"]).to_have_value(pool["id"])
        await expect(section.locator("#identity-issuer")).to_have_text(ISSUER)
        assert await identity(domain) == changed

        # Read again from the server: the form holds what is set.
        await page.reload()
        await expect(section.locator("#identity-issuer")).to_have_text(ISSUER, timeout=SHOWN)
        await expect(f["issuer"]).to_have_value(ISSUER)
        await expect(f["claim"]).to_have_value("upn")
        await expect(f["seat"]).to_be_checked()
        await expect(f["pool"]).to_have_value(pool["id"])
        await expect(f["form"].locator('[data-error="issuer"]')).to_be_empty()

        # At a phone's width: no sideways scrolling, the form's fields one under another.
        await page.set_viewport_size(PHONE)
        await expect(section.locator("#identity-issuer")).to_be_visible()
        wide = await console.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert wide <= 0, f"the identity section is {wide} px wider than a 390 px phone"
        issuer_box = await f["issuer"].bounding_box()
        audience_box = await f["audience"].bounding_box()
        assert issuer_box and audience_box
        assert audience_box["y"] > issuer_box["y"] + issuer_box["height"], "fields side by side"
        await page.set_viewport_size(DESKTOP)

        # Remove: cancelled, it stays; confirmed, it is gone and the page says so.
        remove = section.get_by_role("button", name="Remove", exact=True)
        await remove.click()
        await expect(page.locator("#confirm-text")).to_contain_text(f"ID tokens from {ISSUER}")
        await console.confirm("Cancel")
        assert await identity(domain) == changed
        await remove.click()
        await console.confirm("Remove identity provider")
        await expect(section.locator("#identity-none")).to_be_visible(timeout=SHOWN)
        await expect(shown).to_be_hidden()
        assert await identity(domain) is None
        await expect(f["issuer"]).to_have_value("")
        await expect(f["claim"]).to_have_value("email")
        await expect(f["refuse"]).to_be_checked()
        await expect(f["issuer"]).to_be_focused()


async def test_refusals_are_shown_beside_their_fields_and_nothing_is_set(
    browser: Browser, console_server: ServerProcess, api: Harness
) -> None:
    domain = await api.new_domain()
    pool = await domain.pool(1, name="Front desk")
    token = await domain.token("admin")
    async with Console.opened(browser, console_server.base_url) as console:
        await console.sign_in(token, domain.id)
        section = await console.section("Identity provider")
        await expect(section.locator("#identity-none")).to_be_visible(timeout=SHOWN)
        f = fields(section)
        form = f["form"]

        # http:// is refused: nothing set.
        await f["issuer"].fill("http://idp.example.com/realms/acme")
        await f["audience"].fill("presence")
        await f["seat"].check()
        await f["save"].click()
        issuer_error = form.locator('[data-error="issuer"]')
        await expect(issuer_error).to_have_text("The URL must start with https://.", timeout=SHOWN)
        await expect(f["issuer"]).to_have_attribute("aria-invalid", "true")
        await expect(f["audience"]).to_have_value("presence")
        await expect(f["seat"]).to_be_checked()
        assert await identity(domain) is None

        # The pool chosen is deleted meanwhile: refused beside the pool.
        await f["issuer"].fill(ISSUER)
        await expect(f["pool"]).to_have_value(pool["id"])
        ok(await domain.api.delete(domain.path("pools", pool["id"])), 204)
        await f["save"].click()
        pool_error = form.locator('[data-error="provision.pool"]')
        await expect(pool_error).to_contain_text(pool["id"], timeout=SHOWN)
        await expect(issuer_error).to_be_empty()
        await expect(f["issuer"]).not_to_have_attribute("aria-invalid", "true")
        await expect(f["pool"]).to_have_attribute("aria-invalid", "true")
        await expect(f["pool"]).to_be_focused()
        assert await identity(domain) is None

        # The domain leaves the enterprise plan meanwhile: refused beside the provisioning.
        downgrade = {"plan": "standard", "seat_licenses": 0}
        ok(await api.admin.patch(f"{API}/domains/{domain.id}", downgrade))
        await f["save"].click()
        plan_error = form.locator('[data-error="provision"]')
        await expect(plan_error).to_contain_text("enterprise plan", timeout=SHOWN)
        await expect(plan_error).to_have_attribute("data-code", "plan_required")
        await expect(pool_error).to_be_empty()
        await expect(f["seat"]).to_be_focused()
        await expect(f["issuer"]).to_have_value(ISSUER)
        assert await identity(domain) is None

        # No users created: saved as typed.
        await f["refuse"].check()
        await f["save"].click()
        await expect(section.locator("#identity-provision")).to_have_text(
            "Not created: a sign-in whose e-mail address no user has is refused", timeout=SHOWN
        )
        await expect(plan_error).to_be_empty()
        assert await identity(domain) == {
            "issuer": ISSUER,
            "audience": "presence",
            "email_claim": "email",
            "provision": None,
        }
