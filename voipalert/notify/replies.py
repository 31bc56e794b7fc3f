"""Replies to our texts: a reply "1" from the contact a text went to acknowledges that
text's alert (docs/text-channels.md).

The agent has already answered 200 (only senders we texted get that far; strangers get
403 in sip/text.py). Here a reply is matched by its sender to the texts of the last
``reply_window_seconds``; "1" acknowledges the newest one whose alert is still triggered,
"1 42" (or "1 #42") alert 42 if it was texted to that sender. Everything else is logged
and changes nothing. Each sender gets at most ``replies_per_minute`` looked at.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final

from voipalert.clock import Clock
from voipalert.domain.alert import AlertStatus
from voipalert.notify.voice import target_uri
from voipalert.sip.events import TextReceived
from voipalert.sip.text import sender_key
from voipalert.store import Store
from voipalert.store.texts import ReplyResult, SentText

log = logging.getLogger("voipalert.notify")

MAX_LOGGED_BODY_CHARS: Final = 200
MAX_TRACKED_SENDERS: Final = 1000


@dataclass(frozen=True, slots=True)
class Reply:
    acknowledge: bool
    alert_id: int | None = None


def parse_reply(body: str, ack_digit: str) -> Reply:
    # The alert number is apart from the digit ("1 42", "1 #42", "1#42"): "12" is no ack.
    number = r"(?:(?:\s+#?|\s*#)\s*(\d{1,12}))?"
    found = re.fullmatch(rf"\s*{re.escape(ack_digit)}{number}\s*\.?\s*", body)
    if found is None:
        return Reply(acknowledge=False)
    return Reply(True, int(found.group(1)) if found.group(1) else None)


@dataclass
class _Budget:
    minute: float = 0.0
    used: int = 0


@dataclass
class TextReplies:
    store: Store
    clock: Clock
    domain: str
    wake: Callable[[], None]
    reply_window_seconds: float = 3600.0
    replies_per_minute: int = 10
    ack_digit: str = "1"
    _budgets: dict[str, _Budget] = field(default_factory=dict)

    async def handle(self, reply: TextReceived) -> ReplyResult | None:
        """Look at one reply; None when the sender went over its budget (not logged)."""
        key = sender_key(reply.sender)
        if not self._take(key):
            log.warning("text replies from %s over %d/min: ignored", key, self.replies_per_minute)
            return None
        body = reply.body[:MAX_LOGGED_BODY_CHARS]
        since = self.clock.now_utc() - timedelta(seconds=self.reply_window_seconds)
        texts = [t for t in await self.store.recent_texts(since) if self._sent_to(t, key)]
        parsed = parse_reply(reply.body, self.ack_digit)
        if not texts:
            result: ReplyResult = "no_open_text"
            await self.store.log_text_reply(key, body, result)
            return result
        if not parsed.acknowledge:
            log.info("text reply from %s is not %r: logged", key, self.ack_digit)
            await self.store.log_text_reply(key, body, "not_understood")
            return "not_understood"
        return await self._acknowledge(key, body, texts, parsed.alert_id)

    async def _acknowledge(
        self, key: str, body: str, texts: list[SentText], alert_id: int | None
    ) -> ReplyResult:
        chosen = [t for t in texts if alert_id is None or t.attempt.key.alert == alert_id]
        open_ = [t for t in chosen if t.alert_status is AlertStatus.TRIGGERED]
        if not open_:
            first = chosen[0] if chosen else None
            result: ReplyResult = "already_handled" if first else "no_open_text"
            await self.store.log_text_reply(
                key, body, result,
                alert_id=first.attempt.key.alert if first else None,
                attempt_id=first.attempt.id if first else None,
            )  # fmt: skip
            return result
        text = open_[0]
        attempt = text.attempt
        transition = await self.store.ack_alert(
            attempt.key.alert, attempt.key.person, "message", attempt.id
        )
        result = "acknowledged" if transition.changed else "already_handled"
        await self.store.log_text_reply(
            key, body, result, alert_id=attempt.key.alert, attempt_id=attempt.id
        )
        if transition.changed:
            log.info("alert %s acknowledged by %s's text reply", attempt.key.alert, key)
            self.wake()
        return result

    def _sent_to(self, text: SentText, key: str) -> bool:
        try:
            return sender_key(target_uri(text.attempt.contact, self.domain)) == key
        except ValueError:
            return False

    def _take(self, key: str) -> bool:
        minute = self.clock.monotonic() // 60
        budget = self._budgets.setdefault(key, _Budget(minute))
        if budget.minute != minute:
            budget.minute, budget.used = minute, 0
        if len(self._budgets) > MAX_TRACKED_SENDERS:
            self._budgets = {k: b for k, b in self._budgets.items() if b.minute == minute}
        budget.used += 1
        return budget.used <= self.replies_per_minute

    async def run(self, replies: asyncio.Queue[TextReceived]) -> None:
        """Handle replies as they come, until cancelled; one failing never stops the rest."""
        while True:
            reply = await replies.get()
            try:
                await self.handle(reply)
            except Exception:
                log.exception("text reply from %s could not be handled", reply.sender)
