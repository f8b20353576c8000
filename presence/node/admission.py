"""Admission of logins: refused at once when they pile up, never queued without bound.

A node counts the logins it is deciding, and how fast they are decided: logins
done per second since they began to pile up, once :data:`SHED_QUEUE` of them
are done (fewer say little: a burst's first commit may decide a single login,
after a commit's length). When :data:`SHED_QUEUE` or more are pending and a new
one would wait longer than :data:`BUDGET` by that pace (or the oldest already
has), the new one is refused at once with ``unavailable``, which the device
retries later: a storm is answered quickly, and the sessions already served
stay fast. A few slow logins are waited for: that is a slow database, not a
storm.

Until the pace is known, logins admitted while many are pending get a deadline
instead: a transaction that cannot begin by it does not begin
(``Store.transaction``), and the login is refused then.

The node admits every login (its own work: token lookups, CPU), and each
domain's decisions apart (they take the domain's lock one at a time, on every
node), so that one domain's storm does not turn others away.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator

from ..errors import Overloaded
from ..metrics import METRICS

#: The longest a login should wait on this node before it is decided, in seconds
#: (at most half the lease TTL)...
BUDGET = 2.0
#: ... once this many logins are pending.
SHED_QUEUE = 32


class _Pending:
    __slots__ = ("since", "done")

    def __init__(self, since: float) -> None:
        self.since = since
        self.done = False


class _Queue:
    """Pending logins, oldest first (those done are dropped from the head), and how
    many were done since the queue formed: its pace is the time per login done
    since then, not the time between two done (a group commit decides many
    logins at once, then none for a commit's length)."""

    __slots__ = ("pending", "count", "formed", "completed")

    def __init__(self, now: float) -> None:
        self.pending: deque[_Pending] = deque()
        self.count = 0
        self.formed = now
        self.completed = 0

    def full(self, now: float, budget: float, shed_at: int) -> bool:
        if self.count < shed_at:
            return False
        if now - self.pending[0].since > budget:
            return True
        # By the pace, once known: count x (time since formed / completed) > budget.
        return self.completed >= shed_at and self.count * (now - self.formed) > (
            budget * self.completed
        )

    def done(self) -> None:
        self.completed += 1
        self.count -= 1
        while self.pending and self.pending[0].done:
            self.pending.popleft()


class Admission:
    """Admits logins of each key (a domain, or the whole node) while they do not pile up."""

    def __init__(
        self,
        stage: str,
        clock: Callable[[], float],
        budget: float = BUDGET,
        shed_at: int = SHED_QUEUE,
    ) -> None:
        self.stage = stage  # in the metrics
        self.clock = clock
        self.budget = budget
        self.shed_at = shed_at
        self._queues: dict[str, _Queue] = {}

    @contextlib.contextmanager
    def admit(self, arrived: float, key: str = "") -> Iterator[float | None]:
        """Count a login that ``arrived`` then while it runs; raise :exc:`Overloaded` at
        once if the logins of ``key`` pile up.

        Yields the deadline by which its transactions must begin, if many are pending.
        """
        now = self.clock()
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(now)
        elif queue.full(now, self.budget, self.shed_at):
            METRICS.overloaded.inc(self.stage)
            raise Overloaded
        pending = _Pending(now)
        queue.pending.append(pending)
        queue.count += 1
        try:
            yield arrived + self.budget if queue.count >= self.shed_at else None
        finally:
            pending.done = True
            queue.done()
            if not queue.count:
                del self._queues[key]
