"""Body signatures for webhook senders that sign instead of sending a bearer token (pure).

A token that may trigger has a *signing secret* (``store.secret``: derived from a per-token
salt and the server secret file, never from the database alone). A sender such as Grafana
("HMAC signature" on a webhook contact point) is configured with it and signs each body with
HMAC-SHA256, over ``timestamp ":" body`` when it sends a timestamp header; the server
recomputes the signature for each live signing secret. A signing secret only ever grants the
``trigger`` scope (``ingest.auth``), so a leaked one cannot read or acknowledge anything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

TOKEN_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A Unix time in seconds: ten digits until the year 2286; twelve leave room and keep
# int() and float arithmetic far from any overflow.
_UNIX_TIME: Final = re.compile(r"^[0-9]{1,12}$")
_HEX_SHA256: Final = re.compile(r"^[0-9a-f]{64}$")


def token_digest(token: str) -> str:
    """SHA-256 of the token in hex (what the store keeps; the auth cache's key)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def parse_timestamp(text: str) -> int | None:
    """The Unix time in a timestamp header, or None when it is not one (bounded: never
    converts an arbitrarily long number)."""
    text = text.strip()
    return int(text) if _UNIX_TIME.match(text) else None


def normalize_signature(given: str) -> str | None:
    """``hex`` or ``sha256=hex`` (any case) as lowercase hex, or None when malformed. The
    replay cache keys on this form, so a case change is not a new signature."""
    value = given.strip().lower().removeprefix("sha256=")
    return value if _HEX_SHA256.match(value) else None


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """HMAC-SHA256 of ``[timestamp ":"] body`` in hex, the way Grafana signs webhooks."""
    message = body if timestamp is None else timestamp.encode("ascii") + b":" + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, given: str, timestamp: str | None) -> bool:
    """Constant-time comparison of a normalized received signature."""
    expected = sign(secret, body, timestamp)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
