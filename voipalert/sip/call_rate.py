"""How fast new calls may start: a limit on call attempts per second (docs/sip.md §4.14).

SIP trunks sell channels (calls at once) and a call rate ("calls per second", CPS; carriers
answer 503 or 403 to INVITEs above it), and a PBX protects itself the same way. Our own
event loop needs it too: starting a call (the INVITE, its SDP, the transaction, the call's
prompts) costs about 0.4 ms of the loop, so 200 calls started in one instant are one 80 ms
stall of every call already speaking (docs/realtime.md §4).

``CallRate`` hands out start times at most ``per_second`` a second, first come first served:
the order in which calls ask is the order in which they start, so a mass alert's order by
priority survives the spreading. A call that gives up its turn (stopped while it waited)
does not move the others' turns: they were promised already, and a gap is harmless.
Without a carrier limit (``per_second`` 0) calls still start at most ``FLOOR_PER_SECOND``
a second: all at once they would dial in one turn of the loop (200 INVITEs held it 100 ms,
docs/capacity.md §5); a millisecond apart, the turns in between carry the audio, and
1,000 a second is more than any trunk takes anyway.

Pure: the caller passes the time and waits itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

FLOOR_PER_SECOND: Final = 1000.0


@dataclass(slots=True)
class CallRate:
    """Start times for new calls, at most ``per_second`` a second (0: no carrier limit,
    ``FLOOR_PER_SECOND``)."""

    per_second: float
    _next: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        if not self.per_second >= 0:  # also refuses NaN
            raise ValueError(f"calls per second must be 0 (no limit) or more: {self.per_second}")

    def reserve(self, now: float) -> float:
        """The time at which the next call may start (``now`` when it may at once); that
        turn is taken."""
        rate = self.per_second or FLOOR_PER_SECOND
        start = max(now, self._next)
        self._next = start + 1.0 / rate
        return start
