"""Where an event loop's long iterations go: a diagnostic for the benchmarks, not for serve.

The loop watch (voipalert/app/loop_watch.py) measures how late a heartbeat timer runs. A
late heartbeat has two possible shapes: one callback that holds the loop (the watch names
it when its thread can sample the loop thread), or one loop iteration that runs many short
callbacks back to back, none of them long, whose sum delays every timer due meanwhile.
The watch cannot tell those apart when its thread cannot run; this profile can, at the cost
of two clock reads per callback:

* each iteration of ``loop._run_once`` is timed, minus the time spent in ``select`` (what
  is left is the callbacks' work);
* every callback (``asyncio.Handle._run``, which also runs task steps) is timed, and those
  of a slow iteration are kept with what they ran;
* every garbage collection is timed (``gc.callbacks``), with its generation.

``LoopProfile(threshold).install(loop)`` patches the running loop and ``Handle._run`` (for
the whole process: install one at a time), ``close()`` restores both; ``lines()`` says what
the slow iterations were made of.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

_KEEP_ABOVE = 0.001  # callbacks shorter than this are counted, not kept


def _name(handle: asyncio.Handle) -> str:
    callback: Any = getattr(handle, "_callback")  # noqa: B009
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro: Any = owner.get_coro()
        return f"task {getattr(coro, '__qualname__', coro)!s}"
    return str(getattr(callback, "__qualname__", callback))


@dataclass
class Iteration:
    at: float  # perf_counter at its start
    work: float  # seconds of callbacks (the iteration less its select)
    handles: int
    long: list[tuple[float, str]]  # the callbacks over 1 ms: (seconds, what)
    by_name: dict[str, float] = field(default_factory=dict)  # seconds by what, all


@dataclass
class Collection:
    at: float
    generation: int
    seconds: float
    collected: int


class LoopProfile:
    def __init__(self, threshold: float = 0.02, keep: int = 12) -> None:
        self.threshold = threshold
        self.keep = keep
        self.slow: list[Iteration] = []
        self.collections: list[Collection] = []
        self.iterations = 0
        self.longest_work = 0.0
        self._loop: Any = None
        self._original_run_once: Any = None
        self._original_select: Any = None
        self._original_handle_run: Any = None
        self._in_select = 0.0
        self._timed: list[tuple[float, asyncio.Handle]] = []
        self._count = 0
        self._gc_start = 0.0

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        run_once = self._original_run_once = loop._run_once  # type: ignore[attr-defined]
        selector: Any = loop._selector  # type: ignore[attr-defined]
        select = self._original_select = selector.select
        profile = self

        def timed_select(timeout: float | None = None) -> Any:
            start = time.perf_counter()
            try:
                return select(timeout)
            finally:
                profile._in_select += time.perf_counter() - start

        def timed_run_once() -> None:
            profile._in_select = 0.0
            profile._timed = []
            profile._count = 0
            start = time.perf_counter()
            run_once()
            work = time.perf_counter() - start - profile._in_select
            profile.iterations += 1
            profile.longest_work = max(profile.longest_work, work)
            if work >= profile.threshold and len(profile.slow) < profile.keep:
                profile._keep(start, work)

        handle_run = self._original_handle_run = asyncio.events.Handle._run

        def timed_handle_run(handle: asyncio.Handle) -> None:
            start = time.perf_counter()
            try:
                handle_run(handle)
            finally:
                profile._count += 1
                profile._timed.append((time.perf_counter() - start, handle))

        selector.select = timed_select
        loop._run_once = timed_run_once  # type: ignore[attr-defined]
        asyncio.events.Handle._run = timed_handle_run  # type: ignore[method-assign,assignment]
        gc.callbacks.append(self._on_gc)

    def close(self) -> None:
        if self._loop is None:
            return
        self._loop._selector.select = self._original_select
        self._loop._run_once = self._original_run_once
        asyncio.events.Handle._run = self._original_handle_run  # type: ignore[method-assign]
        gc.callbacks.remove(self._on_gc)
        self._loop = None

    def _keep(self, start: float, work: float) -> None:
        by_name: defaultdict[str, float] = defaultdict(float)
        long: list[tuple[float, str]] = []
        for seconds, handle in self._timed:
            name = _name(handle)
            by_name[name] += seconds
            if seconds >= _KEEP_ABOVE:
                long.append((seconds, name))
        long.sort(reverse=True)
        self.slow.append(Iteration(start, work, self._count, long[:6], dict(by_name)))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        seconds = time.perf_counter() - self._gc_start
        if seconds >= _KEEP_ABOVE:
            self.collections.append(
                Collection(self._gc_start, info["generation"], seconds, info["collected"])
            )

    def lines(self) -> list[str]:
        out = [
            f"loop profile: {self.iterations} iterations, longest work "
            f"{self.longest_work * 1000:.1f} ms, {len(self.slow)} over "
            f"{self.threshold * 1000:.0f} ms (first {self.keep} kept)"
        ]
        for it in self.slow:
            ranked = sorted(it.by_name.items(), key=lambda item: -item[1])[:4]
            top = ", ".join(f"{name} {s * 1000:.1f}" for name, s in ranked)
            longest = ", ".join(f"{name} {s * 1000:.1f}" for s, name in it.long[:3]) or "none"
            out.append(
                f"  {it.work * 1000:.1f} ms in {it.handles} callbacks; by what (ms): {top}; "
                f"longest single: {longest}"
            )
        slow_gc = [c for c in self.collections if c.seconds >= 0.005]
        out.append(
            f"garbage collections over 1 ms: {len(self.collections)}, over 5 ms: "
            + (", ".join(f"gen {c.generation} {c.seconds * 1000:.1f} ms" for c in slow_gc) or "0")
        )
        return out
