"""A TCP proxy the test controls, between device clients and a server.

It forwards every connection to the server's port, and records when each one
reached the server (`arrivals`, loop time, only those the server accepted).
The test can `cut` every connection it forwards (both ends aborted, as a
reset would), `stall` them (nothing forwarded either way, nothing closed: a
path that died without telling TCP), and `refuse` new connections for a
while (each accepted and closed at once, as if the server were away).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(eq=False)
class Pair:
    """One forwarded connection: the client's end and the server's."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def abort(self) -> None:
        for writer in (self.client, self.server):
            writer.transport.abort()


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.arrivals: list[float] = []
        self.refusing = False
        self._pairs: set[Pair] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._listener is not None, "not started"
        port: int = self._listener.sockets[0].getsockname()[1]
        return port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/device"

    async def __aenter__(self) -> Proxy:
        self._listener = await asyncio.start_server(self._accept, "127.0.0.1", 0, backlog=4096)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._listener is not None
        self._listener.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._listener.wait_closed()

    def cut(self) -> None:
        """Abort every connection forwarded now, at both ends."""
        for pair in list(self._pairs):
            pair.abort()

    def stall(self) -> list[Pair]:
        """Stop forwarding on every connection open now, in both directions,
        closing nothing; new connections are forwarded. Returns the stalled ones."""
        stalled = list(self._pairs)
        for pair in stalled:
            pair.flowing.clear()
        return stalled

    @staticmethod
    def resume(stalled: list[Pair]) -> None:
        for pair in stalled:
            pair.flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the server is away: the client sees its connection closed
            writer.transport.abort()
            return
        self.arrivals.append(asyncio.get_running_loop().time())
        pair = Pair(writer, upstream)
        pair.flowing.set()
        self._pairs.add(pair)
        try:
            await asyncio.gather(
                _pump(reader, upstream, pair.flowing), _pump(upstream_reader, writer, pair.flowing)
            )
        finally:
            self._pairs.discard(pair)
            pair.abort()


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    """Copy until either end closes; while `flowing` is clear, copy nothing."""
    with contextlib.suppress(OSError):
        while True:
            await flowing.wait()
            data = await source.read(CHUNK)
            if not data:
                break
            await flowing.wait()  # stalled while reading: hold what was read
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
