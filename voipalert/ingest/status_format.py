"""The bodies and signature of outgoing status webhooks (pure: no I/O, time is an argument).

Two formats (docs/outbound.md):

- ``json``: voipalert's own document, the event and a snapshot of the alert;
- ``slack``: the incoming-webhook message that Slack, Mattermost and Rocket.Chat all take,
  ``{"text": ..., "attachments": [...]}`` with the attachment fields the three share
  (``fallback``, ``color``, ``title``, ``title_link``, ``text``, ``fields`` of
  ``title``/``value``/``short``, ``footer``, ``ts``).

Alert text comes from whoever holds a trigger token, so in the chat format it cannot
mention people: Slack's ``<!channel>`` and links need ``<``, which is escaped (Slack's
message formatting rules: ``&``, ``<`` and ``>`` become entities), and Mattermost's and
Rocket.Chat's ``@channel``/``@all``/``@here`` get a zero-width joiner after the ``@``.

The signature is the one voipalert's own webhook intake checks (``ingest.tokens``, the way
Grafana signs): HMAC-SHA256 over ``"{timestamp}:{body}"``, the timestamp in its own header;
a receiver refuses a timestamp too far from its clock, which makes a captured request
useless later (the timestamp cannot be changed without breaking the signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

SIGNATURE_HEADER: Final = "X-Voipalert-Signature"
TIMESTAMP_HEADER: Final = "X-Voipalert-Timestamp"
EVENT_HEADER: Final = "X-Voipalert-Event"
EVENT_ID_HEADER: Final = "X-Voipalert-Event-Id"
SIGNATURE_PREFIX: Final = "sha256="
BODY_VERSION: Final = 1
SUMMARY_CHARS: Final = 500

_COLORS: Final = {
    "critical": "#d00000",
    "error": "#e06000",
    "warning": "#e0b000",
    "info": "#2060c0",
}
_CLOSED_COLOR: Final = "#2e8b57"
_MENTION_BREAK: Final = "\u2060"  # WORD JOINER: invisible, and "@\u2060all" mentions no one


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of
    ``"{timestamp}:" + body`` under ``secret``."""
    mac = hmac.new(secret, f"{timestamp}:".encode("ascii") + body, hashlib.sha256)
    return f"{SIGNATURE_PREFIX}{mac.hexdigest()}"


def verify(secret: bytes, timestamp: int, body: bytes, header: str) -> bool:
    """What a receiver does (also used by the tests): compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


def headers(
    event: str, event_id: int, body: bytes, secret: bytes | None, timestamp: int
) -> dict[str, str]:
    out = {
        "Content-Type": "application/json",
        EVENT_HEADER: event,
        EVENT_ID_HEADER: str(event_id),
        TIMESTAMP_HEADER: str(timestamp),
    }
    if secret is not None:
        out[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return out


def json_body(
    event_id: int, event: str, at: datetime, payload: Mapping[str, Any], url: str | None
) -> bytes:
    document = {
        "version": BODY_VERSION,
        "event_id": event_id,
        "event": event,
        "at": at.isoformat(),
        "actor": payload.get("actor"),
        "alert": payload.get("alert"),
        "call": payload.get("call"),
        "detail": payload.get("detail") or {},
        "url": url,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _escape(text: object) -> str:
    value = str(text)[:SUMMARY_CHARS]
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value.replace("@", "@" + _MENTION_BREAK)


def _headline(event: str, alert: Mapping[str, Any], call: Mapping[str, Any] | None,
              detail: Mapping[str, Any]) -> str:  # fmt: skip
    number = f"Alert #{alert.get('id')}"
    match event:
        case "created":
            return f"{number} opened ({alert.get('severity')})"
        case "escalated":
            step = int(detail.get("step", 0)) + 1
            repeat = int(detail.get("repeat", 0)) + 1
            return f"{number} escalated to step {step} (pass {repeat})"
        case "call":
            who = _escape(call.get("person")) if call else "someone"
            outcome = str(call.get("outcome") if call else "unknown").replace("_", " ")
            return f"{number}: call to {who}: {outcome}"
        case "acknowledged":
            via = f" ({_escape(alert.get('acked_via'))})" if alert.get("acked_via") else ""
            return f"{number} acknowledged by {_escape(alert.get('acked_by'))}{via}"
        case "resolved":
            return f"{number} resolved by {_escape(alert.get('resolved_by'))}"
        case _:
            return f"{number} closed: nobody acknowledged it"


def slack_body(
    event_id: int, event: str, at: datetime, payload: Mapping[str, Any], url: str | None
) -> bytes:
    alert: Mapping[str, Any] = payload.get("alert") or {}
    call: Mapping[str, Any] | None = payload.get("call")
    detail: Mapping[str, Any] = payload.get("detail") or {}
    headline = _headline(event, alert, call, detail)
    summary = _escape(alert.get("summary", ""))
    closed = event in ("acknowledged", "resolved")
    attachment: dict[str, Any] = {
        "fallback": f"{headline}: {summary}",
        "color": _CLOSED_COLOR if closed else _COLORS.get(str(alert.get("severity")), "#808080"),
        "title": f"Alert #{alert.get('id')}",
        "text": summary,
        "fields": [
            {"title": "Severity", "value": _escape(alert.get("severity")), "short": True},
            {"title": "Status", "value": _escape(alert.get("status")), "short": True},
            {"title": "Source", "value": _escape(alert.get("source")), "short": True},
        ],
        "footer": f"voipalert event {event_id}",
        "ts": int(at.timestamp()),
    }
    if url:
        attachment["title_link"] = url
    message = {"text": f"{headline}: {summary}", "attachments": [attachment]}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def body(
    format: str, event_id: int, event: str, at: datetime, payload: Mapping[str, Any],
    url: str | None,
) -> bytes:  # fmt: skip
    build = slack_body if format == "slack" else json_body
    return build(event_id, event, at, payload, url)
