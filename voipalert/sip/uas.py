"""Answers to requests that reach us (RFC 3261 §8.2): pure functions from request to response.

The agent decides which dialog or transaction a request belongs to; these functions only
say what to answer. Unknown methods get 501 and known ones we do not implement get 405,
both with ``Allow`` (§8.2.1); an unsupported ``Require`` gets 420 with ``Unsupported``
(§8.2.2.3); DTMF arrives in INFO bodies (``application/dtmf-relay``, ``application/dtmf``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from voipalert.sip.dialog import ALLOW
from voipalert.sip.headers import HeaderInput
from voipalert.sip.message import Request, Response, response_to

KNOWN_METHODS: Final = frozenset(
    {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "NOTIFY", "REGISTER", "PRACK",
     "SUBSCRIBE", "REFER", "MESSAGE", "UPDATE", "PUBLISH"}
)  # fmt: skip
# NOTIFY events a PBX sends without a subscription (MWI from Asterisk, 3CX, Fritz!Box;
# keep-alives); answering 200 stops their retransmissions. Others get 489 (RFC 6665 §4.1.3).
ACCEPTED_EVENTS: Final = frozenset({"message-summary", "keep-alive", "check-sync"})
DTMF_KEYS: Final = "0123456789*#ABCD"
# RFC 4733 event codes 10 and 11 are * and #, sometimes sent by number in dtmf-relay.
_SIGNAL_CODES: Final = {str(i): key for i, key in enumerate(DTMF_KEYS)}


@dataclass(frozen=True, slots=True)
class InfoDigit:
    digit: str
    duration_ms: int | None


def allow_headers() -> tuple[HeaderInput, ...]:
    return (("Allow", ALLOW),)


def unsupported_method(request: Request, user_agent: str) -> Response:
    status = 405 if request.method in KNOWN_METHODS else 501
    return response_to(request, status, headers=(*allow_headers(), ("Server", user_agent)))


def unsupported_extensions(
    request: Request, supported: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Options in ``Require`` that we do not support (§8.2.2.3): all but ``supported``
    (``timer`` when session timers are on, RFC 4028 §9)."""
    if request.method in ("ACK", "CANCEL"):
        return ()
    return tuple(tag for tag in request.require if tag.lower() not in supported)


def options_response(request: Request, user_agent: str) -> Response:
    """200 to OPTIONS, in or out of a dialog (Asterisk qualify, trunk keep-alives)."""
    return response_to(
        request, 200,
        headers=(*allow_headers(), ("Accept", "application/sdp"), ("Server", user_agent)),
    )  # fmt: skip


def notify_status(request: Request) -> int:
    event = (request.headers.get("Event") or request.headers.get("o") or "").split(";")[0]
    return 200 if event.strip().lower() in ACCEPTED_EVENTS else 489


def parse_info_digit(request: Request) -> InfoDigit | None:
    """The key in an INFO body, or None when the body carries none we understand."""
    kind = request.content_type
    text = request.body.decode("ascii", "replace").strip()
    if kind == "application/dtmf":
        key = text.upper()[:1]
        return InfoDigit(key, None) if key and key in DTMF_KEYS else None
    if kind != "application/dtmf-relay":
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    signal = fields.get("signal", "").upper()
    key = _SIGNAL_CODES.get(signal, signal)
    if len(key) != 1 or key not in DTMF_KEYS:
        return None
    duration = fields.get("duration", "")
    return InfoDigit(key, int(duration) if duration.isdigit() and len(duration) < 7 else None)


def info_status(request: Request) -> int:
    """200 for a DTMF INFO or an empty keep-alive INFO; 415 for bodies we cannot read."""
    if not request.body:
        return 200
    return 200 if parse_info_digit(request) is not None else 415
