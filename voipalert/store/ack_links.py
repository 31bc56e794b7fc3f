"""Acknowledgement links for e-mail: signed, expiring, single-use (docs/text-channels.md).

A link carries ``nonce.alert.expiry`` and an HMAC-SHA256 of it under a key derived from the
server key (``store.secret``; never in the database), so a link cannot be made or altered
without that key. The row in ``ack_links`` is the proof it was issued and records its one
use: ``use_ack_link`` marks it used in the same statement that checks it is unused and
unexpired, so a replayed link (or two clicks at once) acknowledges at most once. The link
is for one alert: its nonce, its signature and its row must all agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from voipalert.clock import Clock
from voipalert.domain.alert import AlertId
from voipalert.store import alert_sql
from voipalert.store.db import to_db
from voipalert.store.sql import Database
from voipalert.store.texts import ReplyResult

_CONTEXT: Final = b"voipalert ack link v1\x00"
NONCE_BYTES: Final = 16
_TOKEN: Final = re.compile(r"([A-Za-z0-9_-]{22})\.(\d{1,12})\.(\d{1,12})\.([A-Za-z0-9_-]{43})")
MAX_TOKEN_CHARS: Final = 128
LinkCheck = Literal["ok", "invalid", "expired", "used"]
LinkUse = Literal["acknowledged", "already_handled", "invalid", "expired", "used"]


@dataclass(frozen=True, slots=True)
class AckLink:
    token: str
    nonce: str
    alert_id: AlertId
    person: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _sign(key: bytes, payload: str) -> str:
    derived = hmac.new(key, _CONTEXT, hashlib.sha256).digest()
    return _b64(hmac.new(derived, payload.encode("ascii"), hashlib.sha256).digest())


def verify_token(key: bytes, token: str, now: datetime) -> tuple[str, int] | LinkCheck:
    """(nonce, alert id) of a well-signed, unexpired token; else why not."""
    found = _TOKEN.fullmatch(token) if len(token) <= MAX_TOKEN_CHARS else None
    if found is None:
        return "invalid"
    nonce, alert, expiry, signature = found.groups()
    if not hmac.compare_digest(signature, _sign(key, f"{nonce}.{alert}.{expiry}")):
        return "invalid"
    if int(expiry) <= now.timestamp():
        return "expired"
    return nonce, int(alert)


class AckLinkStore:
    _db: Database
    _clock: Clock

    async def issue_ack_link(
        self,
        alert_id: int,
        person: str,
        sent_to: str,
        valid_seconds: int,
        attempt_id: int | None = None,
    ) -> AckLink:
        now = self._clock.now_utc()
        expires = datetime.fromtimestamp(int(now.timestamp()) + valid_seconds, UTC)
        nonce = _b64(secrets.token_bytes(NONCE_BYTES))
        payload = f"{nonce}.{alert_id}.{int(expires.timestamp())}"
        token = f"{payload}.{_sign(self._db.server_key, payload)}"
        async with self._db.transaction(write=True, what="issue an acknowledgement link") as conn:
            await conn.execute(
                "INSERT INTO ack_links (nonce, alert_id, attempt_id, person_name, sent_to, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (nonce, alert_id, attempt_id, person, sent_to.lower(), to_db(now), to_db(expires)),
            )
        return AckLink(token, nonce, AlertId(alert_id), person, expires)

    async def check_ack_link(self, token: str) -> tuple[LinkCheck, AckLink | None]:
        """What a GET of the link shows: whether it would work, without using it."""
        now = self._clock.now_utc()
        checked = verify_token(self._db.server_key, token, now)
        if isinstance(checked, str):
            return checked, None
        nonce, alert_id = checked
        async with self._db.transaction(write=False) as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT * FROM ack_links WHERE nonce = ? AND alert_id = ?", (nonce, alert_id)
                )
            )
        if not rows:
            return "invalid", None
        row = rows[0]
        link = AckLink(
            token, nonce, AlertId(alert_id), row["person_name"],
            datetime.fromisoformat(row["expires_at"]),
        )  # fmt: skip
        return ("used" if row["used_at"] else "ok"), link

    async def use_ack_link(self, token: str) -> tuple[LinkUse, AckLink | None]:
        """Use the link once: acknowledge its alert (if still triggered) as its person."""
        now = self._clock.now_utc()
        checked = verify_token(self._db.server_key, token, now)
        if isinstance(checked, str):
            return ("invalid" if checked == "ok" else checked), None
        nonce, alert_id = checked
        async with self._db.transaction(write=True, what="use an acknowledgement link") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE ack_links SET used_at = ? WHERE nonce = ? AND alert_id = ? "
                    "AND used_at IS NULL AND expires_at > ? RETURNING *",
                    (to_db(now), nonce, alert_id, to_db(now)),
                )
            )
            if not rows:
                known = await conn.execute_fetchall(
                    "SELECT used_at FROM ack_links WHERE nonce = ? AND alert_id = ?",
                    (nonce, alert_id),
                )
                return ("used" if list(known) else "invalid"), None
            row = rows[0]
            acked = await alert_sql.acknowledge(
                conn, now, alert_id, row["person_name"], via="email",
                attempt_id=row["attempt_id"], wake_engine=True,
            )  # fmt: skip
            result: LinkUse = "acknowledged" if acked is not None else "already_handled"
            await conn.execute(
                "UPDATE ack_links SET used_result = ? WHERE nonce = ?", (result, nonce)
            )
        link = AckLink(
            token, nonce, AlertId(alert_id), row["person_name"],
            datetime.fromisoformat(row["expires_at"]),
        )  # fmt: skip
        return result, link

    async def ack_by_mail_reply(
        self,
        sender: str,
        *,
        nonce: str | None,
        alert_id: int | None,
        acknowledge: bool,
        first_line: str,
    ) -> ReplyResult:
        """A reply to one of our e-mails: it acknowledges when it says so, comes from the
        address that e-mail went to, before the link expired, and the alert is triggered.
        Logged in ``text_replies`` whatever it says."""
        now = self._clock.now_utc()
        key, value = ("nonce", nonce) if nonce is not None else ("alert_id", alert_id)
        async with self._db.transaction(write=True, what="take an e-mail reply") as conn:
            rows = list(
                await conn.execute_fetchall(
                    f"SELECT * FROM ack_links WHERE {key} = ? AND sent_to = ? "
                    "AND expires_at > ? ORDER BY created_at DESC LIMIT 1",
                    (value, sender.lower(), to_db(now)),
                )
            )
            row = rows[0] if rows else None
            result: ReplyResult = "no_open_text" if row is None else "not_understood"
            if row is not None and acknowledge:
                acked = await alert_sql.acknowledge(
                    conn, now, row["alert_id"], row["person_name"], via="email",
                    attempt_id=row["attempt_id"], wake_engine=True,
                )  # fmt: skip
                result = "acknowledged" if acked is not None else "already_handled"
            await conn.execute(
                "INSERT INTO text_replies (received_at, channel, sender, body, alert_id, "
                "attempt_id, result) VALUES (?, 'email', ?, ?, ?, ?, ?)",
                (
                    to_db(now), sender.lower(), first_line[:200],
                    row["alert_id"] if row else None, row["attempt_id"] if row else None, result,
                ),
            )  # fmt: skip
        return result
