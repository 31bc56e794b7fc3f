"""Silences in Alertmanager: the link an alert keeps to the Alertmanager it came from, and the
outbox of requests the silencer (``ingest.silencer``) makes.

The rows are queued by triggers of migration 0004 inside the transaction that acknowledges
or closes the alert, whatever path it took; this module only reads what is due and records
what happened, each result also as an audit entry of the alert (its timeline).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from voipalert.clock import Clock
from voipalert.domain.alert import AlertId
from voipalert.store import alert_sql
from voipalert.store.db import from_db, to_db
from voipalert.store.sql import Conn, Database, Row

OutboxAction = Literal["silence", "expire"]
OutboxState = Literal["pending", "done", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class AmLink:
    """Where a silence for an alert goes and what it matches (from the hook's settings)."""

    hook: str
    url: str
    matchers: Mapping[str, str]
    silence_seconds: int
    comment_url: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    alert_id: AlertId
    action: OutboxAction
    tries: int
    link: AmLink
    acked_by: str | None
    summary: str
    silence_id: str | None  # for "expire": the silence made for the alert, if it was made
    silence_state: str | None  # for "expire": that silence row's state


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    action: OutboxAction
    state: OutboxState
    tries: int
    due_at: datetime
    silence_id: str | None
    last_error: str | None


async def save_link(conn: Conn, alert_id: int, link: AmLink) -> None:
    await conn.execute(
        "INSERT INTO am_links (alert_id, hook, url, matchers, silence_seconds, comment_url) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO UPDATE SET "
        "matchers = excluded.matchers",
        (
            alert_id,
            link.hook,
            link.url,
            json.dumps(dict(link.matchers)),
            link.silence_seconds,
            link.comment_url,
        ),
    )


_DUE = """
SELECT o.id, o.alert_id, o.action, o.tries, l.hook, l.url, l.matchers, l.silence_seconds,
    l.comment_url, a.acked_by, a.summary,
    (SELECT s.silence_id FROM am_outbox s WHERE s.alert_id = o.alert_id
        AND s.action = 'silence' ORDER BY s.id DESC LIMIT 1) AS made_silence_id,
    (SELECT s.state FROM am_outbox s WHERE s.alert_id = o.alert_id
        AND s.action = 'silence' ORDER BY s.id DESC LIMIT 1) AS made_silence_state
FROM am_outbox o JOIN am_links l ON l.alert_id = o.alert_id JOIN alerts a ON a.id = o.alert_id
WHERE o.state = 'pending' AND o.due_at <= ? ORDER BY o.id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class SilencedAlert:
    """An acknowledged alert whose silence is in place: Alertmanager will not tell us when
    its alerts resolve (it notifies nothing about silenced alerts), so we ask."""

    alert_id: AlertId
    link: AmLink
    silence_id: str


def _link(row: Row) -> AmLink:
    return AmLink(
        row["hook"], row["url"], json.loads(row["matchers"]), row["silence_seconds"],
        row["comment_url"],
    )  # fmt: skip


class OutboxStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def due_outbox(self, limit: int = 50) -> list[OutboxItem]:
        """Requests due now, oldest first (a silence before the expiry of the same alert)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(_DUE, (to_db(now), limit))
        return [
            OutboxItem(
                id=r["id"],
                alert_id=AlertId(r["alert_id"]),
                action=r["action"],
                tries=r["tries"],
                link=_link(r),
                acked_by=r["acked_by"],
                summary=r["summary"],
                silence_id=r["made_silence_id"],
                silence_state=r["made_silence_state"],
            )
            for r in rows
        ]

    async def next_outbox_due(self) -> datetime | None:
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT MIN(due_at) AS due FROM am_outbox WHERE state = 'pending'"
                )
            )
        due = rows[0]["due"] if rows else None
        return from_db(due) if due else None

    async def outbox_done(
        self, item: OutboxItem, event: str, silence_id: str | None = None
    ) -> bool:
        """The request succeeded (or had nothing left to do): ``event`` goes on the alert's
        timeline. Recorded only over the row as it was read (still pending, the same
        tries): a silencer that lost its job lock meanwhile records nothing
        (docs/multi-node.md, "Single-writer jobs"). Whether it recorded."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="record a silence") as conn:
            rows = await conn.execute_fetchall(
                "UPDATE am_outbox SET state = 'done', tries = tries + 1, silence_id = ?, "
                "last_error = NULL WHERE id = ? AND state = 'pending' AND tries = ? RETURNING id",
                (silence_id, item.id, item.tries),
            )
            if not list(rows):
                return False
            await alert_sql.audit(
                conn, now, "alertmanager", event, alert_id=item.alert_id,
                hook=item.link.hook, url=item.link.url, silence_id=silence_id,
            )  # fmt: skip
        return True

    async def outbox_retry(self, item: OutboxItem, error: str, due_at: datetime | None) -> bool:
        """One try failed: try again at ``due_at``, or give up (None). Recorded only over
        the row as it was read, as ``outbox_done``."""
        now = self._clock.now_utc()
        state = "pending" if due_at is not None else "failed"
        async with self._db.transaction(write=True, what="record a silence failure") as conn:
            rows = await conn.execute_fetchall(
                "UPDATE am_outbox SET state = ?, tries = tries + 1, last_error = ?, "
                "due_at = COALESCE(?, due_at) WHERE id = ? AND state = 'pending' AND tries = ? "
                "RETURNING id",
                (state, error, to_db(due_at) if due_at else None, item.id, item.tries),
            )
            if not list(rows):
                return False
            await alert_sql.audit(
                conn, now, "alertmanager",
                f"alertmanager.{item.action}_{'retrying' if due_at else 'failed'}",
                alert_id=item.alert_id, hook=item.link.hook, error=error, tries=item.tries + 1,
            )  # fmt: skip
        return True

    async def outbox_cancel_silence(self, item: OutboxItem) -> None:
        """The alert closed before its silence was made: make none, and expire none."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="cancel a silence") as conn:
            await conn.execute(
                "UPDATE am_outbox SET state = 'cancelled' WHERE alert_id = ? AND state = 'pending'",
                (item.alert_id,),
            )
            await alert_sql.audit(
                conn, now, "alertmanager", "alertmanager.silence_cancelled",
                alert_id=item.alert_id, hook=item.link.hook,
            )  # fmt: skip

    async def silenced_alerts(self) -> list[SilencedAlert]:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT a.id, l.hook, l.url, l.matchers, l.silence_seconds, l.comment_url, "
                "o.silence_id FROM alerts a JOIN am_links l ON l.alert_id = a.id "
                "JOIN am_outbox o ON o.alert_id = a.id AND o.action = 'silence' "
                "AND o.state = 'done' WHERE a.status = 'acknowledged' ORDER BY a.id"
            )
        return [
            SilencedAlert(
                AlertId(r["id"]),
                _link(r),
                r["silence_id"],
            )
            for r in rows
        ]

    async def outbox_of(self, alert_id: int) -> list[OutboxRow]:
        """An alert's silence requests, oldest first (for the API and tests)."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM am_outbox WHERE alert_id = ? ORDER BY id", (alert_id,)
            )
        return [
            OutboxRow(
                r["id"],
                r["action"],
                r["state"],
                r["tries"],
                from_db(r["due_at"]),
                r["silence_id"],
                r["last_error"],
            )
            for r in rows
        ]

    async def outbox_counts(self) -> dict[str, int]:
        """Rows by state (for /metrics)."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT state, COUNT(*) AS n FROM am_outbox GROUP BY state"
            )
        return {r["state"]: r["n"] for r in rows}
