"""Floods of frames against a server of the test's own: each flooder is closed at
once, the node's memory stays flat, and a healthy device's heartbeats stay fast.

The bounds are the README's (Protection): a message takes at most 64 frames,
and a client sends at most 200 frames of any kind in a second. Memory is the
server process's VmRSS, sampled while the flood runs.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest
from server.client import Harness, Server, check_error
from server.raw import RawWebSocket, frame, metric, rss_kib, text
from websockets.frames import Opcode

from .hostile import HeartbeatProbe, Latency, prepare

if TYPE_CHECKING:
    from conftest import OpenRaw, StartServer
    from servers import ServerProcess

FRAMES_PER_SECOND = 200
#: How long the fragment flood runs, and how many connections flood at once.
FLOOD_SECONDS = 5.0
FLOODERS = 3
#: A flooder must be closed within this of its first frame (it takes about a millisecond).
CLOSE_WITHIN = 5.0
#: The growth of the server's memory allowed during a flood (measured: about 1 MiB).
MEMORY_LIMIT_KIB = 20 * 1024
#: A loose bound: the healthy device's heartbeats answer in a few milliseconds.
P99_LIMIT = 0.5
#: One write of a flooder: 10,000 empty continuation frames (60 KB).
EMPTY_CONTINUATIONS = frame(Opcode.CONT, fin=False) * 10_000


async def cut_offs(base_url: str, reason: str) -> float:
    async with httpx.AsyncClient(trust_env=False) as http:
        answer = await http.get(f"{base_url}/metrics")
    return metric(answer.text, "presence_connections_cut_off_total", f'reason="{reason}"')


async def assert_closed(ws: RawWebSocket, code: str, close_code: int) -> None:
    await ws.until_closed(CLOSE_WITHIN)
    assert ws.errors() == [code], (ws.received, ws.close_code, ws.pongs)
    check_error(ws.received[-1])
    assert ws.close_code == close_code, ws.close_code


class Memory:
    """Samples a process's VmRSS until stopped; `peak` is the largest, in KiB."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_kib(pid)
        self.peak = self.before

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            await asyncio.sleep(0.05)  # the sampling period, not a wait for the server


async def flood_fragments(process: ServerProcess, token: str, until: float) -> list[float]:
    """Connect, log in and send one endless message of empty continuation
    frames, again and again until ``until``; the seconds each took to be closed
    with too_large and 1009 (infinite if it was not, or could not log in)."""
    closed_after: list[float] = []
    device = {"id": f"flooder-{uuid.uuid4().hex[:8]}", "kind": "desktop"}
    while time.monotonic() < until:
        try:
            closed_after.append(await flood_once(process.server, token, device))
        except TimeoutError:
            closed_after.append(math.inf)
    return closed_after


async def flood_once(server: Server, token: str, device: dict[str, str]) -> float:
    ws = await RawWebSocket.open(server)
    try:
        await ws.login({"type": "hello", "token": token, "device": device}, "welcome")
        started = time.monotonic()
        await ws.send(frame(Opcode.TEXT, b'{"type":', fin=False))
        async with ws.flooding(EMPTY_CONTINUATIONS):
            await assert_closed(ws, "too_large", 1009)
        return time.monotonic() - started
    finally:
        await ws.close()


async def test_a_fragment_flood_is_closed_and_the_node_stays_small_and_fast(
    own_server: StartServer,
) -> None:
    """Flooders that log in and send a text frame without FIN, then empty
    continuation frames without end, reconnecting as soon as they are closed."""
    process = own_server()
    assert process.process is not None
    server = process.server
    target = await asyncio.to_thread(
        prepare, server.base_url, server.admin_token, f"flood-{uuid.uuid4().hex[:8]}"
    )
    # One round first, so that memory the node keeps once it ran is in the baseline.
    await flood_fragments(process, target.tokens.named, time.monotonic())

    memory = Memory(process.process.pid)
    stop = asyncio.Event()
    sampling = asyncio.create_task(memory.sample(stop))
    with HeartbeatProbe(target) as probe:
        until = time.monotonic() + FLOOD_SECONDS
        try:
            rounds = await asyncio.gather(
                *(flood_fragments(process, target.tokens.named, until) for _ in range(FLOODERS))
            )
        finally:
            stop.set()
            await sampling
        try:
            latency: Latency | None = probe.stop()
        except AssertionError as failed:  # reported below, after the other figures
            latency, healthy = None, str(failed)
        else:
            healthy = latency.summary()

    closes = sorted(seconds for flooder in rounds for seconds in flooder)
    growth = memory.peak - memory.before
    print(
        f"\n{len(closes)} flooding connections in {FLOOD_SECONDS:.0f} s, each closed "
        f"{closes[len(closes) // 2] * 1000:.1f} ms (median), {closes[-1] * 1000:.1f} ms (max) "
        f"after its first frame; server VmRSS {memory.before} KiB before, peak +{growth} KiB; "
        f"healthy device: {healthy}"
    )
    assert closes[-1] < CLOSE_WITHIN, f"{closes.count(math.inf)} flooders were not closed"
    assert growth < MEMORY_LIMIT_KIB, f"the server grew by {growth} KiB"
    assert latency is not None and latency.p99 < P99_LIMIT, healthy
    assert process.process.poll() is None, "the server died"


async def test_a_ping_flood_is_cut_off_without_a_flood_of_pongs(
    own_server: StartServer, open_raw: OpenRaw
) -> None:
    """Pings of 125 bytes as fast as the client can write: a few hundred pongs
    at most, then rate_limited and close 4429, counted as flooding."""
    server = own_server().server
    async with Harness(server) as harness:
        member = await (await harness.new_domain()).named_user()
    before = await cut_offs(server.base_url, "flooding")
    ws = await open_raw(server)
    device = {"id": "pinger", "kind": "desktop"}
    await ws.login({"type": "hello", "token": member.token, "device": device}, "welcome")

    async with ws.flooding(frame(Opcode.PING, b"p" * 125) * 500):
        await assert_closed(ws, "rate_limited", 4429)
    print(f"\n{ws.pongs} pongs received before the close")
    assert ws.pongs <= 3 * FRAMES_PER_SECOND, f"{ws.pongs} pongs"
    assert await cut_offs(server.base_url, "flooding") == before + 1


@pytest.mark.parametrize("path", ["/ws/device", "/ws/wallboard"])
async def test_a_flood_of_tiny_messages_is_cut_off(
    own_server: StartServer, open_raw: OpenRaw, path: str
) -> None:
    """Small complete messages, each valid (a heartbeat, a board's ping), far
    faster than any client sends them: rate_limited and close 4429, counted as
    flooding, on both endpoints."""
    server = own_server().server
    async with Harness(server) as harness:
        domain = await harness.new_domain()
        if path == "/ws/device":
            token = (await domain.named_user()).token
            hello = {"type": "hello", "token": token, "device": {"id": "d", "kind": "phone"}}
            welcome, tiny = "welcome", text({"type": "heartbeat"})
        else:
            hello = {"type": "hello", "token": await domain.token("wallboard")}
            welcome, tiny = "snapshot", text({"type": "ping"})
    before = await cut_offs(server.base_url, "flooding")
    ws = await open_raw(server, path)
    await ws.login(hello, welcome)

    async with ws.flooding(tiny * 1000):
        await assert_closed(ws, "rate_limited", 4429)
    assert await cut_offs(server.base_url, "flooding") == before + 1
