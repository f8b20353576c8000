"""Capacity alerts carried out in the store (the rules: :mod:`presence.core.alerts`).

``pool_full`` is decided in the transaction that denies the seat
(:func:`presence.leases.commit`). Occupancy held for a
while, and a pool's recovery, happen with no request to notice them: every
node's :func:`watch` looks at the watched pools every tick, and decides in
the pool's domain transaction, so that nodes looking at once log an alert
once.
"""

from __future__ import annotations

import asyncio
import logging

from . import leases
from .core import alerts
from .core.model import Pool
from .core.seats import Decisions
from .errors import StorageError
from .storage import Store, Tx

logger = logging.getLogger(__name__)


async def watch(store: Store, tick: float) -> None:
    """Every ``tick`` seconds, log the alerts and recoveries that are due."""
    while True:
        await asyncio.sleep(tick)
        try:
            await look(store)
        except StorageError as exc:
            logger.warning("capacity alerts: %s", exc)
        except Exception:
            logger.exception("capacity alerts failed")


async def look(store: Store) -> None:
    """Log the alerts and recoveries due now, changing only pools whose state moves."""
    async with store.transaction() as tx:
        watched = await tx.watched_pools()
        now = await tx.now()
    for pool, occupied, state in watched:
        if alerts.observe(pool, state, occupied, now)[0] != state:
            async with store.transaction(pool.domain_id) as tx:
                await _observe(tx, pool)


async def _observe(tx: Tx, seen: Pool) -> None:
    """Bring a pool's alert state up to date, read again in its domain's turn."""
    pool = await tx.pool(seen.domain_id, seen.id)
    if pool is None:
        return
    state = await tx.alert_state(pool.domain_id, pool.id)
    occupied = len(await tx.leases(pool.domain_id, pools=[pool.id]))
    after, logged = alerts.observe(pool, state, occupied, await tx.now())
    if after != state:
        await tx.set_alert_state(pool.domain_id, pool.id, after)
    if logged:
        await leases.commit(tx, pool.domain_id, Decisions(events=logged))
