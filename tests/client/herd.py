"""A herd of Python clients through a server's SIGKILL and restart.

`herd` gives every client one seat of one pool (seat users, N seats), kills
the server (SIGKILL) and starts it again on the same database and port, and
measures how the clients come back: when each connection reached the server
after the kill (accepted by the server, as the test's proxy in front of it
sees), per second, and how long until every client says it holds its seat
again. The clients do it all by themselves.

    python -m tests.client --clients 3000 --down 12   # a bigger run than the suite's
    python -m tests.client --down 0                   # started again at once
    python -m tests.client --clients 100 --restarts 20  # one herd through 20 restarts
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from server.client import Domain, Harness, Member, Message
from servers import ServerProcess

from presence.client import Client

from .proxy import Proxy

#: The lease TTL: long enough for the whole herd to come back, which takes
#: up to a wait of 20 s (the client's cap) after the restart.
LEASE_TTL = 40.0
HEARTBEAT = 10.0
#: Requests to the admin API, and starts of clients, at once.
CONCURRENCY = 32
#: Seconds for every client to come back after the restart.
RECOVERY_TIMEOUT = 60.0


@dataclass
class Herd:
    """What one run measured; times in seconds."""

    clients: int
    arrivals: list[float] = field(default_factory=list)  # after the restart, from the kill
    restart: float = 0.0  # from the kill until the server was healthy again
    all_back: float = 0.0  # from the restart until the last client was back
    recovered: Counter[bool] = field(default_factory=Counter)

    def per_second(self) -> list[int]:
        """Arrivals in each second from the first one."""
        if not self.arrivals:
            return []
        first = min(self.arrivals)
        counts = Counter(int(at - first) for at in self.arrivals)
        return [counts[second] for second in range(max(counts) + 1)]

    def busiest_second(self) -> int:
        """The most arrivals within any one second (a sliding window)."""
        times = sorted(self.arrivals)
        start = busiest = 0
        for end, at in enumerate(times):
            while times[start] <= at - 1.0:
                start += 1
            busiest = max(busiest, end - start + 1)
        return busiest

    def max_share(self) -> float:
        return self.busiest_second() / len(self.arrivals)

    def summary(self) -> str:
        return (
            f"{self.clients} clients: server back {self.restart:.2f} s after the kill, "
            f"{len(self.arrivals)} connections reached it after the restart, "
            f"per second {self.per_second()}; busiest second {self.busiest_second()} "
            f"= {self.max_share():.1%}; all back {self.all_back:.2f} s after the restart; "
            f"recovered {dict(self.recovered)}"
        )


async def seat_users(domain: Domain, pool: Message, count: int) -> list[Member]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one() -> Member:
        async with limit:
            return await domain.seat_user(pool)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def herd(workdir: Path, clients: int, down: float = 0.0, restarts: int = 1) -> list[Herd]:
    """Run the herd of `clients` against a server of its own in `workdir`,
    killed `restarts` times and started again `down` seconds after each kill;
    a report per restart."""
    reports = []
    process = ServerProcess(workdir, lease_ttl=LEASE_TTL, heartbeat_interval=HEARTBEAT)
    with process:
        async with Harness(process.server) as harness, Proxy(process.port) as proxy:
            domain = await harness.new_domain(seat_licenses=clients)
            pool = await domain.pool(clients)
            members = await seat_users(domain, pool, clients)
            herd = [
                Client(proxy.ws_url, token=member.token, device_id=f"herd-{n}", kind="desktop")
                for n, member in enumerate(members)
            ]
            back: dict[Client, tuple[float, bool]] = {}
            every_one_back = asyncio.Event()

            async def watch(client: Client) -> None:
                async for message in client.messages():
                    if message["type"] == "reconnected":
                        back[client] = (time.monotonic(), message["recovered"])
                        if len(back) == clients:
                            every_one_back.set()

            watchers = [asyncio.create_task(watch(client)) for client in herd]
            limit = asyncio.Semaphore(CONCURRENCY)

            async def start(client: Client) -> Message:
                async with limit:
                    return await client.start()

            licenses = dict(zip(herd, await asyncio.gather(*map(start, herd)), strict=True))
            await domain.wait_pool(pool, occupied=clients, timeout=30)

            loop = asyncio.get_running_loop()
            for _ in range(restarts):
                report = Herd(clients)
                back.clear()
                every_one_back.clear()
                killed, killed_at = time.monotonic(), loop.time()
                await asyncio.to_thread(process.kill)
                await asyncio.sleep(down)  # the time a deploy or a reboot keeps it away
                await asyncio.to_thread(process.start)
                restarted = time.monotonic()
                report.restart = restarted - killed
                async with asyncio.timeout(RECOVERY_TIMEOUT):
                    await every_one_back.wait()
                report.all_back = max(at for at, _ in back.values()) - restarted
                report.recovered = Counter(recovered for _, recovered in back.values())
                report.arrivals = [at - killed_at for at in proxy.arrivals if at > killed_at]
                reports.append(report)

                entry = await domain.pool_presence(pool)
                held = {holder["device"]["id"]: holder["seat"] for holder in entry["holders"]}
                assert held == {c.device["id"]: licenses[c]["seat"] for c in herd}, "seats moved"
                assert sorted(held.values()) == list(range(1, clients + 1)), "a seat held twice"

            await asyncio.gather(*(client.stop() for client in herd))
            await asyncio.gather(*watchers)
    return reports


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.client", description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--down", type=float, default=0.0, help="seconds between kill and start")
    parser.add_argument("--restarts", type=int, default=1, help="kills and starts, one by one")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/presence-herd"))
    args = parser.parse_args()
    workdir = args.workdir / str(time.time_ns())
    reports = asyncio.run(herd(workdir, args.clients, args.down, args.restarts))
    for n, report in enumerate(reports, 1):
        print(f"restart {n}: {report.summary()}")
    return 0 if all(report.recovered[True] == args.clients for report in reports) else 1
