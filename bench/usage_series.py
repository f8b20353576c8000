"""How long usage over time takes on a year of history.

Fills a SQLite file in a temporary directory with a simulated year of one
domain's pools (logins through the working day, calls, denials when a pool is
full, a queue that is served as seats free up or given up after a while),
then times ``Admin.usage_series`` for the year at a daily step, for 2,000
hourly steps, and ``Admin.usage`` for the year, each the median of
``--repeat`` runs, with what reading the period's history
(``Tx.usage_history``, in one transaction) and computing took apart, and how
long the node's event loop was held up at most while each call ran.

    python -m bench.usage_series [--days 365] [--pools 5] [--seats 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from presence.admin import SERVER, Admin
from presence.core.model import Domain, Event, Pool, QueueSample
from presence.core.usage import History, history_of, series, usage
from presence.storage import store_for_url

DAY = 86_400.0
BATCH = 10_000  # events per transaction while filling


def simulate(pool: str, seats: int, start: float, days: int, rng: random.Random) -> tuple[
    list[Event], list[QueueSample]
]:  # fmt: skip
    """A pool's events and queue lengths: about 5 logins per seat per working day."""
    events: list[Event] = []
    samples: list[QueueSample] = []
    todo: list[tuple[float, int, str, int]] = []  # (time, tie, what, user)
    tie = 0

    def later(at: float, what: str, user: int) -> None:
        nonlocal tie
        tie += 1
        heapq.heappush(todo, (at, tie, what, user))

    for day in range(days):
        opens = start + day * DAY + 7 * 3600
        for _ in range(int(rng.gauss(5 * seats, seats))):
            later(opens + rng.uniform(0, 12 * 3600), "arrive", rng.randrange(10 * seats))
    held: dict[int, int] = {}  # user: seat
    queue: list[int] = []

    def log(type_: str, at: float, user: int, seat: int | None = None) -> None:
        events.append(Event(type_, at, "bench", f"u{user}", f"pc-{user}", pool, seat))

    def grant(at: float, user: int) -> None:
        seat = held[user] = min(set(range(1, seats + 1)) - set(held.values()))
        log("seat_granted", at, user, seat)
        ends = at + rng.expovariate(1 / 7200)
        for _ in range(rng.randrange(4)):
            call = rng.uniform(at, ends)
            later(call, "call_started", user)
            later(min(ends, call + rng.expovariate(1 / 900)), "call_ended", user)
        later(ends, "leave", user)

    while todo:
        at, _, what, user = heapq.heappop(todo)
        if what == "arrive" and user not in held and user not in queue:
            if len(held) < seats and not queue:
                grant(at, user)
            else:
                log("seat_denied", at, user)
                if rng.random() < 0.5:
                    queue.append(user)
                    samples.append(QueueSample("bench", pool, at, len(queue)))
                    later(at + rng.uniform(60, 1800), "give_up", user)
        elif what == "give_up" and user in queue:
            queue.remove(user)
            samples.append(QueueSample("bench", pool, at, len(queue)))
        elif what in ("call_started", "call_ended") and user in held:
            log(what, at, user, held[user])
        elif what == "leave" and user in held:
            log("seat_released", at, user, held.pop(user))
            if queue:
                grant(at, queue.pop(0))
                samples.append(QueueSample("bench", pool, at, len(queue)))
    return events, samples


async def timed(run: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """The median time of ``repeat`` runs, and the longest the event loop was
    held up meanwhile (the largest gap between the ticks of a task that sleeps
    10 ms at a time), in seconds."""
    took = []
    ticks = [time.perf_counter()]
    gap = 0.0

    async def ticker() -> None:
        nonlocal gap
        while True:
            await asyncio.sleep(0.01)
            ticks.append(time.perf_counter())
            gap = max(gap, ticks[-1] - ticks[-2])

    for _ in range(repeat):
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)  # the ticker starts before the run
        ticks.append(time.perf_counter())
        began = time.perf_counter()
        await run()
        took.append(time.perf_counter() - began)
        gap = max(gap, time.perf_counter() - ticks[-1])  # held up at the end
        ticking.cancel()
    return statistics.median(took), gap


def clocked(run: Callable[[], Any], repeat: int) -> float:
    """The median time of ``repeat`` runs, in seconds."""
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        took.append(time.perf_counter() - began)
    return statistics.median(took)


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = os.path.join(workdir, "presence.db")
        store = store_for_url(f"sqlite:///{path}", "bench")
        await store.open(30.0)
        try:
            admin = Admin(store, None)
            pools = [Pool("bench", f"p{n}", f"Pool {n}", args.seats) for n in range(args.pools)]
            seat_licenses = args.pools * args.seats
            await admin.create_domain(SERVER, Domain("bench", "B", "enterprise", 0, seat_licenses))
            for pool in pools:
                await admin.create_pool(SERVER, pool)
            began = time.perf_counter()
            end = time.time()
            start = end - args.days * DAY
            rng = random.Random(args.seed)
            events: list[Event] = []
            samples: list[QueueSample] = []
            for pool in pools:
                pool_events, pool_samples = simulate(pool.id, args.seats, start, args.days, rng)
                events += pool_events
                samples += pool_samples
            events.sort(key=lambda e: e.at)
            for first in range(0, len(events), BATCH):
                async with store.transaction("bench") as tx:
                    await tx.add_events(events[first : first + BATCH])
            async with store.transaction("bench") as tx:
                for s in samples:
                    await tx.record_queue(s.domain_id, s.pool, s.at, s.queued)
            print(
                f"{len(events):,} events and {len(samples):,} queue samples over {args.days} "
                f"days, {args.pools} pools x {args.seats} seats: filled in "
                f"{time.perf_counter() - began:.1f} s, {os.path.getsize(path) / 1e6:.0f} MB"
            )
            hourly = end - 2000 * 3600
            year = history_of(pools, events, samples, start, end)
            hours = history_of(pools, events, samples, hourly, end)
            runs: list[tuple[str, float, Callable[[], Awaitable[Any]], Callable[[], Any]]] = [
                (f"usage_series, {args.days} daily steps", start,
                 lambda: admin.usage_series(SERVER, "bench", start, end, DAY),
                 lambda: series(pools, year, start, end, DAY)),
                ("usage_series, 2,000 hourly steps", hourly,
                 lambda: admin.usage_series(SERVER, "bench", hourly, end, 3600),
                 lambda: series(pools, hours, hourly, end, 3600)),
                (f"usage, {args.days} days", start,
                 lambda: admin.usage(SERVER, "bench", start, end),
                 lambda: usage(pools, year, start, end)),
            ]  # fmt: skip
            for name, since, call, core in runs:

                async def read(since: float = since) -> History:
                    async with store.transaction("bench") as tx:
                        return await tx.usage_history("bench", since, end)

                whole, held_up = await timed(call, args.repeat)
                reading, _ = await timed(read, args.repeat)
                computing = clocked(core, args.repeat)
                print(
                    f"{name}: {whole:.3f} s, of which reading {reading:.3f} s "
                    f"and computing {computing:.3f} s; the event loop held up "
                    f"{held_up * 1000:.0f} ms at most"
                )
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--pools", type=int, default=5)
    parser.add_argument("--seats", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
