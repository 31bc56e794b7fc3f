"""API tokens: created with a name and scopes, shown once, kept only as a SHA-256.

A token that may trigger (scope ``trigger`` or ``admin``) also has a webhook *signing
secret*, for senders that sign bodies instead of sending the token. It is derived from a
random per-token salt and the server secret kept outside the database (``store.secret``), so
neither the token's hash nor anything else in the database file gives it away. Read-only
tokens have no signing secret at all.

A token is 32 random bytes (``secrets.token_urlsafe``), so a plain SHA-256 is enough: there
is nothing to brute-force that a slow hash would protect. Looking a token up by its hash
through a unique index leaks nothing useful through timing (the attacker would need a
preimage of the hash); the HTTP layer still compares signatures in constant time.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from voipalert.clock import Clock
from voipalert.store import alert_sql
from voipalert.store.db import from_db, from_db_opt, to_db
from voipalert.store.errors import StoreError
from voipalert.store.secret import derive_signing_secret, new_salt
from voipalert.store.sql import Database

TOKEN_BYTES: Final = 32
TOKEN_PREFIX: Final = "va_"


class Scope(enum.StrEnum):
    TRIGGER = "trigger"  # create alerts, webhooks
    READ = "read"  # list and read alerts
    ADMIN = "admin"  # ack, resolve, everything


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


def may_sign(scopes: frozenset[Scope]) -> bool:
    """Only a token that may trigger gets a signing secret: a signature grants nothing else."""
    return Scope.TRIGGER in scopes or Scope.ADMIN in scopes


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def create_api_token(
        self, name: str, scopes: frozenset[Scope], actor: str = "cli"
    ) -> tuple[ApiToken, str]:
        """A new token; the secret is returned here and never again. ``actor`` is who made
        it, for the audit log (the CLI, or a console user)."""
        if not scopes:
            raise StoreError("a token needs at least one scope")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        salt = new_salt() if may_sign(scopes) else None
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"create token {name!r}") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "INSERT INTO api_tokens (name, token_sha256, scopes, created_at, "
                    "signing_salt) VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (name, _digest(secret), " ".join(sorted(scopes)), to_db(now), salt),
                )
            )
            await alert_sql.audit(
                conn, now, actor, "token.created", name=name, scopes=sorted(scopes)
            )
        return ApiToken(rows[0]["id"], name, scopes, now), secret

    async def verify_api_token(self, secret: str) -> ApiToken | None:
        """The live token with this secret (and note its use), or None."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what="verify token") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE api_tokens SET last_used_at = ? "
                    "WHERE token_sha256 = ? AND revoked_at IS NULL RETURNING *",
                    (to_db(now), _digest(secret)),
                )
            )
        if not rows:
            return None
        row = rows[0]
        return ApiToken(
            row["id"],
            row["name"],
            frozenset(Scope(s) for s in row["scopes"].split()),
            from_db(row["created_at"]),
            from_db_opt(row["last_used_at"]),
        )

    async def revoke_api_token(self, name: str, actor: str = "cli") -> bool:
        now = self._clock.now_utc()
        async with self._db.transaction(write=True, what=f"revoke token {name!r}") as conn:
            rows = await alert_sql.update_audited(
                conn,
                "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL "
                "RETURNING id",
                (to_db(now), name),
                now,
                lambda _: alert_sql.Note(actor, "token.revoked", detail={"name": name}),
            )
        return bool(rows)

    async def signing_secret(self, name: str, *, rotate: bool = False) -> str | None:
        """The webhook signing secret of the live token ``name`` (a new one when ``rotate``:
        the old one stops working), or None when there is no such token or it may not sign.
        Only a process that holds the server secret file can compute it."""
        now = self._clock.now_utc()
        async with self._db.transaction(write=rotate, what=f"signing secret of {name!r}") as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT id, scopes, signing_salt FROM api_tokens "
                    "WHERE name = ? AND revoked_at IS NULL",
                    (name,),
                )
            )
            if not rows or rows[0]["signing_salt"] is None:
                return None
            salt: str = rows[0]["signing_salt"]
            if rotate:
                salt = new_salt()
                await conn.execute(
                    "UPDATE api_tokens SET signing_salt = ? WHERE id = ?", (salt, rows[0]["id"])
                )
                await alert_sql.audit(conn, now, "cli", "token.signing_secret_rotated", name=name)
        return derive_signing_secret(self._db.server_key, salt)
