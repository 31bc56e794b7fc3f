"""Shift-change notices: a text or an e-mail to each person who asked for one, some time
before each of their shifts starts (docs/rota-edits.md, "Shift-change notices").

Once a minute the rota as it stands (file, overrides and live sources' copies) is turned
into each schedule's exact on-call segments for the hours ahead (``calendar_out``'s exact
segments), and ``domain.shift_notices`` says which notices are due. Each is sent once: it is
written to the audit log (``shift_notice.sent``, with the outcome), which is also what a
restarted service reads back, so a restart never sends a notice twice. A notice that could
not be sent (no channel configured, the phone or the mail server refused) is logged and
recorded too, and not retried: it is a courtesy, the alerts themselves do not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

import aiosmtplib

from voipalert.clock import Clock
from voipalert.domain.rota import ContactKind
from voipalert.domain.shift_notices import (
    DueNotice,
    NoticeKey,
    due_notices,
    longest_notice,
    notice_text,
)
from voipalert.ingest.calendar_out import exact_segments
from voipalert.notify.email import MailConfig, send_plain
from voipalert.notify.message import SipTexter
from voipalert.notify.voice import target_uri
from voipalert.store import Store

log = logging.getLogger("voipalert.shift_notices")

ACTION: Final = "shift_notice.sent"
REMEMBER: Final = timedelta(days=8)  # longer than the longest notice (7 days)


@dataclass(frozen=True, slots=True)
class ShiftNoticeConfig:
    domain: str
    poll_seconds: float = 60.0


class ShiftNoticeSender:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        config: ShiftNoticeConfig,
        *,
        texter: SipTexter | None,
        mail: MailConfig | None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self._texter = texter
        self._mail = mail
        self._sent: set[NoticeKey] | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("shift notices could not be checked; trying again later")
            await asyncio.sleep(self._config.poll_seconds)

    async def check(self) -> list[DueNotice]:
        """Send every notice due now; the ones sent (or tried)."""
        now = self._clock.now_utc()
        if self._sent is None:
            entries = await self._store.audit_since(ACTION, now - REMEMBER)
            self._sent = {_key(e.detail) for e in entries}
        rota = (await self._store.load_rota_with_feeds())[0]
        ahead = longest_notice(rota)
        if not ahead:
            return []
        days = ahead.days + 2
        handled = []
        for schedule in rota.schedules:
            segments = exact_segments(schedule, rota.overrides_for(schedule.name), now, days)
            for notice in due_notices(
                rota, schedule.name, schedule.time_zone, segments, now, self._sent
            ):
                outcome = await self._send(notice)
                self._sent.add(notice.key)
                await self._store.record(
                    "voipalert", ACTION,
                    {"person": notice.person, "schedule": notice.schedule,
                     "start": notice.start.isoformat(), "outcome": outcome},
                )  # fmt: skip
                handled.append(notice)
        return handled

    async def _send(self, notice: DueNotice) -> str:
        text = notice_text(notice)
        contact = notice.contact
        if contact.kind is ContactKind.EMAIL:
            if self._mail is None:
                log.warning("shift notice for %s not sent: e-mail is off ([mail])", notice.person)
                return "no e-mail channel"
            try:
                await send_plain(self._mail, contact.address, text, text, self._clock)
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.warning("shift notice e-mail to %s not sent: %s", notice.person, exc)
                return f"e-mail not sent: {exc}"
            return "e-mail accepted"
        if self._texter is None:
            log.warning("shift notice for %s not sent: texts are off ([text])", notice.person)
            return "no text channel"
        done = await self._texter.send(target_uri(contact, self._config.domain), text, 0.0)
        if not 200 <= done.status < 300:
            log.warning("shift notice text to %s: %s %s", notice.person, done.status, done.reason)
        return f"text {done.status} {done.reason}"


def _key(detail: object) -> NoticeKey:
    d = detail if isinstance(detail, dict) else {}
    return (str(d.get("person")), str(d.get("schedule")), str(d.get("start")))
