"""The call port: what the engine asks a phone to do, and what it reports back.

The engine builds a ``Notification`` (who, which contact, the alert's fields, the ack menu)
and awaits ``Notifier.notify``. The words are made by the notifier, in the callee's language
(for the voice: the speech catalog's ``message`` template); the engine renders no text.
The real implementation places a SIP call and runs the call script; tests plug in a
scripted notifier. This module does not import the alert types
(docs/architecture.md §2): a notification carries plain values.

The contract of ``notify``:

- Every expected end of a call is a ``NotifyResult`` value (busy, no answer, answered without
  a key...), never an exception. An exception means a bug; the engine records it as
  ``FAILED`` and goes on.
- It gives up ringing after ``ring_timeout_seconds`` (``NO_ANSWER``).
- Only a key press of ``menu.ack_digit`` is ``ACKNOWLEDGED``; an answer without it is
  ``ANSWERED_NO_ACK``.
- ``stop.request(reason)`` (the alert was handled elsewhere, or the service is stopping)
  ends the call early: CANCEL while ringing, a last phrase and BYE once answered; the result
  is then ``CANCELLED`` with the facts of the call (answered or not, SIP status, duration),
  or ``ACKNOWLEDGED`` when the key had been pressed before. Requests are idempotent.
- When its task is cancelled outright it still hangs up and releases everything before the
  ``CancelledError`` propagates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from voipalert.callscript import StopReason, StopRequest
from voipalert.domain.alert import AlertId, AttemptId, AttemptOutcome
from voipalert.domain.rota import Contact, NotifyMethod
from voipalert.media.quality import CallQuality

__all__ = [
    "AckMenu",
    "Notification",
    "Notifier",
    "NotifyResult",
    "StopReason",
    "StopRequest",
]


@dataclass(frozen=True, slots=True)
class AckMenu:
    ack_digit: str = "1"
    repeat_digit: str = "0"


@dataclass(frozen=True, slots=True)
class Notification:
    alert_id: AlertId
    attempt_id: AttemptId
    attempt_key: str  # unique: a notifier may use it to make its own side idempotent
    person: str
    contact: Contact
    language: str
    fields: Mapping[str, str] = field(default_factory=dict)  # summary, severity... for templates
    menu: AckMenu = field(default_factory=AckMenu)
    ring_timeout_seconds: int = 30
    method: NotifyMethod = NotifyMethod.CALL  # a call, or a text (notify/channels.py)


@dataclass(frozen=True, slots=True)
class NotifyResult:
    outcome: AttemptOutcome
    sip_status: int | None = None  # final SIP response status (486 busy, 603 declined...)
    sip_reason: str | None = None
    digit: str | None = None  # the key that acknowledged
    ring_seconds: float | None = None  # dial to answer, or to giving up
    talk_seconds: float | None = None  # answer to the end of our media
    detail: str | None = None
    duration_seconds: float | None = None  # dial to the end (None: unknown, use the clock)
    quality: CallQuality | None = None  # an answered call's audio quality (RTCP, MOS)
    # From the notification's start to the dial (a turn under the call rate, failed
    # trunks): the durations above count from the dial.
    dial_delay_seconds: float = 0.0


class Notifier(Protocol):
    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult: ...
