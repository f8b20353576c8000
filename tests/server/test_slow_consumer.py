"""A connection that stops reading is cut off; nobody else waits for it."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .client import Device, Harness

HOLDERS = 24
BUSY = 4
#: Bounds on the churn that fills the slow board's buffers.
MAX_SECONDS = 60.0


async def cut_offs(harness: Harness) -> float:
    text = (await harness.api(None).get("/metrics")).text
    found = re.search(r'^presence_connections_cut_off_total\{reason="not_reading"\} (\S+)$',
                      text, re.MULTILINE)  # fmt: skip
    return float(found.group(1)) if found else 0.0


async def churn(device: Device, stop: asyncio.Event) -> None:
    """Start and end calls, within the rate limit, until told to stop."""
    n = 0
    while not stop.is_set():
        n += 1
        await device.call_start(f"c{n}")
        await device.expect("call_started")
        await device.call_end(f"c{n}")
        await device.expect("call_ended")
        await asyncio.sleep(0.05)  # pacing under 50 messages a second, not a wait


async def test_a_board_that_never_reads_is_cut_off_and_others_do_not_wait(
    steady_harness: Harness,
) -> None:
    harness = steady_harness
    domain = await harness.new_domain()
    pool = await domain.pool(HOLDERS)
    # Long device names make every pool message of the board large.
    holders = [
        await harness.login(await domain.seat_user(pool), name=f"{n:03d}" + "x" * 120)
        for n in range(HOLDERS)
    ]
    watcher = await harness.login(await domain.named_user())
    before = await cut_offs(harness)

    url = urlsplit(harness.server.ws_url.replace("/ws/device", "/ws/wallboard"))
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect((url.hostname, url.port))
    raw.setblocking(False)
    board_url = url.geturl()
    async with connect(board_url, sock=raw, compression=None, ping_interval=None,
                       max_queue=1, close_timeout=1) as board:  # fmt: skip
        await board.send(json.dumps({"type": "hello", "token": await domain.token("wallboard")}))
        board.transport.pause_reading()  # from now on it reads nothing

        stop = asyncio.Event()
        churners = [asyncio.create_task(churn(d, stop)) for d in holders[:BUSY]]
        worst_heartbeat = 0.0
        started = time.monotonic()
        try:
            seq = 0
            while await cut_offs(harness) == before:
                assert time.monotonic() - started < MAX_SECONDS, "the board was never cut off"
                seq += 1
                sent = time.monotonic()
                await watcher.heartbeat(seq)
                worst_heartbeat = max(worst_heartbeat, time.monotonic() - sent)
                await asyncio.sleep(0.2)  # pacing of the probe, not a wait
        finally:
            stop.set()
            await asyncio.gather(*churners)

        # Reading again, the board gets what was buffered, then the end.
        board.transport.resume_reading()
        async with asyncio.timeout(30):
            try:
                while True:
                    await board.recv()
            except ConnectionClosed:
                pass
    assert worst_heartbeat < 1.0, f"a healthy device waited {worst_heartbeat:.3f} s"
