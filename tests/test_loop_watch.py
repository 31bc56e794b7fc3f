"""The loop watch finds a stall, names the line it was stuck on, and tells a blocking call
from computing; a loop that keeps time reports nothing."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.requires import need
from voipalert.app.loop_watch import LoopWatch, Stall, StallKind, read_schedstat


@pytest.fixture(autouse=True)
def _schedstat() -> None:
    need(
        read_schedstat(Path("/proc/thread-self/schedstat")) is not None,
        "the kernel keeps no per-thread scheduler figures (CONFIG_SCHED_INFO)",
    )


async def _watched(work: object) -> list[Stall]:
    stalls: list[Stall] = []
    watch = LoopWatch(0.02, stalls.append, period=0.005)
    watch.start()
    try:
        await asyncio.sleep(0.05)
        assert callable(work)
        work()
        await asyncio.sleep(0.05)
    finally:
        await watch.close()
    return stalls


async def test_a_blocking_call_on_the_loop_is_a_blocked_stall_at_its_line() -> None:
    stalls = await _watched(lambda: time.sleep(0.2))  # noqa: TID251  # the blocking call under test
    assert len(stalls) == 1, [s.describe() for s in stalls]
    stall = stalls[0]
    assert 0.15 <= stall.lag < 2.0
    assert stall.kind is StallKind.BLOCKED, stall.describe()
    assert "test_loop_watch.py" in stall.where[0] and "<lambda>" in stall.where[0]
    assert stall.ours > 0.1


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds  # CPU time: preemption cannot end it early
    while time.thread_time() < end:
        pass


async def test_computing_on_the_loop_is_a_busy_stall() -> None:
    every = await _watched(lambda: _spin(0.2))
    # The shared machine may add preempted stalls of its own; ours is the one long stall.
    stalls = [s for s in every if s.kind is not StallKind.PREEMPTED or s.lag > 0.1]
    assert len(stalls) == 1, [s.describe() for s in every]
    assert stalls[0].on_cpu >= 0.15, stalls[0].describe()
    assert stalls[0].kind is StallKind.BUSY or stalls[0].runnable > stalls[0].on_cpu
    assert any("_spin" in frame for frame in stalls[0].where), stalls[0].where


async def test_a_thread_holding_the_gil_stalls_the_loop_as_blocked() -> None:
    """Pure-Python work in another thread takes the GIL in 5 ms turns; with a long switch
    interval it keeps it, and the loop thread sleeps waiting for it."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.2)
    try:
        worker = threading.Thread(target=_spin, args=(0.3,))
        stalls = await _watched(worker.start)
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert stalls, "the GIL held for 200 ms must show as a stall"
    assert max(s.lag for s in stalls) >= 0.1
    assert any(s.kind is StallKind.BLOCKED for s in stalls), [s.describe() for s in stalls]


async def test_a_loop_that_keeps_time_reports_nothing() -> None:
    async def ticking() -> None:
        for _ in range(20):
            await asyncio.sleep(0.005)

    stalls: list[Stall] = []
    watch = LoopWatch(0.02, stalls.append, period=0.005)
    watch.start()
    await ticking()
    await watch.close()
    assert [s for s in stalls if s.kind is not StallKind.PREEMPTED] == []


def test_preemption_is_not_charged_to_us() -> None:
    stall = Stall(lag=0.1, window=0.11, on_cpu=0.001, runnable=0.1)
    assert stall.kind is StallKind.PREEMPTED
    assert stall.ours < 0.01
    assert "waiting for a core 100 ms" in stall.describe()


def test_the_e2e_check_counts_our_stalls_after_start_up_only() -> None:
    from tests.e2e.stalls import assert_no_stalls, stalls

    log = (
        "2026-12-02 18:32:24.000 WARNING voipalert.loop event loop stalled 900 ms (busy: on a"
        " core 880 ms) at start-up\n"
        "2026-12-02 18:32:24.300 INFO  voipalert.serve voipalert ready: HTTP on ...\n"
        "2026-12-02 18:32:24.330 WARNING voipalert.loop event loop stalled 59 ms (busy: on a"
        " core 38 ms) at the end of start-up\n"
        "2026-12-02 18:32:25.383 WARNING voipalert.loop event loop stalled 59 ms (busy: on"
        " a core 58 ms) at a call\n"
        "2026-12-02 18:32:25.883 WARNING voipalert.loop event loop stalled 59 ms (blocked: on"
        " a core 1 ms) at a system call\n"
        "2026-12-02 18:32:26.383 WARNING voipalert.loop event loop stalled 590 ms (preempted:"
        " on a core 3 ms) at the machine's load\n"
    )
    ours, others = stalls(log)
    assert [line.rsplit(" at ", 1)[1] for line in ours] == ["a call"]
    assert len(others) == 4  # start-up, end of start-up, the system call, the machine
    with pytest.raises(AssertionError, match="a call"):
        assert_no_stalls(log)
    assert_no_stalls(log.replace("(busy: on a core 58", "(preempted: on a core 58"))


def test_the_e2e_check_treats_a_restarts_start_up_as_start_up() -> None:
    from tests.e2e.stalls import SPAWN_MARK, stalls

    log = (
        f"{SPAWN_MARK}\n"
        "2026-12-02 18:32:24.300 INFO  voipalert.serve voipalert ready: HTTP on ...\n"
        f"{SPAWN_MARK}\n"
        "2026-12-02 18:32:30.000 WARNING voipalert.loop event loop stalled 40 ms (busy: on a"
        " core 38 ms) at the second start-up\n"
        "2026-12-02 18:32:31.000 INFO  voipalert.serve voipalert ready: HTTP on ...\n"
        "2026-12-02 18:32:32.000 WARNING voipalert.loop event loop stalled 40 ms (busy: on a"
        " core 38 ms) at a call after the restart\n"
    )
    ours, others = stalls(log)
    assert [line.rsplit(" at ", 1)[1] for line in ours] == ["a call after the restart"]
    assert [line.rsplit(" at ", 1)[1] for line in others] == ["the second start-up"]


def test_serve_settles_its_start_up_heap_out_of_the_collectors_scans() -> None:
    import gc
    import weakref

    from voipalert.app.heap import settle_heap

    class Node:
        def __init__(self) -> None:
            self.me = self

    kept = [Node() for _ in range(1000)]
    garbage = Node()
    gone = weakref.ref(garbage)
    del garbage
    try:
        frozen = settle_heap()
        assert gone() is None, "start-up garbage must be collected, not frozen"
        assert frozen >= len(kept)
        assert gc.get_freeze_count() == frozen
        # Objects made later are still collected as usual.
        later = Node()
        later_ref = weakref.ref(later)
        del later
        gc.collect()
        assert later_ref() is None
    finally:
        gc.unfreeze()


def test_the_e2e_check_charges_only_our_own_part_of_a_stall() -> None:
    from tests.e2e.stalls import stalls

    log = (
        "2026-12-02 18:32:24.300 INFO  voipalert.serve voipalert ready: HTTP on ...\n"
        "2026-12-02 18:32:25.000 WARNING voipalert.loop event loop stalled 21 ms (busy: on a"
        " core 16 ms, blocked 3 ms, waiting for a core 2 ms) at mostly ours"
        " stall_ms=21.4 stall_kind=busy stall_ours_ms=18.9\n"
        "2026-12-02 18:32:26.000 WARNING voipalert.loop event loop stalled 25 ms (busy: on a"
        " core 22 ms, blocked 1 ms, waiting for a core 2 ms) at ours"
        " stall_ms=25.0 stall_kind=busy stall_ours_ms=23.0\n"
    )
    ours, others = stalls(log)
    assert [line.split(" at ", 1)[1].split(" stall_ms")[0] for line in ours] == ["ours"]
    assert len(others) == 1


def test_an_uncaught_stall_with_nothing_of_ours_running_is_frozen_not_ours() -> None:
    # The watcher could not run, the loop thread slept, no other thread of ours ran: the
    # process was not running at all (the host).
    frozen = Stall(lag=0.04, window=0.045, on_cpu=0.001, runnable=0.002, caught=False)
    assert frozen.kind is StallKind.FROZEN
    assert frozen.ours < 0.005
    assert "frozen 42 ms" in frozen.describe()
    # Another thread of ours was on a core meanwhile: it held the GIL; that is ours.
    gil = Stall(
        lag=0.04, window=0.045, on_cpu=0.001, runnable=0.002, caught=False, others_on_cpu=0.04
    )
    assert gil.kind is StallKind.BLOCKED and gil.ours > 0.035
    # Caught at a place: the loop thread was in a blocking call; ours whatever else ran.
    call = Stall(lag=0.04, window=0.045, on_cpu=0.001, runnable=0.002, where=("db.py:1 in f",))
    assert call.kind is StallKind.BLOCKED and call.ours > 0.035
