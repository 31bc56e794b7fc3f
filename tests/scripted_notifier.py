"""A scripted stand-in for the phone, for engine tests that run without SIP (issue 6 is
tested without SIP; the end-to-end tests plug the real phone in). Each person's calls get
the next result of their script; ``Hold`` blocks a call until its gate opens or the call is
asked to stop, which is how tests keep a call "ringing". A stop request ends a held call as
the real phone does: ``CANCELLED`` (recorded in ``cancelled``), and each stop reason is kept in
``stops``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from voipalert.domain.alert import AttemptOutcome
from voipalert.notify import Notification, NotifyResult, StopReason, StopRequest

_TYPICAL: dict[AttemptOutcome, NotifyResult] = {
    r.outcome: r
    for r in (
        NotifyResult(AttemptOutcome.ACKNOWLEDGED, 200, "OK", "1", 4.0, 12.0),
        NotifyResult(AttemptOutcome.ANSWERED_NO_ACK, 200, "OK", None, 3.0, 40.0),
        NotifyResult(AttemptOutcome.NO_ANSWER, 487, "Request Terminated", None, 30.0),
        NotifyResult(AttemptOutcome.BUSY, 486, "Busy Here", None, 0.2),
        NotifyResult(AttemptOutcome.DECLINED, 603, "Decline", None, 5.0),
        NotifyResult(AttemptOutcome.UNREACHABLE, 480, "Temporarily Unavailable"),
        NotifyResult(AttemptOutcome.FAILED, 503, "Service Unavailable"),
    )
}


def result(outcome: AttemptOutcome) -> NotifyResult:
    """A result as a real call with that outcome would report it (typical SIP status)."""
    return _TYPICAL.get(outcome, NotifyResult(outcome))


ACK = result(AttemptOutcome.ACKNOWLEDGED)
NO_ANSWER = result(AttemptOutcome.NO_ANSWER)
BUSY = result(AttemptOutcome.BUSY)
ANSWERED_NO_ACK = result(AttemptOutcome.ANSWERED_NO_ACK)


@dataclass
class Hold:
    """Keep the call going until ``gate`` is set, then end it with ``then``."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    then: NotifyResult = NO_ANSWER


class ScriptedNotifier:
    def __init__(
        self,
        script: Mapping[str, Sequence[NotifyResult | Hold]] | None = None,
        default: NotifyResult = NO_ANSWER,
    ) -> None:
        self.script: dict[str, list[NotifyResult | Hold]] = {
            person: list(steps) for person, steps in (script or {}).items()
        }
        self.default = default
        self.calls: list[Notification] = []
        self.cancelled: list[Notification] = []
        self.stops: list[tuple[str, StopReason]] = []
        self.active = 0
        self.max_active = 0

    def calls_to(self, person: str) -> list[Notification]:
        return [n for n in self.calls if n.person == person]

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        self.calls.append(notification)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        steps = self.script.get(notification.person, [])
        step = steps.pop(0) if steps else self.default
        stopped = asyncio.Event()

        def on_stop(reason: StopReason) -> None:
            self.stops.append((notification.person, reason))
            stopped.set()

        stop.subscribe(on_stop)
        try:
            if isinstance(step, Hold):
                gate = asyncio.ensure_future(step.gate.wait())
                halt = asyncio.ensure_future(stopped.wait())
                try:
                    await asyncio.wait({gate, halt}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gate.cancel()
                    halt.cancel()
                if stop.reason is not None and not step.gate.is_set():
                    self.cancelled.append(notification)
                    return NotifyResult(AttemptOutcome.CANCELLED, 487, "Request Terminated")
                return step.then
            await asyncio.sleep(0)
            return step
        except asyncio.CancelledError:
            self.cancelled.append(notification)
            raise
        finally:
            self.active -= 1
