"""The collector kept out of the calls' way (voipalert/app/heap.py, docs/realtime.md §4)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from voipalert.app.heap import FULL_COLLECTION_EVERY, QuietCollector, settle_heap


@pytest.fixture
def full_collections() -> Iterator[list[int]]:
    """The generations of the collections that run during the test (the collector's own
    callbacks); the thresholds and the frozen heap are put back afterwards."""
    seen: list[int] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            seen.append(int(info["generation"]))

    thresholds = gc.get_threshold()
    gc.callbacks.append(callback)
    try:
        yield seen
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.enable()


def test_settling_freezes_the_start_up_heap_and_makes_full_collections_rarer(
    full_collections: list[int],
) -> None:
    young, middle, _ = gc.get_threshold()
    frozen = settle_heap()
    assert frozen > 1000 and gc.get_freeze_count() == frozen
    assert gc.get_threshold() == (young, middle, FULL_COLLECTION_EVERY)
    assert 2 in full_collections  # start-up's garbage collected before the freeze


def test_a_full_collection_runs_only_when_no_call_is_in_progress(
    full_collections: list[int],
) -> None:
    calls = [1]
    collector = QuietCollector(lambda: bool(calls))
    gc.disable()  # no automatic collection moves the counts under the test
    gc.collect(1)  # the middle generation collected: something may have aged
    full_collections.clear()
    assert not collector.check()  # a call is in progress: no stall now
    assert 2 not in full_collections
    calls.clear()
    assert collector.check()
    assert full_collections.count(2) == 1
    # Nothing collected in the middle generation since: nothing new can be old.
    assert not collector.check()
    assert full_collections.count(2) == 1 and collector.collections == 1


async def test_the_collector_checks_on_its_own_rhythm(full_collections: list[int]) -> None:
    collector = QuietCollector(lambda: False, every_seconds=0.01)
    task = asyncio.create_task(collector.run())
    try:
        async with asyncio.timeout(5):
            while collector.collections == 0:
                gc.collect(1)
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert 2 in full_collections
