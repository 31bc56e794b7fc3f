"""Upkeep of calls after the answer: 2xx retransmission and collection of ended calls.

* RFC 3261 §13.3.1.4: over UDP the UAS core resends its 2xx to an INVITE (or re-INVITE)
  at T1, doubling up to T2, until the ACK arrives; no ACK within 64*T1 means the dialog
  is dead, and the call is ended with BYE.
* An ended call is kept for 64*T1 so that a late retransmission of its 2xx is still
  ACKed (§13.2.2.4), then forgotten everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from voipalert.sip.agent_core import AgentCore
from voipalert.sip.dialog import Address
from voipalert.sip.events import CallId


@dataclass(slots=True)
class _Retransmit2xx:
    data: bytes
    destination: Address
    interval: float
    next_at: float
    give_up_at: float


class CallUpkeep:
    """Resends our 2xx until ACKed, and forgets ended calls once late messages are over."""

    def __init__(
        self,
        core: AgentCore,
        *,
        hang_up: Callable[[CallId, float], None],
        forget: Callable[[CallId], None],
    ) -> None:
        self._core = core
        self._hang_up = hang_up
        self._forget = forget
        """Called for each call forgotten: the other parts drop what they keep for it."""
        self._retransmit: dict[CallId, _Retransmit2xx] = {}
        self._ended: dict[CallId, float] = {}

    def resend_until_ack(
        self, call_id: CallId, data: bytes, destination: Address, now: float
    ) -> None:
        t1 = self._core.config.timers.t1
        self._retransmit[call_id] = _Retransmit2xx(data, destination, t1, now + t1, now + 64 * t1)

    def acked(self, call_id: CallId) -> None:
        self._retransmit.pop(call_id, None)

    def retransmit_2xx(self, now: float) -> None:
        for call_id, pending in list(self._retransmit.items()):
            if now >= pending.give_up_at:
                # §13.3.1.4: no ACK within 64*T1: the dialog is dead, end it with BYE.
                del self._retransmit[call_id]
                self._hang_up(call_id, now)
            elif now >= pending.next_at:
                self._core.send(pending.data, pending.destination)
                pending.interval = min(2 * pending.interval, self._core.config.timers.t2)
                pending.next_at = now + pending.interval

    def note_ended(self, now: float) -> None:
        # An ended call is kept for 64*T1 so a late 2xx retransmission is still ACKed.
        for call_id, call in self._core.calls.items():
            if call.ended and call_id not in self._ended:
                self._ended[call_id] = now + 64 * self._core.config.timers.t1

    def forget_ended(self, now: float) -> None:
        for call_id, forget_at in list(self._ended.items()):
            if now >= forget_at:
                del self._ended[call_id]
                self._core.calls.pop(call_id, None)
                self._forget(call_id)
                self._retransmit.pop(call_id, None)

    def deadlines(self) -> list[float | None]:
        deadlines: list[float | None] = [r.next_at for r in self._retransmit.values()]
        if self._ended:
            deadlines.append(min(self._ended.values()))
        return deadlines
