"""Texts sent (attempts with method ``message``) and the replies to them: which recent
text a reply may acknowledge, and the log of every reply (docs/text-channels.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from voipalert.clock import Clock
from voipalert.domain.alert import AlertStatus, Attempt
from voipalert.store import alert_sql
from voipalert.store.db import to_db
from voipalert.store.sql import Database

MAX_RECENT_TEXTS: Final = 500
ReplyResult = Literal["acknowledged", "already_handled", "not_understood", "no_open_text"]


@dataclass(frozen=True, slots=True)
class SentText:
    attempt: Attempt
    alert_status: AlertStatus


class TextStore:
    _db: Database
    _clock: Clock

    async def recent_texts(self, since: datetime) -> list[SentText]:
        """Texts delivered (or still being sent) since ``since``, newest first."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT t.*, a.status AS alert_status FROM attempts t "
                "JOIN alerts a ON a.id = t.alert_id "
                "WHERE t.method = 'message' AND t.state IN ('in_flight', 'done') "
                "AND (t.outcome IS NULL OR t.outcome = 'answered_no_ack') "
                "AND t.created_at >= ? ORDER BY t.id DESC LIMIT ?",
                (to_db(since), MAX_RECENT_TEXTS),
            )
        return [
            SentText(alert_sql.attempt_from_row(r), AlertStatus(r["alert_status"])) for r in rows
        ]

    async def log_text_reply(
        self,
        sender: str,
        body: str,
        result: ReplyResult,
        *,
        alert_id: int | None = None,
        attempt_id: int | None = None,
    ) -> None:
        async with self._db.transaction(write=True) as conn:
            await conn.execute(
                "INSERT INTO text_replies (received_at, channel, sender, body, alert_id, "
                "attempt_id, result) VALUES (?, 'message', ?, ?, ?, ?, ?)",
                (to_db(self._clock.now_utc()), sender, body, alert_id, attempt_id, result),
            )
