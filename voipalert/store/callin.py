"""Call-in (docs/call-in.md): people's PINs, who may resolve by phone, the failed PIN
attempts the hourly limit counts, and the open alerts a caller hears.

A PIN is stored as ``HMAC-SHA256(server key, context || PIN)``: the key is the server
secret (``store.secret``, a file of its own, never in the database), so a copy of the
database does not give the PINs away even though 4-8 digits are few enough to try them
all against a plain or salted hash. The digest does not depend on the person, so a PIN can
also identify a caller whose number is unknown, when exactly one person has it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from voipalert.clock import Clock
from voipalert.domain.alert import Alert
from voipalert.store import alert_sql
from voipalert.store.db import to_db
from voipalert.store.sql import Database

PIN: Final = re.compile(r"^[0-9]{4,8}$")
_CONTEXT: Final = b"voipalert call-in pin v1\x00"
MAX_OPEN_ALERTS: Final = 50


def pin_digest(key: bytes, pin: str) -> str:
    return hmac.new(key, _CONTEXT + pin.encode("ascii"), hashlib.sha256).hexdigest()


def check_pin_format(pin: str) -> str:
    """The PIN as given, or ``ValueError`` saying what a PIN must be."""
    if not PIN.fullmatch(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    return pin


@dataclass(frozen=True, slots=True)
class CallinPerson:
    name: str
    has_pin: bool
    may_resolve: bool


class CallinStore:
    _db: Database
    _clock: Clock

    async def set_callin_pin(
        self, person: str, pin: str | None, *, may_resolve: bool, actor: str
    ) -> None:
        """Set (or with ``pin`` None, clear) ``person``'s PIN and whether they may resolve
        by phone; audited under ``actor``."""
        digest = None if pin is None else pin_digest(self._db.server_key, check_pin_format(pin))
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="set a call-in PIN") as conn:
            await conn.execute(
                "INSERT INTO callin_people (person_name, pin_digest, may_resolve, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (person_name) DO UPDATE SET "
                "pin_digest = excluded.pin_digest, may_resolve = excluded.may_resolve, "
                "updated_at = excluded.updated_at",
                (person, digest, int(may_resolve), to_db(now)),
            )
            await alert_sql.audit(
                conn, now, actor, "callin.pin_set" if pin else "callin.pin_cleared",
                person=person, may_resolve=may_resolve,
            )  # fmt: skip

    async def callin_person(self, person: str) -> CallinPerson | None:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT * FROM callin_people WHERE person_name = ?", (person,)
            )
        if not rows:
            return None
        row = rows[0]
        return CallinPerson(row["person_name"], row["pin_digest"] is not None,
                            bool(row["may_resolve"]))  # fmt: skip

    async def callin_check_pin(self, pin: str, person: str | None) -> str | None:
        """Who ``pin`` identifies: ``person``'s name when it is theirs; with no person,
        the one person whose PIN it is (a PIN two people share identifies nobody)."""
        if not PIN.fullmatch(pin):
            return None
        digest = pin_digest(self._db.server_key, pin)
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT person_name FROM callin_people WHERE pin_digest = ? LIMIT 2", (digest,)
            )
        names = [r["person_name"] for r in rows]
        if person is not None:
            return person if person in names else None
        return names[0] if len(names) == 1 else None

    async def callin_any_pin(self) -> bool:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT 1 FROM callin_people WHERE pin_digest IS NOT NULL LIMIT 1"
            )
        return bool(rows)

    async def callin_pin_failed(
        self, subjects: list[str], *, caller: str, person: str | None, locked: bool
    ) -> None:
        """A wrong PIN: one row per subject; a call locked out also writes an audit line."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="record a wrong PIN") as conn:
            await conn.executemany(
                "INSERT INTO callin_pin_failures (subject, at) VALUES (?, ?)",
                [(s, to_db(now)) for s in subjects],
            )
            if locked:
                await alert_sql.audit(
                    conn, now, "call-in", "callin.locked_out", caller=caller, person=person
                )

    async def callin_failures_since(self, subject: str, since: datetime) -> int:
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT COUNT(*) AS n FROM callin_pin_failures WHERE subject = ? AND at >= ?",
                (subject, to_db(since)),
            )
        return int(rows[0]["n"])

    async def prune_callin_failures(self, before: datetime) -> None:
        async with self._db.transaction(write=True, what="prune PIN failures") as conn:
            await conn.execute("DELETE FROM callin_pin_failures WHERE at < ?", (to_db(before),))

    async def callin_open_alerts(self, person: str) -> list[Alert]:
        """The triggered alerts ``person`` was notified of (any attempt to them), oldest
        first: what the call-in menu reads out."""
        async with self._db.transaction(write=False) as conn:
            rows = await conn.execute_fetchall(
                "SELECT id FROM alerts WHERE status = 'triggered' AND id IN "
                "(SELECT alert_id FROM attempts WHERE person_name = ?) ORDER BY id LIMIT ?",
                (person, MAX_OPEN_ALERTS),
            )
            alerts = [await alert_sql.fetch_alert(conn, int(r["id"])) for r in rows]
        return [a for a in alerts if a is not None]
