"""Housekeeping: every hour, rows that only record what was sent are deleted once older
than ``[database] sent_retention_days`` (``Store.prune_sent``): finished status webhook
deliveries and their events, text replies, wrong call-in PINs. Alerts, attempts and the
audit trail are kept: they are the history people ask about.

On PostgreSQL with several nodes, the rows of nodes silent for ``[cluster]
node_retention_hours`` go too (``Store.prune_nodes``: never one that still holds a lease or
an attempt of an open alert). Every node runs it; the delete is idempotent."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from voipalert.clock import Clock
from voipalert.store import Store

log = logging.getLogger("voipalert.housekeeping")
EVERY_SECONDS: Final = 3600.0


@dataclass
class Housekeeping:
    store: Store
    clock: Clock
    retention_days: int
    every_seconds: float = EVERY_SECONDS
    node_retention_hours: float | None = None  # set on a node of several (PostgreSQL)

    async def once(self) -> int:
        before = self.clock.now_utc() - timedelta(days=self.retention_days)
        pruned = await self.store.prune_sent(before)
        if pruned:
            log.info("housekeeping: %d sent webhook deliveries older than %d days deleted",
                     pruned, self.retention_days)  # fmt: skip
        if self.node_retention_hours is not None:
            gone = await self.store.prune_nodes(self.node_retention_hours * 3600)
            if gone:
                log.info("housekeeping: %d node(s) silent for %g hours deleted: %s",
                         len(gone), self.node_retention_hours, ", ".join(gone))  # fmt: skip
        return pruned

    async def run(self) -> None:
        while True:
            try:
                await self.once()
            except Exception:
                log.exception("housekeeping failed; trying again in an hour")
            await asyncio.sleep(self.every_seconds)
