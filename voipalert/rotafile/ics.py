"""Shifts as an iCalendar feed (RFC 5545), for people to subscribe to (pure).

Every time is written in UTC (``DTSTART:20260329T010000Z``, §3.3.5 form 2): a calendar
application shows it in its own zone, so a DST night is exactly as long as it really is
and no VTIMEZONE has to be right. Text is escaped (§3.3.11) and lines folded at 75 octets
(§3.1). UIDs are stable for the same shift, so a refresh updates rather than duplicates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

PRODID: Final = "-//voipalert//rota//EN"
REFRESH: Final = "PT15M"  # how often subscribers should fetch again (RFC 7986 §5.7)


@dataclass(frozen=True, slots=True)
class CalendarEvent:
    start: datetime
    end: datetime
    summary: str
    description: str = ""


def _stamp(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def escape(text: str) -> str:
    """TEXT value escaping (§3.3.11); CR and other controls dropped."""
    cleaned = "".join(c for c in text if c == "\n" or (ord(c) >= 32 and ord(c) != 127))
    return (
        cleaned.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """One content line folded at 75 octets, never inside a UTF-8 sequence (§3.1)."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line + "\r\n"
    parts: list[str] = []
    current = b""
    limit = 75
    for char in line:
        encoded = char.encode("utf-8")
        if len(current) + len(encoded) > limit:
            parts.append(current.decode("utf-8"))
            current = b""
            limit = 74  # the continuation's leading space counts
        current += encoded
    parts.append(current.decode("utf-8"))
    return "\r\n ".join(parts) + "\r\n"


def calendar(name: str, uid_base: str, events: Iterable[CalendarEvent], now: datetime) -> str:
    """A whole VCALENDAR named ``name``; ``uid_base`` keeps UIDs apart between feeds."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"NAME:{escape(name)}",
        f"X-WR-CALNAME:{escape(name)}",
        f"REFRESH-INTERVAL;VALUE=DURATION:{REFRESH}",
        f"X-PUBLISHED-TTL:{REFRESH}",
    ]
    for event in events:
        key = f"{uid_base}\0{_stamp(event.start)}\0{event.summary}".encode()
        uid = hashlib.sha256(key).hexdigest()[:32]
        lines += [
            "BEGIN:VEVENT",
            f"UID:{uid}@voipalert",
            f"DTSTAMP:{_stamp(now)}",
            f"DTSTART:{_stamp(event.start)}",
            f"DTEND:{_stamp(event.end)}",
            f"SUMMARY:{escape(event.summary)}",
            *([f"DESCRIPTION:{escape(event.description)}"] if event.description else []),
            "TRANSP:TRANSPARENT",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return "".join(fold(line) for line in lines)
