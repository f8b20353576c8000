"""The load generator's processes, driven from the runner.

One :class:`Fleet` is a few :mod:`bench.worker` processes. :meth:`Fleet.call`
sends a command to every worker at once, each with its own arguments (its
share of the sockets), and gathers their results in worker order.

The workers connect from source addresses 127.0.0.2, 127.0.0.3, ... (all of
127.0.0.0/8 is loopback on Linux), dealt among them. Devices come from many
addresses, the node caps the connections of one address, and a client socket
bound to one address has only the ephemeral ports of
``net.ipv4.ip_local_port_range`` (28,232 by default) for one server port.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import multiprocessing
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from presence.config import Config

from . import worker

T = TypeVar("T")

#: The longest any one command may run; a worker that takes longer has hung.
COMMAND_TIMEOUT = 300.0
#: Source addresses unless told, so many that no address holds more than a few
#: hundred sockets at the full run's sizes, nor more than a few logins in flight.
SOURCES = 500
FIRST_SOURCE = ipaddress.IPv4Address("127.0.0.2")


#: Files a process opens besides its sockets (a server's database, listening socket, logs).
SPARE_FILES = 64


def plan_sockets(
    parser: argparse.ArgumentParser, sockets: int, sources: int | None, workers: int, slack: int = 0
) -> tuple[int, int | None]:
    """The source addresses (``sources`` if given) for ``sockets`` held at once
    over ``workers``, and the cap on one address's connections the node needs
    (``None``: its default will do); ``parser.error`` if the ephemeral ports or
    the open-files limit cannot take them. ``slack``: sockets a worker may get
    beyond its even share."""
    sources = sources or sources_for(sockets)
    if not 1 <= sources <= 2**24 - 3:
        parser.error("--sources must be from 1 to 2**24 - 3 (127.0.0.2 to 127.255.255.254)")
    most = most_per_address(sockets, sources, workers, slack)
    if most > ephemeral_ports():
        parser.error(f"{most:,} sockets from one address, over its {ephemeral_ports():,} "
                     "ephemeral ports: give more --sources")  # fmt: skip
    files = worker.open_files_limit()
    if sockets + SPARE_FILES > files:
        parser.error(f"{sockets:,} sockets at once, but a server process may open only "
                     f"{files:,} files (the hard RLIMIT_NOFILE, which only a process with "
                     "CAP_SYS_RESOURCE may raise)")  # fmt: skip
    if math.ceil(sockets / workers) + SPARE_FILES > files:
        enough = math.ceil(sockets / (files - SPARE_FILES))
        parser.error(f"{sockets:,} sockets over {workers} workers, each limited to "
                     f"{files:,} files: give --workers {enough}")  # fmt: skip
    # The node's cap on one address's connections, raised if its default is too low.
    return sources, most if most > Config().max_connections_per_address else None


def most_per_address(sockets: int, sources: int, workers: int, slack: int = 0) -> int:
    """At most how many of ``sockets`` one of ``sources`` addresses may hold, as
    the fleet deals them: to the workers in turn (``slack`` more to one than its
    even share at most), each worker's over its own addresses in turn."""
    share = math.ceil(sockets / workers) + slack
    load: Counter[str] = Counter()
    for addresses in source_addresses(sources, workers):
        for address in addresses:
            load[address] += math.ceil(share / len(addresses))
    return max(load.values())


class WorkerFailed(Exception):
    """A worker raised, hung or died; the message carries its traceback."""


def split(items: Sequence[T], parts: int, run: int = 1) -> list[list[T]]:
    """``items`` dealt round-robin into ``parts`` lists, ``run`` at a time."""
    runs = [items[start : start + run] for start in range(0, len(items), run)]
    return [[item for dealt in runs[n::parts] for item in dealt] for n in range(parts)]


def ephemeral_ports() -> int:
    """How many local ports one source address has for one server port."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
        low, high = (int(port) for port in ports.read().split())
    return high - low + 1


def sources_for(sockets: int, ports: int | None = None) -> int:
    """The default number of source addresses for ``sockets`` open at once:
    :data:`SOURCES`, or more if that many would need over 90% of an address's
    ephemeral ports."""
    ports = ephemeral_ports() if ports is None else ports
    return max(SOURCES, math.ceil(sockets / (0.9 * ports)))


def source_addresses(count: int, workers: int) -> list[list[str]]:
    """``count`` addresses from :data:`FIRST_SOURCE` on, dealt to ``workers``;
    with fewer addresses than workers, workers share them."""
    if not 1 <= count <= 2**24 - 3:  # within 127.0.0.0/8, short of its broadcast
        raise ValueError(f"cannot connect from {count} addresses of 127.0.0.0/8")
    addresses = [str(FIRST_SOURCE + n) for n in range(count)]
    if count < workers:
        return [[addresses[n % count]] for n in range(workers)]
    return split(addresses, workers)


class Fleet:
    def __init__(self, size: int, sources: int = SOURCES) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[BaseProcess] = []
        self.sources = source_addresses(sources, size)
        for n in range(size):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=worker.main,
                args=(theirs, n, self.sources[n]),
                name=f"bench-worker-{n}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.pipes.append(ours)
            self.processes.append(process)

    @property
    def size(self) -> int:
        return len(self.pipes)

    def call(self, command: str, each: Sequence[dict[str, Any]]) -> list[Any]:
        """Run ``command`` on every worker, worker ``n`` with arguments ``each[n]``."""
        for pipe, arguments in zip(self.pipes, each, strict=True):
            pipe.send((command, arguments))
        # Every reply is read before any failure is raised, so no pipe is left out of step.
        replies = [self._reply(n, command, check=False) for n in range(self.size)]
        for n, (status, result) in enumerate(replies):
            if status != "ok":
                raise WorkerFailed(f"worker {n} failed in {command}:\n{result}")
        return [result for _, result in replies]

    def _reply(self, n: int, command: str, check: bool = True) -> Any:
        pipe = self.pipes[n]
        if not pipe.poll(COMMAND_TIMEOUT):
            raise WorkerFailed(f"worker {n} did not finish {command} in {COMMAND_TIMEOUT}s")
        try:
            status, result = pipe.recv()
        except EOFError:
            raise WorkerFailed(f"worker {n} died during {command}") from None
        if not check:
            return status, result
        if status != "ok":
            raise WorkerFailed(f"worker {n} failed in {command}:\n{result}")
        return result

    def call_one(self, n: int, command: str, **arguments: Any) -> Any:
        """Run ``command`` on worker ``n`` only."""
        self.pipes[n].send((command, arguments))
        return self._reply(n, command)

    def call_all(self, command: str, **arguments: Any) -> list[Any]:
        """Run ``command`` with the same arguments on every worker."""
        return self.call(command, [arguments] * self.size)

    def cpu(self) -> float:
        """CPU seconds used by all workers so far."""
        return float(sum(self.call_all("cpu")))

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("exit", {}))
            except OSError:
                pass
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
