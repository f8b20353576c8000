"""How long a change takes to appear on the wallboard.

Starts a server on a temporary SQLite database, opens the board in headless
Chromium (Debian's /usr/bin/chromium, through the playwright package), and
then, for each sample, logs a device in and measures from the moment its
``hello`` is sent to the moment the seat tile shows the holder in the page's
DOM. The page stamps that moment itself with a MutationObserver; both stamps
read this machine's wall clock. ``--pools`` and ``--seats`` size the board
(the measured seat is in the first pool), e.g. 50 pools of 50 seats.

    python bench/wallboard_latency.py [--samples 20] [--pools 50 --seats 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from playwright.async_api import Page, async_playwright
from websockets.asyncio.client import connect

from presence.demo import AdminApi

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Resolves with the time (ms since the epoch) at which the tile stops being free.
WATCH_TILE = """(state) => {
  const tile = document.querySelector('[data-pool="p0"] .tile[data-seat="1"]');
  window.shown = new Promise((resolve) => {
    const seen = new MutationObserver(() => {
      if ((tile.dataset.state === "free") === (state === "free")) {
        seen.disconnect();
        resolve(performance.timeOrigin + performance.now());
      }
    });
    seen.observe(tile, { attributes: true, childList: true, subtree: true, characterData: true });
  });
}"""


def start_server(workdir: str, port: int, admin_token: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env["PRESENCE_ADMIN_TOKEN"] = admin_token
    command = [
        sys.executable,
        "-m",
        "presence",
        "serve",
        "--port",
        str(port),
        "--database",
        f"sqlite:///{workdir}/bench.db",
    ]
    server = subprocess.Popen(
        command, cwd=REPO, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the server did not start")


async def set_up(api: AdminApi, pools: int, seats: int) -> tuple[str, str]:
    """A domain of ``pools`` pools; return a wallboard token and a seat user's token."""
    await api.call(
        "POST",
        "/domains",
        {
            "id": "bench",
            "name": "Bench",
            "plan": "enterprise",
            "named_licenses": 0,
            "seat_licenses": pools * seats,
        },
    )
    for n in range(pools):
        await api.call(
            "POST", "/domains/bench/pools", {"id": f"p{n}", "name": f"Pool {n}", "seats": seats}
        )
    user = await api.call(
        "POST",
        "/domains/bench/users",
        {
            "email": "bench@example.com",
            "name": "Bench User",
            "license": {"model": "seat", "pool": "p0"},
        },
    )
    grant = await api.call("POST", f"/domains/bench/users/{user['id']}/tokens")
    board = await api.call("POST", "/domains/bench/tokens", {"role": "wallboard"})
    return board["token"], grant["token"]


async def sample(page: Page, ws_url: str, token: str) -> float:
    """One login's latency to the board, in ms; logs out and waits for the free tile."""
    async with connect(ws_url, proxy=None, compression=None) as device:
        await page.evaluate(WATCH_TILE, "held")
        hello = {
            "type": "hello",
            "token": token,
            "device": {"id": uuid.uuid4().hex, "kind": "desktop"},
        }
        sent = time.time() * 1000
        await device.send(json.dumps(hello))
        shown: float = await page.evaluate("window.shown")
        await page.evaluate(WATCH_TILE, "free")
        await device.send(json.dumps({"type": "logout"}))
        await page.evaluate("window.shown")
    return shown - sent


async def main(samples: int, pools: int, seats: int) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    admin_token = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as workdir:
        server = start_server(workdir, port, admin_token)
        try:
            base = f"http://127.0.0.1:{port}"
            board_token, user_token = await set_up(AdminApi(base, admin_token), pools, seats)
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
                )
                page = await browser.new_page(viewport={"width": 1920, "height": 1080})
                opened = time.monotonic()
                await page.goto(f"{base}/#token={board_token}")
                await page.wait_for_selector('#connection[data-state="live"]')
                ready = (time.monotonic() - opened) * 1000
                ws_url = f"ws://127.0.0.1:{port}/ws/device"
                latencies = [await sample(page, ws_url, user_token) for _ in range(samples)]
                await browser.close()
        finally:
            server.terminate()
            server.wait()
    print(f"board of {pools} pools x {seats} seats, ready {ready:.0f} ms after opening")
    print(
        f"hello sent -> tile shows the holder, {samples} samples: "
        f"median {statistics.median(latencies):.1f} ms, max {max(latencies):.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--pools", type=int, default=1)
    parser.add_argument("--seats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.pools, args.seats))
