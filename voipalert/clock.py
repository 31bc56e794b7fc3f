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
