"""Debian's Chromium, as every browser test launches it through Playwright
(the Playwright browser download does not work here). Without it the tests
fail, they do not skip: `apt-get install chromium`."""

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # A page fulfilled by a test (to add a CSP header) has no address, so Chromium
    # takes it for a public one, whose connections to 127.0.0.1 it would block.
    "--disable-features=LocalNetworkAccessChecks",
]


def chromium() -> str:
    """The browser's path, checked."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    return CHROMIUM
