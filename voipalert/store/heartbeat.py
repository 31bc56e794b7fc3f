"""Heartbeat monitors (dead man's switches): a monitored job calls its secret URL at least
every ``every_seconds``; one that stays silent ``grace_seconds`` longer opens an alert.

The URL's token is stored as its SHA-256 only, like API tokens: a beat is found by the hash
of what it presents, so the lookup costs the same for a known and an unknown token.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from voipalert.clock import Clock
from voipalert.domain.alert import Severity
from voipalert.store import alert_sql
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.errors import StoreError
from voipalert.store.sql import Database, Row

HEARTBEAT_TOKEN_PREFIX: Final = "hb_"
HEARTBEAT_TOKEN_BYTES: Final = 24


class HeartbeatExists(StoreError):
    """A heartbeat with that name exists already."""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    name: str
    every_seconds: int
    grace_seconds: int
    team: str | None
    policy: str | None
    severity: Severity
    created_at: datetime
    last_beat_at: datetime | None
    beats: int
    down: bool

    def deadline(self) -> datetime:
        """When silence turns into an alert: the last beat (or the creation) plus both
        periods."""
        since = self.last_beat_at or self.created_at
        return since + timedelta(seconds=self.every_seconds + self.grace_seconds)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _from_row(row: Row) -> Heartbeat:
    return Heartbeat(
        name=row["name"],
        every_seconds=row["every_seconds"],
        grace_seconds=row["grace_seconds"],
        team=row["team"],
        policy=row["policy"],
        severity=Severity(row["severity"]),
        created_at=from_db(row["created_at"]),
        last_beat_at=from_db_opt(row["last_beat_at"]),
        beats=row["beats"],
        down=bool(row["down"]),
    )


class HeartbeatStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def add_heartbeat(
        self,
        name: str,
        every_seconds: int,
        grace_seconds: int = 0,
        *,
        team: str | None = None,
        policy: str | None = None,
        severity: Severity = Severity.CRITICAL,
    ) -> tuple[Heartbeat, str]:
        """A new heartbeat and the secret token of its URL (returned here and never again)."""
        token = HEARTBEAT_TOKEN_PREFIX + secrets.token_urlsafe(HEARTBEAT_TOKEN_BYTES)
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="add a heartbeat") as conn:
            exists = list(
                await conn.execute_fetchall("SELECT 1 FROM heartbeats WHERE name = ?", (name,))
            )
            if exists:
                raise HeartbeatExists(f"a heartbeat named {name!r} exists already")
            await conn.execute(
                "INSERT INTO heartbeats (name, token_sha256, every_seconds, grace_seconds, team, "
                "policy, severity, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name, token_sha256(token), every_seconds, grace_seconds, team, policy,
                    severity.value, to_db(now),
                ),
            )  # fmt: skip
            await alert_sql.audit(
                conn, now, "cli", "heartbeat.added", name=name, every_seconds=every_seconds
            )
            rows = await conn.execute_fetchall("SELECT * FROM heartbeats WHERE name = ?", (name,))
        return _from_row(next(iter(rows))), token

    async def list_heartbeats(self) -> list[Heartbeat]:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall("SELECT * FROM heartbeats ORDER BY name")
        return [_from_row(r) for r in rows]

    async def remove_heartbeat(self, name: str) -> bool:
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="remove a heartbeat") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "DELETE FROM heartbeats WHERE name = ? RETURNING id", (name,)
                )
            )
            if rows:
                await alert_sql.audit(conn, now, "cli", "heartbeat.removed", name=name)
        return bool(rows)

    async def find_heartbeat(self, token: str) -> Heartbeat | None:
        """The heartbeat whose token this is, or None."""
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM heartbeats WHERE token_sha256 = ?", (token_sha256(token),)
                )
            )
        return _from_row(rows[0]) if rows else None

    async def record_beat(self, token: str) -> Heartbeat | None:
        """Record a beat of the heartbeat whose token this is; None for an unknown token.
        The returned value is the heartbeat *before* the beat (``down`` says whether its
        alert was open)."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="record a heartbeat") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM heartbeats WHERE token_sha256 = ?", (token_sha256(token),)
                )
            )
            if not rows:
                return None
            await conn.execute(
                "UPDATE heartbeats SET last_beat_at = ?, beats = beats + 1, down = 0 WHERE id = ?",
                (to_db(now), rows[0]["id"]),
            )
        return _from_row(rows[0])

    async def mark_heartbeat_down(self, name: str, silent_since: datetime) -> bool:
        """Mark it down when no beat came after ``silent_since`` (one may have come in since
        it was read); whether it was marked."""
        async with self._db.transaction(write=True, what="mark a heartbeat down") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE heartbeats SET down = 1 WHERE name = ? AND down = 0 AND "
                    "COALESCE(last_beat_at, created_at) <= ? RETURNING id",
                    (name, to_db(silent_since)),
                )
            )
        return bool(rows)
