"""Texts by SIP MESSAGE (RFC 3428) through the phone's user agent.

``SipTexter`` sends a text and waits for its final answer; it routes the agent's text
events (answers to ours, replies from people we texted) and lets the agent accept replies
from a contact for ``reply_window_seconds`` after we texted it. ``MessageNotifier`` is the
engine's notifier for rules with method ``message``: it puts the acknowledgement
instruction first (a text cut to fit the UDP size limit loses the end of the summary,
never the instruction), sends, and maps the answer onto an attempt outcome. A delivered
text is ``ANSWERED_NO_ACK``: it reached the phone, nobody has acknowledged yet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final

from voipalert.calls import Phone
from voipalert.domain.alert import AttemptOutcome
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.notify.voice import target_uri
from voipalert.sip.events import TextDone, TextId, TextReceived
from voipalert.sip.uri import SipUri

log = logging.getLogger("voipalert.notify")

# Timer F (64*T1 = 32 s) always ends a non-INVITE transaction; this only guards a bug.
SEND_TIMEOUT_SECONDS: Final = 70.0
MAX_QUEUED_REPLIES: Final = 100
INSTRUCTIONS: Final = {
    "en": "voipalert alert #{alert_id} ({severity}). Reply {ack} to acknowledge.",
    "fr": "voipalert alerte n°{alert_id} ({severity}). Répondez {ack} pour acquitter.",
}
_STATUS_OUTCOMES: Final = {
    403: AttemptOutcome.DECLINED,
    603: AttemptOutcome.DECLINED,
    486: AttemptOutcome.BUSY,
    600: AttemptOutcome.BUSY,
    404: AttemptOutcome.UNREACHABLE,
    408: AttemptOutcome.UNREACHABLE,
    410: AttemptOutcome.UNREACHABLE,
    480: AttemptOutcome.UNREACHABLE,
    503: AttemptOutcome.UNREACHABLE,
}


def compose_text(fields: Mapping[str, str], language: str, ack_digit: str) -> str:
    """The text of an alert: the instruction, then the summary (cut later if too long)."""
    template = INSTRUCTIONS.get(language.split("_")[0].split("-")[0], INSTRUCTIONS["en"])
    head = template.format(
        alert_id=fields.get("alert_id", "?"), severity=fields.get("severity", "?"), ack=ack_digit
    )
    summary = " ".join(fields.get("summary", "").split())  # no line breaks from the payload
    return f"{head}\n{summary}" if summary else head


def outcome_for(done: TextDone) -> AttemptOutcome:
    if 200 <= done.status < 300:
        return AttemptOutcome.ANSWERED_NO_ACK
    return _STATUS_OUTCOMES.get(done.status, AttemptOutcome.FAILED)


class SipTexter:
    def __init__(self, phone: Phone) -> None:
        self._phone = phone
        self._waiting: dict[TextId, asyncio.Future[TextDone]] = {}
        self.replies: asyncio.Queue[TextReceived] = asyncio.Queue(MAX_QUEUED_REPLIES)
        self.dropped_replies = 0
        phone.on_text_event = self._on_event

    def _on_event(self, event: TextDone | TextReceived) -> None:
        if isinstance(event, TextDone):
            waiter = self._waiting.pop(event.text_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
            return
        try:
            self.replies.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped_replies += 1  # answered 200 already; too many to look at now
            log.warning("text reply from %s dropped: too many waiting", event.sender)

    async def send(self, target: SipUri, text: str, reply_window_seconds: float) -> TextDone:
        waiter: asyncio.Future[TextDone] = asyncio.get_running_loop().create_future()
        agent = self._phone.agent

        def send(now: float) -> TextId:
            agent.expect_texts_from(target, now + reply_window_seconds)
            text_id = agent.send_text(target, text, now)
            self._waiting[text_id] = waiter  # before the endpoint dispatches its events
            return text_id

        text_id = self._phone.endpoint.act(send)
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                return await waiter
        except TimeoutError:
            return TextDone(text_id, 408, "no final answer")
        finally:
            self._waiting.pop(text_id, None)


class MessageNotifier:
    def __init__(self, texter: SipTexter, domain: str, reply_window_seconds: float) -> None:
        self._texter = texter
        self._domain = domain
        self._window = reply_window_seconds

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        # A text cannot be taken back: ``stop`` (handled meanwhile) does not apply to it.
        try:
            target = target_uri(notification.contact, self._domain)
        except ValueError as exc:
            return NotifyResult(AttemptOutcome.FAILED, detail=f"no SIP target: {exc}")
        text = compose_text(notification.fields, notification.language, notification.menu.ack_digit)
        done = await self._texter.send(target, text, self._window)
        outcome = outcome_for(done)
        detail = "delivered" if outcome is AttemptOutcome.ANSWERED_NO_ACK else "not delivered"
        return NotifyResult(outcome, done.status, done.reason, detail=f"text {detail}")
