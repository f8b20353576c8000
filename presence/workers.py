"""``presence serve --workers N``: N nodes in N processes behind one port, one
set of per-address limits.

The supervisor opens the listening socket, starts the workers (``spawn``) and
starts again any that exits. It also keeps the node's :class:`~.web.guard.Guard`:
each worker asks it over a socket pair of its own whether a connection may
open and an authentication may be judged (:class:`SharedGate`), so the limits
hold for the node as a whole, however the kernel spreads connections over
the workers. A worker's end of its pair closes when the worker exits, however
it does: the supervisor then lets go of what it had counted for it.

On the pair, each message is a JSON array, prefixed by its length (4 bytes,
big-endian). A worker asks ``[id, "connect" | "admit", address]`` and is
answered ``[id, true | false]``; it tells ``[0, "disconnect" | "passed" |
"failed", address]`` without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import signal
import socket
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

from .config import Config
from .web.guard import Gate, Guard, LocalGate

#: How a worker runs its node: on the shared listening socket, with the shared gate.
RunNode = Callable[[Config, list[socket.socket], Gate], None]

RESTART_PAUSE = 0.5  # seconds before a worker that exited is started again
STOP_TIMEOUT = 10.0  # seconds a worker may take to stop before it is killed
_HEADER = 4

#: Connections waiting to be accepted: when a node dies, its devices all come
#: to the others at once. The kernel caps it (net.core.somaxconn, 4,096 on
#: Linux since 5.4); uvicorn's default of 2,048 dropped connections to retry.
LISTEN_BACKLOG = 65_535
# What undoes a granted request whose asker is gone.
_UNDO = {"connect": "disconnect", "admit": "passed"}


def supervise(config: Config, workers: int, run_node: RunNode) -> None:
    """Run ``workers`` nodes in processes sharing one listening socket and one
    gate, until SIGTERM or SIGINT stops them all."""
    listener = socket.create_server((config.host, config.port), backlog=LISTEN_BACKLOG)
    asyncio.run(_Supervisor(config, listener, run_node).run(workers))


class _Supervisor:
    def __init__(self, config: Config, listener: socket.socket, run_node: RunNode) -> None:
        self.config = config
        self.listener = listener
        self.run_node = run_node
        guard = Guard(config.max_connections_per_address, config.auth_failures_per_minute)
        self.gate = LocalGate(guard)
        self.context = multiprocessing.get_context("spawn")
        self.stopping = asyncio.Event()

    async def run(self, workers: int) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        url = f"http://{self.config.host}:{self.config.port}"
        print(f"presence: {workers} workers on {url}", flush=True)
        await asyncio.gather(*(self._keep_one() for _ in range(workers)))

    async def _keep_one(self) -> None:
        """Run a worker, and a new one each time it exits, until stopping."""
        while not self.stopping.is_set():
            ours, theirs = socket.socketpair()
            process = self.context.Process(
                target=_work, args=(self.run_node, self.config, self.listener, theirs)
            )
            process.start()
            theirs.close()  # the worker's copy alone keeps its end open
            serving = asyncio.create_task(serve_worker(self.gate, ours))
            exited = asyncio.create_task(_exit_of(process))
            stopping = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not exited.done():
                _signal(process, signal.SIGTERM)
                done, _ = await asyncio.wait({exited}, timeout=STOP_TIMEOUT)
                if not done:
                    _signal(process, signal.SIGKILL)
                    await exited
            await serving
            if not self.stopping.is_set():
                print(f"presence: worker {process.pid} exited ({process.exitcode})", flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), RESTART_PAUSE)


async def _exit_of(process: BaseProcess) -> None:
    """Wait, without a thread, until ``process`` exits."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():  # called again while the waiter has not woken yet
            exited.set_result(None)

    loop.add_reader(process.sentinel, readable)
    try:
        await exited
    finally:
        loop.remove_reader(process.sentinel)
    process.join()


def _signal(process: BaseProcess, signum: int) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)


def _work(
    run_node: RunNode, config: Config, listener: socket.socket, channel: socket.socket
) -> None:
    """A worker process: one node, asking the supervisor over ``channel``."""
    run_node(config, [listener], SharedGate(channel))


async def serve_worker(gate: LocalGate, channel: socket.socket) -> None:
    """Answer one worker's requests on ``channel`` until it closes; then let go
    of whatever the worker still held."""
    reader, writer = await asyncio.open_connection(sock=channel)
    held: dict[tuple[str, str], int] = {}  # (what, address): count; what is _UNDO's key
    admissions: set[asyncio.Task[None]] = set()

    def hold(what: str, address: str, granted: bool, ident: int) -> None:
        if granted:
            held[what, address] = held.get((what, address), 0) + 1
        writer.write(_frame([ident, granted]))

    def let_go(what: str, address: str) -> bool:
        count = held.get((what, address), 0)
        if count > 1:
            held[what, address] = count - 1
        else:
            held.pop((what, address), None)
        return count > 0

    async def admit(ident: int, address: str) -> None:
        hold("admit", address, await gate.admit(address), ident)

    try:
        while (message := await _receive(reader)) is not None:
            ident, what, address = message
            if what == "connect":
                hold(what, address, await gate.connect(address), ident)
            elif what == "admit":  # may wait for others to be judged: in a task
                task = asyncio.create_task(admit(ident, address))
                admissions.add(task)
                task.add_done_callback(admissions.discard)
            elif what == "disconnect" and let_go("connect", address):
                gate.disconnect(address)
            elif what in ("passed", "failed") and let_go("admit", address):
                gate.judged(address, failed=what == "failed")
    finally:
        for task in admissions:
            task.cancel()
        await asyncio.gather(*admissions, return_exceptions=True)
        for (what, address), count in held.items():
            for _ in range(count):
                if what == "connect":
                    gate.disconnect(address)
                else:
                    gate.judged(address, failed=False)
        writer.close()


def _stop_this_process() -> None:
    signal.raise_signal(signal.SIGTERM)  # as if told to: uvicorn stops gracefully


class SharedGate:
    """:class:`~.web.guard.Gate` kept by the supervisor, asked over ``channel``.

    If the supervisor is gone, ``on_lost`` is called, by default to stop this
    worker; from then on the gate lets everyone in, as no one keeps count.
    """

    def __init__(
        self, channel: socket.socket, on_lost: Callable[[], None] = _stop_this_process
    ) -> None:
        self._channel = channel
        self._on_lost = on_lost
        self._writer: asyncio.StreamWriter | None = None
        self._listening: asyncio.Task[None] | None = None
        self._asked: dict[int, tuple[asyncio.Future[bool], str, str]] = {}
        self._ids = itertools.count(1)
        self._lost = False

    async def start(self) -> None:
        reader, self._writer = await asyncio.open_connection(sock=self._channel)
        self._listening = asyncio.create_task(self._listen(reader))

    async def stop(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            await asyncio.gather(self._listening, return_exceptions=True)
        if self._writer is not None:
            self._writer.close()

    async def connect(self, address: str) -> bool:
        return await self._ask("connect", address)

    def disconnect(self, address: str) -> None:
        self._tell("disconnect", address)

    async def admit(self, address: str) -> bool:
        return await self._ask("admit", address)

    def judged(self, address: str, failed: bool) -> None:
        self._tell("failed" if failed else "passed", address)

    async def _ask(self, what: str, address: str) -> bool:
        if self._lost or self._writer is None:
            return True
        ident = next(self._ids)
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asked[ident] = answer, what, address
        self._writer.write(_frame([ident, what, address]))
        try:
            return await answer
        except asyncio.CancelledError:  # gone before its answer was read: give it back
            if answer.done() and not answer.cancelled() and answer.result():
                self._tell(_UNDO[what], address)
            raise

    def _tell(self, what: str, address: str) -> None:
        if not self._lost and self._writer is not None:
            self._writer.write(_frame([0, what, address]))

    async def _listen(self, reader: asyncio.StreamReader) -> None:
        while (message := await _receive(reader)) is not None:
            ident, granted = message
            answer, what, address = self._asked.pop(ident)
            if not answer.cancelled():
                answer.set_result(granted)
            elif granted:  # the asker is gone: give back what it was granted
                self._tell(_UNDO[what], address)
        self._lost = True
        for answer, _, _ in self._asked.values():
            if not answer.done():
                answer.set_result(True)
        self._asked.clear()
        self._on_lost()


def _frame(message: list[Any]) -> bytes:
    body = json.dumps(message).encode()
    return len(body).to_bytes(_HEADER, "big") + body


async def _receive(reader: asyncio.StreamReader) -> Any:
    """The next message, or ``None`` once the other end has closed."""
    try:
        size = int.from_bytes(await reader.readexactly(_HEADER), "big")
        return json.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
