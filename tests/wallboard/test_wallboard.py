"""The wallboard page in real headless Chromium, against a real server process.

Each test makes its own domain, opens the board with a wallboard token of it,
changes presence through real device WebSockets and waits, bounded, for the
page to show the change. Chromium is Debian's ``/usr/bin/chromium``; without it
these tests fail, they do not skip.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import CHROMIUM_ARGS, chromium
from playwright.sync_api import Browser, Page, WebSocketRoute, expect, sync_playwright
from servers import ServerProcess
from websockets.sync.client import ClientConnection, connect

#: ms: the issue's bound for a change to appear on the board.
SHOWN = 1000
#: ms: for what takes longer by design (a reconnection after backoff).
RECONNECT = 10_000
#: s: for the demo to print its wallboard URL; ms: for it to log someone in.
STARTUP = 20.0
DEMO_ACTIVE = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("wallboard")
    with ServerProcess(workdir, lease_ttl=60, heartbeat_interval=20) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"errors in the page: {errors}"


class Device:
    """One device's WebSocket session, logged in (or refused) on creation."""

    def __init__(self, ws: ClientConnection, token: str, kind: str, name: str | None) -> None:
        self.ws = ws
        device = {"id": uuid.uuid4().hex, "kind": kind, **({"name": name} if name else {})}
        self.send("hello", token=token, device=device)
        self.answer = self.receive()

    def send(self, type: str, **fields: Any) -> None:
        self.ws.send(json.dumps({"type": type, **fields}))

    def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=5))
        return message

    def expect(self, type: str) -> dict[str, Any]:
        """The next message of ``type``, skipping availability updates and the like."""
        while (message := self.receive())["type"] != type:
            pass
        return message

    def logout(self) -> None:
        self.send("logout")
        self.expect("bye")


class Scene:
    """A fresh domain on the server, set up through the admin API."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.domain = f"wb-{uuid.uuid4().hex[:12]}"
        self.http = httpx.Client(
            base_url=f"{server.base_url}/api/v1",
            headers={"Authorization": f"Bearer {server.admin_token}"},
            trust_env=False,
            timeout=10,
        )
        self.connections = contextlib.ExitStack()
        domain = {
            "id": self.domain,
            "name": "Wallboard test",
            "plan": "enterprise",
            "named_licenses": 10,
            "seat_licenses": 10,
        }
        assert self.http.post("/domains", json=domain).status_code == 201

    def call(self, method: str, path: str, **body: Any) -> Any:
        """Call the admin API at ``path`` under this domain; return the JSON answer."""
        url = f"/domains/{self.domain}/{path}"
        answer = self.http.request(method, url, json=body or None)
        assert answer.is_success, f"{method} {url}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else None

    def pool(self, seats: int, name: str = "Help desk") -> str:
        pool_id = f"pool-{uuid.uuid4().hex[:8]}"
        self.call("POST", "pools", id=pool_id, name=name, seats=seats)
        return pool_id

    def user(self, name: str, pool: str | None = None) -> str:
        """A user with a seat in ``pool`` (named if none); returns a user token."""
        license = {"model": "seat", "pool": pool} if pool else {"model": "named"}
        email = f"{uuid.uuid4().hex[:10]}@example.com"
        user = self.call("POST", "users", email=email, name=name, license=license)
        token: str = self.call("POST", f"users/{user['id']}/tokens")["token"]
        return token

    def device(self, token: str, kind: str = "desktop", name: str | None = None) -> Device:
        ws = connect(self.server.ws_url, proxy=None, compression=None)
        return Device(self.connections.enter_context(ws), token, kind, name)

    def login(self, token: str, kind: str = "desktop", name: str | None = None) -> Device:
        device = self.device(token, kind, name)
        assert device.answer["type"] == "welcome", device.answer
        return device

    def wallboard_token(self) -> str:
        token: str = self.call("POST", "tokens", role="wallboard")["token"]
        return token

    def close(self) -> None:
        self.connections.close()
        self.http.close()


@pytest.fixture
def scene(server: ServerProcess) -> Iterator[Scene]:
    made = Scene(server)
    yield made
    made.close()


def open_board(page: Page, scene: Scene) -> None:
    page.goto(f"{scene.server.base_url}/#token={scene.wallboard_token()}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def tile(page: Page, pool: str, seat: int) -> Any:
    return page.locator(f'[data-pool="{pool}"] .tile[data-seat="{seat}"]')


def count(page: Page, pool: str, name: str) -> Any:
    return page.locator(f'[data-pool="{pool}"] .n-{name}')


def test_a_login_shows_on_its_tile_and_a_logout_frees_it(page: Page, scene: Scene) -> None:
    pool = scene.pool(seats=2)
    ada = scene.user("Ada Lovelace", pool)
    open_board(page, scene)
    seat = tile(page, pool, 1)
    expect(seat).to_have_attribute("data-state", "free")

    device = scene.login(ada, kind="phone", name="Pixel 8")
    expect(seat.locator(".holder")).to_have_text("Ada Lovelace", timeout=SHOWN)
    expect(seat).to_have_attribute("data-state", "held")
    expect(seat.locator(".device-label")).to_have_text("Phone · Pixel 8")
    expect(seat.locator(".device-icon")).to_have_attribute("href", "#i-phone")
    expect(seat.locator(".held-clock")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(count(page, pool, "occupied")).to_have_text("1")
    expect(count(page, pool, "free")).to_have_text("1")

    device.send("call_start", call_id="c1")
    expect(seat).to_have_attribute("data-state", "call", timeout=SHOWN)
    expect(seat.locator(".status-text")).to_have_text("In call")
    expect(count(page, pool, "call")).to_have_text("1")
    device.send("call_end", call_id="c1")
    expect(seat).to_have_attribute("data-state", "held", timeout=SHOWN)

    device.logout()
    expect(seat).to_have_attribute("data-state", "free", timeout=SHOWN)
    expect(seat.locator(".status-text")).to_have_text("Free")
    expect(count(page, pool, "occupied")).to_have_text("0")


def test_a_refused_login_appears_in_the_feed_with_its_name(page: Page, scene: Scene) -> None:
    pool = scene.pool(seats=1, name="Front desk")
    grace, alan = scene.user("Grace Hopper", pool), scene.user("Alan Turing", pool)
    open_board(page, scene)
    scene.login(grace)  # Alan never holds a seat: his name comes with the event
    refused = scene.device(alan)
    assert refused.answer["code"] == "seat_occupied", refused.answer

    # Newest first: the pool's capacity alert, logged with the denial, then the denial.
    feed = page.locator("#feed .event")
    expect(feed.first).to_have_attribute("data-type", "pool_full", timeout=SHOWN)
    expect(feed.first.locator(".event-who")).to_have_text("Alan Turing")
    denied = feed.nth(1)
    expect(denied).to_have_attribute("data-type", "seat_denied")
    expect(denied).to_contain_text("Refused")
    expect(denied.locator(".event-who")).to_have_text("Alan Turing")
    expect(denied).to_contain_text("Front desk is full")
    expect(feed.nth(2)).to_have_attribute("data-type", "seat_granted")


def test_named_users_show_their_connected_devices(page: Page, scene: Scene) -> None:
    hedy = scene.user("Hedy Lamarr")
    open_board(page, scene)
    desktop = scene.login(hedy, kind="desktop")
    scene.login(hedy, kind="glasses", name="Vuzix")

    entry = page.locator("#named .named-user")
    expect(entry.locator(".named-name")).to_have_text("Hedy Lamarr", timeout=SHOWN)
    expect(entry.locator(".device-label")).to_have_text(["Desktop", "Glasses · Vuzix"])
    desktop.logout()
    expect(entry.locator(".device-label")).to_have_text(["Glasses · Vuzix"], timeout=SHOWN)


def test_a_pool_over_capacity_after_a_shrink_is_marked(page: Page, scene: Scene) -> None:
    pool = scene.pool(seats=2)
    scene.login(scene.user("Katherine Johnson", pool))
    scene.login(scene.user("Dorothy Vaughan", pool))
    open_board(page, scene)
    section = page.locator(f'[data-pool="{pool}"]')
    expect(section).not_to_have_class("pool over")

    scene.call("PATCH", f"pools/{pool}", seats=1)
    expect(section).to_have_class("pool over", timeout=SHOWN)
    expect(section.locator(".over-badge")).to_contain_text("2 held, 1 allowed")
    expect(tile(page, pool, 2)).to_have_class("tile beyond")
    expect(tile(page, pool, 2).locator(".beyond-note")).to_be_visible()


def test_without_a_token_the_page_says_how_to_open_it(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.base_url}/")
    expect(page.locator("#help")).to_be_visible()
    expect(page.locator("#help")).to_contain_text("/#token=")
    expect(page.locator("#board")).to_be_hidden()


def test_a_refused_token_is_reported_and_not_retried(page: Page, server: ServerProcess) -> None:
    page.clock.install()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"{server.base_url}/#token=not-a-token")
    expect(page.locator("#connection")).to_have_attribute("data-state", "refused")
    expect(page.locator("#connection")).to_contain_text("A valid bearer token is required")
    page.clock.run_for(60_000)  # longer than any backoff
    assert len(sockets) == 1, sockets


def test_the_token_stays_out_of_urls_and_survives_a_reload(page: Page, scene: Scene) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    open_board(page, scene)
    assert "token" not in page.url
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert len(sockets) == 2 and not any("token" in url for url in sockets), sockets


def test_a_server_restart_shows_disconnected_then_resyncs(
    page: Page, scene: Scene, server: ServerProcess
) -> None:
    pool = scene.pool(seats=1)
    ada, bob = scene.user("Ada Lovelace", pool), scene.user("Bob Kahn", pool)
    # The board's line goes through a gate, so that it stays away while things change.
    gate = {"open": True}

    def through_gate(route: WebSocketRoute) -> None:
        if gate["open"]:
            route.connect_to_server()
        else:
            route.close()

    page.route_web_socket("**/ws/wallboard", through_gate)
    open_board(page, scene)
    scene.login(ada)
    expect(tile(page, pool, 1).locator(".holder")).to_have_text("Ada Lovelace", timeout=SHOWN)

    gate["open"] = False
    try:
        server.stop()
        expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
        expect(page.locator("#connection")).to_contain_text("Disconnected")
    finally:
        server.start()
    # Ada's lease survived the restart (S10); free it and let Bob in while the board is away.
    lease = scene.call("GET", "presence")["pools"][0]["holders"][0]["lease_id"]
    scene.call("DELETE", f"leases/{lease}")
    scene.login(bob)

    gate["open"] = True
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=RECONNECT)
    expect(tile(page, pool, 1).locator(".holder")).to_have_text("Bob Kahn")
    expect(page.locator("#feed .event").first).to_have_attribute("data-type", "seat_granted")
    expect(page.locator('#feed .event[data-type="released_by_admin"]')).to_have_count(1)


def test_an_unanswered_ping_is_taken_for_a_dead_line(page: Page, scene: Scene) -> None:
    # The page's timers run on a fake clock here; the WebSocket does not.
    page.clock.install()
    silent = {"on": False}

    def mute_when_silent(route: WebSocketRoute) -> None:
        upstream = route.connect_to_server()
        route.on_message(lambda message: None if silent["on"] else upstream.send(message))

    page.route_web_socket("**/ws/wallboard", mute_when_silent)
    open_board(page, scene)
    silent["on"] = True
    page.clock.run_for(10_000)  # the ping goes unanswered...
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.clock.run_for(5_000)  # ...for as long as the board waits for its pong
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")

    silent["on"] = False
    page.clock.run_for(1_000)  # the first retry comes within 0.5 s
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def test_serve_demo_fills_the_board_with_simulated_devices(page: Page, tmp_path: Path) -> None:
    demo = ServerProcess(
        tmp_path, flags=("--demo",), admin_token=None, lease_ttl=30, heartbeat_interval=10
    )
    demo.start()
    try:
        url = demo.wait_for_output(r"Wallboard: (\S+)", STARTUP)[1]
        assert url.startswith(f"{demo.base_url}/#token=")
        page.goto(url)
        expect(page.locator("#domain-name")).to_have_text("Demo Co")
        expect(page.locator(".pool")).to_have_count(2)
        held = page.locator('.tile[data-state="held"], .tile[data-state="call"]')
        expect(held.first).to_be_visible(timeout=DEMO_ACTIVE)
        # The console, signed in as the server admin, lists the demo domain.
        console = demo.wait_for_output(r"Admin console: (\S+)", STARTUP)[1]
        assert console.startswith(f"{demo.base_url}/admin#token=")
        page.goto(console)
        expect(page.get_by_text("Demo Co").first).to_be_visible()
    finally:
        # uvicorn re-raises the signal it stopped on, once it has shut down cleanly.
        assert demo.terminate() in (0, -signal.SIGTERM)
    output = demo.output()
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
