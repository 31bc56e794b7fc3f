"""Fail an end-to-end test when serve's event loop stalled by its own doing.

serve runs with ``[engine] loop_stall_ms`` = ``STALL_MS``: every heartbeat later than that is
logged with its cause and the line the loop was stuck on (voipalert/app/loop_watch.py).
``VOIPALERT_E2E_ASYNCIO_DEBUG=1`` adds asyncio's debug mode, which also names each callback
over the threshold; it is not on by default because its own bookkeeping (a stack captured
for every task and handle) stalls the loop by itself. A stall
that is *busy* or *blocked* is ours (code on the loop, a blocking call, the GIL held by a
thread of ours) and fails the test when our own part of it (``stall_ours_ms``: on a core
or blocked, not waiting for one) reaches its bar:

* *busy*: ``STALL_MS`` (20 ms). Computing on the loop thread for that long is code of ours,
  whatever the machine does.
* *blocked*: reported, not failed. On the 2-core virtual machines CI runs on, the loop
  thread was measured asleep inside plain system calls with nothing of ours to blame: a
  non-blocking RTP ``sendto`` 22-28 ms, creating a UDP socket 125 ms, at load averages of
  2-7. A blocking call of ours would show there too, named in the log's place field and
  counted in ``voipalert_event_loop_stalls_total{kind="blocked"}``; the benchmarks on an
  idle machine are where such a step is measured (docs/realtime.md §2).

A *preempted* one is the shared machine giving the core to another process, and a *frozen*
one the whole process not running at all (voipalert/app/loop_watch.py), which no code of
ours can prevent: they are reported, not failed.
Stalls before "voipalert ready" are start-up (voices loading, the cache warming) and do not
delay any call; they are reported too.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

STALL_MS: Final = 20
SPAWN_MARK: Final = "--- tests/e2e: serve spawned"
_STALL: Final = re.compile(r"event loop stalled (\d+) ms \((busy|blocked|preempted|frozen):.*")
_SLOW: Final = re.compile(r"Executing .* took [\d.]+ seconds")
_OURS_MS: Final = re.compile(r"stall_ours_ms=([\d.]+)")


def stalls(log: str) -> tuple[list[str], list[str]]:
    """(stalls of ours that began after start-up, every other stall or slow-callback line).

    One log holds every run of serve in a test (a restart appends), each after a
    ``SPAWN_MARK`` line. A stall is logged when it ends; it began ``lag`` earlier. One that
    began before its run's "voipalert ready" line is start-up, even when reported after."""
    ready: float | None = None
    ours: list[str] = []
    others: list[str] = []
    for line in log.splitlines():
        if line.startswith(SPAWN_MARK):
            ready = None
            continue
        if "voipalert ready" in line:
            ready = _time(line)
            continue
        match = _STALL.search(line)
        if match is None:
            if _SLOW.search(line):
                others.append(line.strip())
            continue
        began = _time(line) - int(match.group(1)) / 1000
        after_start = ready is not None and began > ready
        own = _OURS_MS.search(line)
        bar = {"busy": STALL_MS}.get(match.group(2))
        charged = bar is not None and (own is None or float(own[1]) >= bar)
        (ours if after_start and charged else others).append(line.strip())
    return ours, others


def _time(line: str) -> float:
    """Seconds since the epoch of a text log line ("2026-12-02 18:32:24.383 WARNING ...")."""
    # Only differences between lines of one log are used: the zone does not matter.
    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return stamp.timestamp()


def assert_no_stalls(log: str) -> None:
    ours, others = stalls(log)
    assert not ours, "serve's event loop stalled:\n" + "\n".join([*ours, "(also:)", *others])
