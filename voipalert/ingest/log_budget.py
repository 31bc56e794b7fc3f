"""A cap on how many lines one kind of event may write to the log (pure: the caller gives the
time).

Refused triggers are each logged (``ingest.rejections``), and anyone who can reach the port
can send them: without a cap, a loop of bad requests would fill the disk through the log.
Up to ``lines`` are written per ``window`` seconds; past that the events are only counted
(the Prometheus counter still sees every one), and the first line of the next window says
how many were left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LogBudget:
    lines: int = 20
    window_seconds: float = 10.0
    _window_start: float = field(default=float("-inf"), init=False)
    _used: int = field(default=0, init=False)
    _suppressed: int = field(default=0, init=False)

    def take(self, now: float) -> tuple[bool, int]:
        """(may this event be logged, how many were left out before it)."""
        if now - self._window_start >= self.window_seconds:
            self._window_start = now
            self._used = 0
        if self._used >= self.lines:
            self._suppressed += 1
            return False, 0
        self._used += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed
