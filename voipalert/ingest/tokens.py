"""Body signatures for webhook senders that sign instead of sending a bearer token (pure).

The store keeps only the SHA-256 (hex) of each API token (``store.tokens``). That digest is
also the token's *signing secret*: a sender such as Grafana ("HMAC signature" on a webhook
contact point) is configured with it and signs each body with HMAC-SHA256; the server checks
the signature against what it stores, without ever holding the token. A signing secret only
ever grants the ``trigger`` scope (``ingest.auth``), so a leaked one cannot read or
acknowledge anything.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

TOKEN_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def signing_secret(token: str) -> str:
    """SHA-256 of the token in hex: what the store keeps, and the HMAC key for signing."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def sign(secret: str, body: bytes, timestamp: str | None = None) -> str:
    """HMAC-SHA256 of ``[timestamp ":"] body`` in hex, the way Grafana signs webhooks."""
    message = body if timestamp is None else timestamp.encode("ascii") + b":" + body
    return hmac.new(secret.encode("ascii"), message, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, given: str, timestamp: str | None) -> bool:
    """Constant-time comparison of a received signature (``hex`` or ``sha256=hex``)."""
    given = given.strip().removeprefix("sha256=").lower()
    expected = sign(secret, body, timestamp)
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii", "replace"))
