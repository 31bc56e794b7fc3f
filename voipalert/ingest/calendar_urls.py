"""The secret URLs of the calendars out (docs/rota-sources.md): derived from the server
secret, never stored (pure; the CLI prints them without loading the HTTP stack)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final
from urllib.parse import quote

KINDS: Final = ("person", "schedule")


def calendar_token(server_key: bytes, kind: str, name: str, generation: int) -> str:
    message = f"voipalert calendar\0{kind}\0{name}\0{generation}".encode()
    digest = hmac.new(server_key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def calendar_path(kind: str, name: str, token: str) -> str:
    return f"/api/v1/calendars/{kind}/{quote(name, safe='')}/{token}.ics"
