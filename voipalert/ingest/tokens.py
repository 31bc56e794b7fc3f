"""API tokens: scopes, secrets and what is kept of them (pure: no I/O).

A token is 32 random bytes (``va_`` + URL-safe base64). Only its SHA-256 is stored: with that
much entropy a fast hash is enough — nobody can brute-force a 256-bit secret, so the slow
password hashes buy nothing here — and lookups by hash stay cheap on every request.

Senders that sign their body instead of sending the token (Grafana's "HMAC signature",
GitHub-style ``sha256=`` headers) sign with the token's *signing secret*: its SHA-256 in hex.
The server can check such a signature from what it stores, and the signing secret alone
never grants more than the ``trigger`` scope.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

TOKEN_PREFIX: Final = "va_"
TOKEN_BYTES: Final = 32
TOKEN_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Scope(enum.StrEnum):
    TRIGGER = "trigger"  # create alerts, post webhooks (which may resolve their own alerts)
    READ = "read"  # read alerts and their call history
    ADMIN = "admin"  # everything, including acknowledging and resolving by id

    @classmethod
    def parse_many(cls, text: str) -> frozenset[Scope]:
        """Scopes from the stored space-separated text; unknown words are ignored."""
        known = {s.value for s in cls}
        return frozenset(cls(word) for word in text.split() if word in known)


def grants(scopes: frozenset[Scope], needed: Scope) -> bool:
    """``admin`` grants every scope."""
    return needed in scopes or Scope.ADMIN in scopes


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    token_sha256: str
    scopes: frozenset[Scope]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What is stored, and also the token's signing secret (see the module docstring)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign(signing_secret: str, body: bytes, timestamp: str | None = None) -> str:
    """HMAC-SHA256 of ``[timestamp ":"] body`` in hex, the way Grafana signs webhooks."""
    message = body if timestamp is None else timestamp.encode("ascii") + b":" + body
    return hmac.new(signing_secret.encode("ascii"), message, hashlib.sha256).hexdigest()


def signature_matches(signing_secret: str, body: bytes, given: str, timestamp: str | None) -> bool:
    """Constant-time comparison of a received signature (``hex`` or ``sha256=hex``)."""
    given = given.strip().removeprefix("sha256=").lower()
    expected = sign(signing_secret, body, timestamp)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
