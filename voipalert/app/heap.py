"""The heap and the garbage collector, kept out of the calls' way (docs/realtime.md §4).

A full collection walks every tracked object with the GIL held, in C, and no packet of any
call leaves meanwhile. Two sources of them are handled here:

* start-up's heap (voices, the app, the OpenAPI document, pydantic's schemas: some 80,000
  objects) is frozen before calls begin (``settle_heap``);
* what calls and alerts allocate later: with 200 calls' objects alive a full collection
  took 45-56 ms (measured with ``gc.callbacks`` around ``benchmarks.concurrent_calls
  --sipp 200``). CPython runs one automatically once ten collections of the middle
  generation have passed and the objects promoted since the last full one reach a quarter
  of what the oldest generation held then; a 40 s run at 200 calls stayed under that, a
  long mass alert does not. Automatic full collections are made ten times rarer
  (``FULL_COLLECTION_EVERY``) and ``QuietCollector`` runs them itself when no call is in
  progress, so cyclic garbage that reached the oldest generation is still reclaimed, at a
  moment when a stall is heard by nobody.

The young generations are collected as before: they are cheap (under 5 ms at 200 calls)
and hold most of the garbage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable
from typing import Final

log = logging.getLogger("voipalert.app")

FULL_COLLECTION_EVERY: Final = 100
"""Collections of the middle generation between two automatic full collections (CPython's
default is 10; a full collection also waits until a quarter of the old objects are new)."""
QUIET_CHECK_SECONDS: Final = 60.0


def settle_heap() -> int:
    """Collect start-up's garbage, move every object left out of the collector's sight, and
    make automatic full collections rarer. Returns how many objects were frozen.

    Frozen objects are never scanned again (measured 20-75 ms a full collection on 2 cores
    after start-up otherwise); what calls and alerts allocate later is collected as usual."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
    frozen = gc.get_freeze_count()
    log.debug("start-up heap frozen: %d objects out of the collector's scans", frozen)
    return frozen


class QuietCollector:
    """Runs a full collection every ``every_seconds`` when ``busy()`` says no call is in
    progress and the middle generation was collected since the last full one (something
    may have reached the oldest generation)."""

    def __init__(self, busy: Callable[[], bool], every_seconds: float = QUIET_CHECK_SECONDS):
        self._busy = busy
        self._every = every_seconds
        self.collections = 0

    def check(self) -> bool:
        """One check; True when it collected."""
        if self._busy() or gc.get_count()[2] == 0:
            return False
        gc.collect()
        self.collections += 1
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            self.check()
