"""Typed reading of a located tree: each reader either returns a value or records a problem
with the node's line and key path and returns None, so one pass reports every problem."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voipalert.domain.errors import RotaProblem
from voipalert.domain.oncall import resolve_local
from voipalert.rotafile.source import Node

_DURATION: Final = re.compile(r"^\s*(\d+)\s*(s|m|h|d)?\s*$")
_DURATION_UNITS: Final = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME: Final = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
NAME: Final = re.compile(r"[^\W_][\w .'@-]{0,63}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class Reader:
    def __init__(self) -> None:
        self.problems: list[RotaProblem] = []

    def fail(self, node: Node | None, path: str, message: str) -> None:
        self.problems.append(RotaProblem(node.line if node else None, path, message))

    def mapping(
        self,
        node: Node,
        path: str,
        required: Iterable[str],
        optional: Iterable[str] = (),
        *,
        any_keys: bool = False,
    ) -> dict[str, Node] | None:
        if not isinstance(node.value, dict):
            self.fail(node, path, "expected a mapping of keys to values")
            return None
        items: dict[str, Node] = node.value
        required, optional = set(required), set(optional)
        for key, child in items.items():
            if not any_keys and key not in required | optional:
                known = ", ".join(sorted(required | optional))
                self.fail(child, join(path, key), f"unknown key (expected one of: {known})")
        for key in sorted(required - items.keys()):
            self.fail(node, join(path, key), "missing")
        return items

    def one_of(self, node: Node, path: str, kinds: list[str]) -> tuple[str, Node] | None:
        """A mapping of exactly one key among ``kinds`` (a contact, a step's target)."""
        items = self.mapping(node, path, (), kinds)
        if items is None:
            return None
        if len(items) != 1:
            self.fail(node, path, f"give exactly one of: {', '.join(kinds)}")
            return None
        ((key, value),) = items.items()
        return (key, value) if key in kinds else None

    def sequence(self, node: Node | None, path: str) -> list[Node]:
        if node is None:
            return []
        if not isinstance(node.value, list):
            self.fail(node, path, "expected a list")
            return []
        items: list[Node] = node.value
        return items

    def text(
        self, node: Node | None, path: str, pattern: re.Pattern[str] | None = None, what: str = ""
    ) -> str | None:
        if node is None:
            return None
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            self.fail(node, path, "expected text")
            return None
        text = (node.raw if node.raw is not None else str(value)).strip()
        if not text:
            self.fail(node, path, "must not be empty")
            return None
        if pattern is not None and pattern.fullmatch(text) is None:
            self.fail(node, path, f"{text!r} is not {what}")
            return None
        return text

    def integer(self, node: Node | None, path: str, minimum: int = 0) -> int | None:
        if node is None:
            return None
        if isinstance(node.value, bool) or not isinstance(node.value, int):
            self.fail(node, path, "expected a whole number")
            return None
        if node.value < minimum:
            self.fail(node, path, f"must be at least {minimum}")
            return None
        return node.value

    def boolean(self, node: Node | None, path: str) -> bool | None:
        if node is None:
            return None
        if not isinstance(node.value, bool):
            self.fail(node, path, "expected true or false")
            return None
        return node.value

    def duration(self, node: Node | None, path: str, minimum: int = 0) -> int | None:
        """Seconds, written as a number of seconds or like ``30s``, ``5m``, ``2h``, ``1d``."""
        if node is None:
            return None
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            seconds = node.value
        else:
            found = _DURATION.match(str(node.value)) if isinstance(node.value, str) else None
            if found is None:
                self.fail(node, path, "expected a duration like 300, 30s, 5m or 2h")
                return None
            seconds = int(found.group(1)) * _DURATION_UNITS[found.group(2)]
        if seconds < minimum:
            self.fail(node, path, f"must be at least {minimum} seconds")
            return None
        return seconds

    def time_of_day(self, node: Node | None, path: str) -> time | None:
        if node is None:
            return None
        if isinstance(node.value, time):
            return node.value
        found = _TIME.match(node.raw if node.raw is not None else str(node.value))
        if found is None or int(found.group(1)) > 23 or int(found.group(2)) > 59:
            self.fail(node, path, "expected a time of day like '09:00' (24-hour, local)")
            return None
        return time(int(found.group(1)), int(found.group(2)), int(found.group(3) or 0))

    def day(self, node: Node | None, path: str) -> date | None:
        if node is None:
            return None
        if isinstance(node.value, date) and not isinstance(node.value, datetime):
            return node.value
        try:
            return date.fromisoformat(str(node.raw if node.raw is not None else node.value))
        except ValueError:
            self.fail(node, path, "expected a date like 2026-03-29")
            return None

    def instant(self, node: Node | None, path: str, zone: ZoneInfo | None) -> datetime | None:
        """An ISO date-time; without an offset it is wall time in ``zone`` (first
        occurrence when ambiguous, end of the gap when it does not exist)."""
        if node is None:
            return None
        value = node.value
        if not isinstance(value, datetime):
            try:
                value = datetime.fromisoformat(str(node.raw if node.raw is not None else value))
            except ValueError:
                self.fail(node, path, "expected a date and time like 2026-03-28T18:00:00+01:00")
                return None
        if value.tzinfo is not None:
            return value.astimezone(UTC)
        if zone is None:
            self.fail(node, path, "needs a UTC offset (its schedule's zone is unknown)")
            return None
        return resolve_local(value.date(), value.time(), zone)

    def zone(self, node: Node | None, path: str) -> ZoneInfo | None:
        name = self.text(node, path)
        if name is None:
            return None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            self.fail(
                node, path, f"unknown time zone {name!r} (expected an IANA name like Europe/Paris)"
            )
            return None
