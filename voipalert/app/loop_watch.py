"""Watch the event loop for stalls, and say where it was stuck and why.

Every call's audio is paced by timers on the one event loop (docs/architecture.md §7): a
callback that holds the loop for 50 ms delays every packet of every call by 50 ms, and a
longer one makes the pacer skip slots, which the callee hears as a hole. A stall is found
by a heartbeat, a timer due every ``period`` seconds on the loop: how late it runs is how
late every RTP packet was at that moment.

A watcher thread sees the heartbeat go stale. While the loop is stuck it takes the loop
thread's Python stack (``sys._current_frames``), so the report names the line it was stuck
on, not the callback that happened to run afterwards. It also reads the loop thread's
scheduler figures from ``/proc/thread-self/schedstat`` (Linux, CONFIG_SCHED_INFO: time on a
core, time runnable but waiting for a core), which tells the three causes apart:

* **busy**: the loop thread was computing (our code or a library's, on the loop);
* **blocked**: it slept, neither running nor waiting for a core: a blocking system call
  (disk, DNS, a lock), or waiting for the GIL that another thread of ours held;
* **preempted**: it was ready to run but the machine gave its core to another process;
* **frozen**: it slept, the watcher thread could not run either, and no thread of ours was
  on a core: nothing in the process ran at all, which is the machine (a virtual machine's
  vCPU descheduled by its host, a stopped process), not a place in our code.

Blocked time counts as ours when the watcher caught the loop thread at a place (it could
run, so the loop thread was in a blocking call) or, when it could not, as far as other
threads of ours were on a core meanwhile (one of them held the GIL): the process's CPU
time (``getrusage``) minus the loop thread's. The rest of an uncaught blocked stretch is
frozen. Busy and blocked are bugs of ours; preempted and frozen are the host's (docs/
realtime.md §2 says what to do about each). ``Stall.ours`` is the part of a stall the
process is responsible for.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

log = logging.getLogger("voipalert.loop")

MAX_FRAMES: Final = 6
# The watcher thread needs the GIL and a core to look: without either it sees nothing.
_NO_STACK: Final = ("(not caught: the watcher thread could not run during the stall)",)


class StallKind(enum.StrEnum):
    BUSY = "busy"
    BLOCKED = "blocked"
    PREEMPTED = "preempted"
    FROZEN = "frozen"


@dataclass(frozen=True, slots=True)
class SchedSample:
    """A thread's scheduler figures at ``at`` (``time.monotonic``), in seconds."""

    at: float
    on_cpu: float
    runnable: float
    process_cpu: float = 0.0  # every thread of the process, user + system


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_schedstat(path: Path) -> tuple[float, float] | None:
    """(seconds on a core, seconds runnable waiting for one) from a ``schedstat`` file, or
    None where the kernel does not keep them."""
    try:
        fields = path.read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, slots=True)
class Stall:
    """The loop ran a timer ``lag`` seconds late. Over the ``window`` seconds from the last
    sample before the stall to its end, the loop thread spent ``on_cpu`` on a core and
    ``runnable`` waiting for one; the rest it slept (``blocked``). Meanwhile the process's
    other threads were ``others_on_cpu`` on a core. ``caught``: the watcher saw where the
    loop thread was (so it could run itself)."""

    lag: float
    window: float
    on_cpu: float
    runnable: float
    where: tuple[str, ...] = field(default=())
    measured: bool = True  # False where /proc gives no scheduler figures
    others_on_cpu: float = 0.0
    caught: bool = True

    @property
    def blocked(self) -> float:
        return max(0.0, self.window - self.on_cpu - self.runnable)

    @property
    def frozen(self) -> float:
        """Blocked time in which nothing of ours could have run or held the GIL."""
        if self.caught:
            return 0.0
        return max(0.0, self.blocked - self.others_on_cpu)

    @property
    def kind(self) -> StallKind:
        if not self.measured:
            return StallKind.BUSY  # unknown: count it against us
        shares = {
            StallKind.BUSY: self.on_cpu,
            StallKind.BLOCKED: self.blocked - self.frozen,
            StallKind.PREEMPTED: self.runnable,
            StallKind.FROZEN: self.frozen,
        }
        return max(shares, key=lambda kind: shares[kind])

    @property
    def ours(self) -> float:
        """The part of the lag not explained by waiting for a core or by the whole process
        not running (the window's share of those, applied to the lag)."""
        if not self.measured or self.window <= 0:
            return self.lag
        return self.lag * max(0.0, 1.0 - (self.runnable + self.frozen) / self.window)

    def describe(self) -> str:
        where = " <- ".join(self.where) if self.where else "(not caught)"
        if not self.measured:
            return f"event loop stalled {self.lag * 1000:.0f} ms at {where}"
        frozen = f", frozen {self.frozen * 1000:.0f} ms" if self.frozen else ""
        return (
            f"event loop stalled {self.lag * 1000:.0f} ms ({self.kind}: on a core "
            f"{self.on_cpu * 1000:.0f} ms, blocked {self.blocked * 1000:.0f} ms, waiting for "
            f"a core {self.runnable * 1000:.0f} ms, other threads on a core "
            f"{self.others_on_cpu * 1000:.0f} ms{frozen}) at {where}"
        )


def stack_of(thread_id: int, limit: int = MAX_FRAMES) -> tuple[str, ...]:
    """The innermost ``limit`` frames of a thread, innermost first, as ``file:line in f``."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return ()
    # asyncio's own frames (the loop running the callback) say nothing about the cause.
    frames = [f for f in traceback.extract_stack(frame)[::-1] if "/asyncio/" not in f.filename]
    return tuple(f"{_short(f.filename)}:{f.lineno} in {f.name}" for f in frames[:limit])


def _short(filename: str) -> str:
    for marker in ("/voipalert/", "/site-packages/", "/lib/python"):
        index = filename.rfind(marker)
        if index >= 0:
            return filename[index + 1 :]
    return filename


class LoopWatch:
    """Reports every heartbeat later than ``threshold`` to ``on_stall`` (on the loop).

    Start with ``start()`` from a coroutine on the loop to watch; ``close()`` stops the
    heartbeat and joins the watcher thread. The watcher wakes every ``period`` seconds and
    reads one small /proc file: about 0.1 % of a core at the default 20 ms period."""

    def __init__(
        self,
        threshold: float,
        on_stall: Callable[[Stall], None],
        *,
        period: float | None = None,
    ) -> None:
        if threshold <= 0:
            raise ValueError("the stall threshold must be positive")
        self.threshold = threshold
        self.period = period if period is not None else min(threshold / 4, 0.02)
        self._on_stall = on_stall
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._schedstat: Path | None = None
        # Shared with the watcher thread, under _lock:
        self._due = 0.0  # time.monotonic() at which the next heartbeat is due
        self._before: SchedSample | None = None  # last sample while the loop kept time
        self._caught: tuple[str, ...] = ()  # the loop thread's stack while it was stuck
        self.stalls = 0
        self.longest = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            raise RuntimeError("the watch is already running")
        self._loop = loop
        self._loop_thread = threading.get_ident()
        path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self._schedstat = path if read_schedstat(path) is not None else None
        self._due = time.monotonic() + self.period
        self._timer = loop.call_later(self.period, self._beat)
        self._thread = threading.Thread(target=self._watch, name="loop-watch", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)

    def _sample(self) -> SchedSample | None:
        if self._schedstat is None:
            return None
        figures = read_schedstat(self._schedstat)
        if figures is None:
            return None
        return SchedSample(time.monotonic(), *figures, process_cpu())

    # ------------------------------------------------------------ on the loop

    def _beat(self) -> None:
        now = time.monotonic()
        with self._lock:
            lag = now - self._due
            before, where = self._before, self._caught
            self._caught = ()
            self._due = now + self.period
        assert self._loop is not None
        self._timer = self._loop.call_later(self.period, self._beat)
        if lag > self.threshold:
            self._report(lag, before, where)

    def _report(self, lag: float, before: SchedSample | None, where: tuple[str, ...]) -> None:
        after = self._sample()
        if before is None or after is None:
            stall = Stall(lag, lag, 0.0, 0.0, where or _NO_STACK, measured=False)
        else:
            on_cpu = after.on_cpu - before.on_cpu
            stall = Stall(
                lag=lag,
                window=max(lag, after.at - before.at),
                on_cpu=on_cpu,
                runnable=after.runnable - before.runnable,
                where=where or _NO_STACK,
                others_on_cpu=max(0.0, after.process_cpu - before.process_cpu - on_cpu),
                caught=bool(where),
            )
        self.stalls += 1
        self.longest = max(self.longest, lag)
        self._on_stall(stall)

    # ------------------------------------------------------------ watcher thread

    def _watch(self) -> None:
        while not self._stopping.wait(self.period):
            sample = self._sample()
            now = time.monotonic()
            with self._lock:
                late = now - self._due
                if late < self.threshold / 2:
                    self._before = sample  # the loop keeps time: the baseline moves on
                    continue
                caught = self._caught
            if not caught:
                stack = stack_of(self._loop_thread)
                with self._lock:
                    if self._due + self.threshold / 2 <= now:  # still the same stall
                        self._caught = stack


def log_stall(stall: Stall) -> None:
    """The default report: one WARNING line with the cause and the place."""
    log.warning(
        "%s",
        stall.describe(),
        extra={
            "stall_ms": round(stall.lag * 1000, 1),
            "stall_kind": stall.kind.value,
            "stall_ours_ms": round(stall.ours * 1000, 1),
        },
    )
