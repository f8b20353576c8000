"""Work done in batches: what arrives while a batch runs waits, and goes in the next one.

A transaction's BEGIN and COMMIT, a disk write, a domain's lock passed from
node to node and each statement's round trip cost the same for one login as
for a hundred. Logins done one at a time pay them each; gathered, a storm
pays them once per batch, and a lone login still goes at once (its batch is
itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Job(Generic[T, R]):
    """One item of a batch, and the future its answer goes in."""

    __slots__ = ("item", "answer")

    def __init__(self, item: T) -> None:
        self.item = item
        self.answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()

    def give(self, answer: R | Exception) -> None:
        """Answer, unless the one waiting for it was cancelled."""
        if self.answer.done():
            return
        if isinstance(answer, Exception):
            self.answer.set_exception(answer)
        else:
            self.answer.set_result(answer)


class Batches(Generic[T, R]):
    """Batches of each key (a domain, say), one at a time per key.

    ``run(key, jobs)`` does a batch and answers each job; if it raises, the
    jobs it left unanswered get its exception (or are cancelled with it). A
    batch takes at most ``limit`` jobs, and of the jobs with the same
    ``distinct`` key only the first: the others wait for a later batch.
    """

    def __init__(
        self,
        run: Callable[[str, list[Job[T, R]]], Awaitable[None]],
        limit: int,
        distinct: Callable[[T], Hashable] = id,
    ) -> None:
        self._run = run
        self._limit = limit
        self._distinct = distinct
        self._waiting: dict[str, list[Job[T, R]]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, item: T) -> R:
        """Do ``item`` in the next batch of ``key``; its answer."""
        job: Job[T, R] = Job(item)
        self._waiting.setdefault(key, []).append(job)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._drain(key), name="presence-batches")
        return await job.answer

    async def _drain(self, key: str) -> None:
        try:
            while waiting := self._waiting.pop(key, None):
                batch: list[Job[T, R]] = []
                later: list[Job[T, R]] = []
                taken: set[Hashable] = set()
                for job in waiting:
                    distinct = self._distinct(job.item)
                    if distinct in taken or len(batch) == self._limit:
                        later.append(job)
                    else:
                        taken.add(distinct)
                        batch.append(job)
                if later:
                    self._waiting[key] = later
                await self._one(key, batch)
        finally:
            del self._running[key]
            for job in self._waiting.pop(key, []):  # cancelled with jobs waiting
                job.answer.cancel()

    async def _one(self, key: str, batch: list[Job[T, R]]) -> None:
        try:
            await self._run(key, batch)
        except Exception as exc:
            for job in batch:
                job.give(exc)
        except BaseException:
            for job in batch:
                job.answer.cancel()
            raise
