"""The start-up heap, out of the garbage collector's sight before calls begin."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("voipalert.app")


def settle_heap() -> int:
    """Collect start-up's garbage, then move every object left (voices, the app, the
    OpenAPI document, pydantic's schemas: some 80,000 of them) out of the collector's sight.

    A full collection walks every tracked object with the GIL held, in C: measured 20-75 ms
    on 2 cores after start-up, a stall of the loop that paces every call, at a moment nobody
    chooses (docs/realtime.md §4). Frozen objects are never scanned again; what calls and
    alerts allocate later is collected as usual. Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("start-up heap frozen: %d objects out of the collector's scans", frozen)
    return frozen
