"""A load generator process: it holds sockets and acts on the runner's commands.

The runner (:mod:`bench.fleet`) sends ``(command, arguments)`` over a pipe;
the worker runs ``Worker.<command>(**arguments)`` on its event loop, which
keeps heartbeating meanwhile, and sends back ``("ok", result)`` or
``("error", traceback)``. Sockets are kept in named groups so that a scenario
can act on its own (the holder of a seat, its subscribers...).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import resource
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from websockets.exceptions import InvalidHandshake

from presence.client.login import backoff_delay

from .client import Closed, Message, Socket

#: How long a reply may take before the worker counts it as lost.
ANSWER_TIMEOUT = 30.0


def raise_open_files() -> None:
    """Every socket is a file: lift the soft limit to the hard one."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def open_files_limit() -> int:
    """The most files a process of ours may open (the hard limit, which
    :func:`raise_open_files` makes the soft one)."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def main(conn: Connection, index: int, sources: list[str]) -> None:
    """The entry point of worker ``index``, connecting from ``sources`` in turn."""
    import uvloop

    raise_open_files()
    uvloop.run(Worker(conn, index, sources).serve())


@dataclass(frozen=True)
class Backoff:
    """How a device tries again, as :class:`presence.client.Client` does with its
    defaults: before each try after a failed one (and before the first after a lost
    connection), a wait drawn from 0 to a bound that starts at ``first_delay`` and
    doubles with each failed try up to ``max_delay``. ``timeout`` bounds the opening
    of a connection, and then the wait for the answer to hello."""

    first_delay: float = 0.5
    max_delay: float = 20.0
    timeout: float = 10.0

    def delay(self, waits: int) -> float:
        """The wait before a try, after ``waits`` waits since the last welcome."""
        return backoff_delay(self.first_delay, self.max_delay, waits)


@dataclass
class Device:
    """A device of :meth:`Worker.join`: the hello it logs in with each time, the
    licenses of its welcomes, when it lost its connection, and how its tries
    since the last count went."""

    hello: Message
    socket: Socket | None = None
    welcomes: list[tuple[float, Message]] = field(default_factory=list)  # stamp, license
    lost: float | None = None
    tries: int = 0
    failures: Counter[str] = field(default_factory=Counter)  # an error's code, or an exception

    def report(self) -> dict[str, Any]:
        holding = self.socket is not None and not self.socket.closed
        return {"welcomes": self.welcomes, "lost": self.lost, "tries": self.tries,
                "failures": dict(self.failures), "holding": holding}  # fmt: skip


class Worker:
    def __init__(self, conn: Connection, index: int, sources: list[str]) -> None:
        self.conn = conn
        self.index = index
        self.sources = sources
        self.opened = 0
        self.groups: dict[str, list[Socket]] = {}
        self.beats: set[asyncio.Task[None]] = set()
        self.rtts: list[float] = []
        self.lost = 0  # heartbeats without an answer
        self.recording: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self.frames: list[tuple[float, str, int, int]] = []  # stamp, type, free, socket
        self._enough = asyncio.Event()
        self._awaited: int | None = None  # the ``free`` of the change awaited
        self._heard: dict[int, set[int]] = {}  # per ``free``, the sockets that heard it
        self._wanted = 0
        self.devices: list[Device] = []
        self.returns: list[asyncio.Task[None]] = []  # of the devices, after a lost connection

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            command, arguments = await loop.run_in_executor(None, self.conn.recv)
            if command == "exit":
                break
            try:
                result = await getattr(self, command)(**arguments)
            except Exception:
                self.conn.send(("error", traceback.format_exc()))
            else:
                self.conn.send(("ok", result))
        for task in self.beats:
            task.cancel()
        for sockets in self.groups.values():
            for socket in sockets:
                socket.close()

    def _listen(self, group: str, socket: Socket, stamp: float, message: Message) -> None:
        groups, types = self.recording
        kind = message.get("type", "")
        if group in groups and kind in types:
            # a wallboard's pool frame nests what availability carries
            free = message["free"] if kind == "availability" else message["pool"]["free"]
            self.frames.append((stamp, kind, free, id(socket)))
            heard = self._heard.setdefault(free, set())
            heard.add(id(socket))
            if free == self._awaited and len(heard) >= self._wanted:
                self._enough.set()

    def _local_host(self) -> str:
        """The next of this worker's source addresses, in turn."""
        self.opened += 1
        return self.sources[self.opened % len(self.sources)]

    # Commands.

    async def open(
        self,
        group: str,
        port: int,
        path: str,
        hellos: list[Message | None],
        answers: list[str],
        concurrency: int,
        beat: float | None = None,
        host: str = "127.0.0.1",
    ) -> dict[str, Any]:
        """Open a socket per hello, send it (``None``: connect only) and await the answer,
        then heartbeat every ``beat`` seconds if given.

        Returns each answer's ``type`` and ``code``, and the hello-to-answer times.
        """
        limit = asyncio.Semaphore(concurrency)
        sockets = self.groups.setdefault(group, [])

        async def one(hello: Message | None) -> tuple[str, str, float, float, float]:
            async with limit:
                started = time.monotonic()
                socket = await Socket.open(
                    host, port, path, partial(self._listen, group), self._local_host()
                )
                sockets.append(socket)
                if hello is None:
                    return "connected", "", started, started, time.monotonic()
                sent, answer = socket.request(hello, *answers)
                stamp, message = await asyncio.wait_for(answer, ANSWER_TIMEOUT)
                if beat is not None:
                    # Right away: a session opened early must not expire while the rest open.
                    self.beats.add(asyncio.create_task(self._beat(socket, beat)))
                return message["type"], message.get("code", ""), started, sent, stamp

        done = await asyncio.gather(*(one(hello) for hello in hellos))
        return {
            "answers": [(kind, code) for kind, code, *_ in done],
            "latencies": [stamp - sent for *_, sent, stamp in done],
            "started": min((started for _, _, started, _, _ in done), default=0.0),
            "sent": min((sent for *_, sent, _ in done), default=0.0),
            "finished": max((stamp for *_, stamp in done), default=0.0),
        }

    async def hello_at(
        self, group: str, hellos: list[Message], answers: list[str], at: float
    ) -> list[tuple[str, str, float]]:
        """At monotonic time ``at``, send a hello on each connected socket of ``group``.

        Returns each answer's ``type``, ``code`` and stamp.
        """
        sockets = self.groups[group]
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        pending = [
            socket.request(hello, *answers)[1]
            for socket, hello in zip(sockets, hellos, strict=True)
        ]
        done = await asyncio.wait_for(asyncio.gather(*pending), ANSWER_TIMEOUT)
        return [(message["type"], message.get("code", ""), stamp) for stamp, message in done]

    async def _beat(self, socket: Socket, interval: float) -> None:
        """Heartbeat every ``interval`` from a random start, so that beats spread evenly."""
        loop = asyncio.get_running_loop()
        due = loop.time() + random.uniform(0, interval)
        seq = 0
        try:
            while not socket.closed:
                await asyncio.sleep(max(0.0, due - loop.time()))
                due += interval
                seq += 1
                try:
                    sent, answer = socket.request({"type": "heartbeat", "seq": seq},
                                                  "heartbeat_ack")  # fmt: skip
                    stamp, _ = await asyncio.wait_for(answer, ANSWER_TIMEOUT)
                except (Closed, TimeoutError):
                    if not socket.closed:
                        self.lost += 1
                    continue
                self.rtts.append(stamp - sent)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self.beats.discard(task)

    async def take_rtts(self) -> dict[str, Any]:
        """The heartbeat round trips since the last call, and how many got no answer."""
        rtts, self.rtts = self.rtts, []
        lost, self.lost = self.lost, 0
        return {"rtts": rtts, "lost": lost}

    async def record(self, groups: list[str], types: list[str]) -> None:
        """Keep the stamp of every frame of ``types`` to sockets of ``groups`` from now on."""
        self.recording = (frozenset(groups), frozenset(types))
        self.frames = []

    async def await_frames(
        self, groups: list[str] | None, free: int | None, timeout: float
    ) -> list[tuple[float, str, int, int]]:
        """Wait (at most ``timeout``) until every socket of ``groups`` heard that the pool
        has ``free`` seats (``None``: wait the whole time); return the frames recorded
        since the last call and forget them."""
        self._awaited = free
        self._wanted = await self.count(groups) if groups else 0
        if free is None:
            await asyncio.sleep(timeout)
        elif len(self._heard.get(free, ())) < self._wanted:
            self._enough.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._enough.wait(), timeout)
        self._awaited = None
        frames, self.frames = self.frames, []
        self._heard = {}
        return frames

    async def send(self, group: str, message: Message) -> float:
        """Send ``message`` on every socket of ``group``; return when the first went."""
        return min(socket.send(message) for socket in self.groups[group])

    async def count(self, groups: list[str]) -> int:
        return sum(len(self.groups.get(group, [])) for group in groups)

    async def sources_used(self, group: str) -> dict[str, int]:
        """The open sockets of ``group`` per local address, as the kernel bound them."""
        counts: dict[str, int] = {}
        for socket in self.groups.get(group, []):
            if socket.transport is not None and not socket.closed:
                address = socket.transport.get_extra_info("sockname")[0]
                counts[address] = counts.get(address, 0) + 1
        return counts

    async def close(self, group: str) -> None:
        for socket in self.groups.pop(group, []):
            socket.close()

    async def join(
        self, port: int, hellos: list[Message], concurrency: int, beat: float, backoff: Backoff
    ) -> list[dict[str, Any]]:
        """Log in a :class:`Device` per hello, ``concurrency`` at once, each trying with
        ``backoff`` until welcomed, then heartbeating every ``beat``.

        Returns each device's :meth:`Device.report`, in the order of ``hellos``.
        """
        limit = asyncio.Semaphore(concurrency)
        devices = [Device(hello) for hello in hellos]
        self.devices += devices

        async def one(device: Device) -> None:
            async with limit:
                await self._welcome(device, port, beat, backoff, waits=None)

        await asyncio.gather(*(one(device) for device in devices))
        return [device.report() for device in devices]

    async def rejoin(self, port: int, beat: float, backoff: Backoff) -> None:
        """From now on, each device whose connection is lost logs in again on ``port``,
        once, with the same hello, by ``backoff``; their tries are counted afresh."""
        for device in self.devices:
            device.tries = 0
            device.failures.clear()
            self.returns.append(asyncio.create_task(self._return(device, port, beat, backoff)))

    async def rejoined(self, until: float) -> None:
        """Wait until every device of :meth:`rejoin` is welcomed again, or until the
        monotonic time ``until``: those not back by then stop trying."""
        if self.returns:
            _, late = await asyncio.wait(self.returns, timeout=max(0.0, until - time.monotonic()))
            for task in late:
                task.cancel()
            await asyncio.wait(self.returns)
            for task in self.returns:  # what failed in the worker, not in the server
                if not task.cancelled():
                    task.result()

    async def leave(self) -> list[dict[str, Any]]:
        """Close every device's connection, for good; each device's :meth:`Device.report`
        from just before."""
        reports = [device.report() for device in self.devices]
        for task in self.returns:
            task.cancel()
        for device in self.devices:
            if device.socket is not None:
                device.socket.close()
        self.devices, self.returns = [], []
        return reports

    async def _return(self, device: Device, port: int, beat: float, backoff: Backoff) -> None:
        assert device.socket is not None
        await device.socket.ended
        device.lost = time.monotonic()
        await self._welcome(device, port, beat, backoff, waits=0)

    async def _welcome(
        self, device: Device, port: int, beat: float, backoff: Backoff, waits: int | None
    ) -> None:
        """Try until welcomed, waiting by ``backoff`` before each try (but the first,
        if ``waits`` is None: a first login), then heartbeat."""
        while True:
            if waits is not None:
                await asyncio.sleep(backoff.delay(waits))
            waits = 0 if waits is None else waits + 1
            device.tries += 1
            failure = await self._try(device, port, backoff.timeout)
            if failure is None:
                break
            device.failures[failure] += 1
        assert device.socket is not None
        self.beats.add(asyncio.create_task(self._beat(device.socket, beat)))

    async def _try(self, device: Device, port: int, timeout: float) -> str | None:
        """One connection and hello: None once welcomed, else what went wrong (the
        error's code, or the name of the exception)."""
        socket = None
        try:
            async with asyncio.timeout(timeout):
                socket = await Socket.open(
                    "127.0.0.1", port, "/ws/device", None, self._local_host()
                )
            _, answer = socket.request(device.hello, "welcome", "error")
            async with asyncio.timeout(timeout):
                stamp, message = await answer
        except (OSError, Closed, InvalidHandshake) as exc:  # refused, closed, timed out
            if socket is not None:
                socket.close()
            return type(exc).__name__ + (" (connecting)" if socket is None else " (hello)")
        if message["type"] == "error":
            socket.close()
            return str(message["code"])
        device.socket = socket
        device.welcomes.append((stamp, message["license"]))
        return None

    async def cpu(self) -> float:
        """This process's CPU seconds so far."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
