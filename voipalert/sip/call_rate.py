"""How fast new calls may start: a limit on call attempts per second (docs/sip.md §4.14).

SIP trunks sell channels (calls at once) and a call rate ("calls per second", CPS; carriers
answer 503 or 403 to INVITEs above it), and a PBX protects itself the same way. Our own
event loop needs it too: starting a call (the INVITE, its SDP, the transaction, the call's
prompts) costs about 0.4 ms of the loop, so 200 calls started in one instant are one 80 ms
stall of every call already speaking (docs/realtime.md §4).

``CallRate`` hands out start times at most ``per_second`` apart, first come first served:
the order in which calls ask is the order in which they start, so a mass alert's order by
priority survives the spreading. A call that gives up its turn (stopped while it waited)
does not move the others' turns: they were promised already, and a gap is harmless.
Pure: the caller passes the time and waits itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CallRate:
    """Start times for new calls, at most ``per_second`` a second (0: no limit)."""

    per_second: float
    _next: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        if not self.per_second >= 0:  # also refuses NaN
            raise ValueError(f"calls per second must be 0 (no limit) or more: {self.per_second}")

    def reserve(self, now: float) -> float:
        """The time at which the next call may start (``now`` when it may at once); that
        turn is taken."""
        if self.per_second == 0:
            return now
        start = max(now, self._next)
        self._next = start + 1.0 / self.per_second
        return start
