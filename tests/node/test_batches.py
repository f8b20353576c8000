"""Batches: what arrives while a batch runs goes in the next one, each job answered once.

The batch function waits on an event the test sets, so each test decides
when a batch ends: no sleeps.
"""

from __future__ import annotations

import asyncio

import pytest

from presence.node.batches import Batches, Job


class Recorded:
    """A batch function that records each batch and answers every item doubled,
    once the test lets the batch end."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.go = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, key: str, jobs: list[Job[str, str]]) -> None:
        self.batches.append([job.item for job in jobs])
        await self.go.wait()
        self.go.clear()
        if self.fail is not None:
            raise self.fail
        for job in jobs:
            job.give(key + ":" + job.item * 2)


async def started(*coros: object) -> list[asyncio.Task[str]]:
    tasks = [asyncio.ensure_future(c) for c in coros]  # type: ignore[call-overload]
    for _ in range(3):
        await asyncio.sleep(0)  # each task submits; the first batch starts
    return tasks


async def test_what_arrives_while_a_batch_runs_goes_together_in_the_next() -> None:
    run = Recorded()
    batches: Batches[str, str] = Batches(run, limit=10)
    first = await started(batches.submit("acme", "a"))
    later = await started(batches.submit("acme", "b"), batches.submit("acme", "c"))
    assert run.batches == [["a"]]
    run.go.set()
    assert await first[0] == "acme:aa"
    await asyncio.sleep(0)
    assert run.batches == [["a"], ["b", "c"]]
    run.go.set()
    assert [await t for t in later] == ["acme:bb", "acme:cc"]


async def test_keys_batch_apart_and_a_batch_takes_one_item_per_distinct_key_up_to_its_limit() -> (
    None
):
    run = Recorded()
    batches: Batches[str, str] = Batches(run, limit=2, distinct=lambda item: item[0])
    tasks = await started(
        batches.submit("acme", "x1"),
        batches.submit("acme", "x2"),
        batches.submit("acme", "y1"),
        batches.submit("acme", "z1"),
        batches.submit("globex", "x3"),
    )
    assert run.batches == [["x1", "y1"], ["x3"]]  # x2 is a second x; z1 over the limit
    for _ in range(3):
        run.go.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    assert run.batches == [["x1", "y1"], ["x3"], ["x2", "z1"]]
    results = await asyncio.gather(*tasks)
    assert results == ["acme:x1x1", "acme:x2x2", "acme:y1y1", "acme:z1z1", "globex:x3x3"]


async def test_a_failed_batch_fails_its_jobs_and_the_next_batch_still_runs() -> None:
    run = Recorded()
    batches: Batches[str, str] = Batches(run, limit=10)
    failing = await started(batches.submit("acme", "a"))
    after = await started(batches.submit("acme", "b"))
    run.fail = RuntimeError("the database failed")
    run.go.set()
    with pytest.raises(RuntimeError, match="the database failed"):
        await failing[0]
    run.fail = None
    await asyncio.sleep(0)
    run.go.set()
    assert await after[0] == "acme:bb"


async def test_a_job_whose_waiter_was_cancelled_leaves_the_others_answered() -> None:
    run = Recorded()
    batches: Batches[str, str] = Batches(run, limit=10)
    gone, kept = await started(batches.submit("acme", "a"), batches.submit("acme", "b"))
    gone.cancel()
    run.go.set()
    assert await kept == "acme:bb"
    with pytest.raises(asyncio.CancelledError):
        await gone
