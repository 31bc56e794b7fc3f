"""Time as a dependency (docs/architecture.md §6).

Protocol cores take ``now`` as an argument; the asyncio layer gets it from a ``Clock``.
``monotonic()`` drives SIP timers and RTP pacing; ``now_utc()`` is only for records and
rota arithmetic. This is the one module allowed to read the system clock.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now_utc(self) -> datetime: ...


class SystemClock:
    """The real clock. ``monotonic`` is the running loop's clock when there is one, so
    timers computed from it line up with ``loop.call_at``."""

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def now_utc(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to, for tests that fast-forward escalations."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._utc = start if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        if self._utc.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._mono = monotonic

    def monotonic(self) -> float:
        return self._mono

    def now_utc(self) -> datetime:
        return self._utc

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._mono += seconds
        self._utc += timedelta(seconds=seconds)


LOOP_SLICE_SECONDS = 0.005
"""How long a long pass over many items (the engine's tick, the store's snapshot) may hold
the event loop before it gives it back: every call's next RTP packet waits on the loop
(docs/realtime.md §1), so a pass over 10,000 alerts must not be one 3-second callback."""


class LoopSlices:
    """Time slices of a long pass on the event loop, measured on the loop's own clock (the
    real one, whatever ``Clock`` the caller's decisions use): ``await slices.pause()``
    between items yields to the loop once the current slice has run ``budget`` seconds."""

    def __init__(self, budget: float = LOOP_SLICE_SECONDS) -> None:
        self._loop = asyncio.get_running_loop()
        self._budget = budget
        self._since = self._loop.time()
        self.yields = 0

    async def pause(self) -> None:
        if self._loop.time() - self._since >= self._budget:
            await asyncio.sleep(0)
            self.yields += 1
            self._since = self._loop.time()
