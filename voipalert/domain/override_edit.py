"""Overrides made one at a time (``voipalert override add``, the REST API, a CSV of shifts),
next to the ones a rota file carries: what is accepted, and what an import that keeps them
must refuse. The rules are written out in docs/rota-edits.md.

Times: an ISO date-time with an offset (``Z``, ``+01:00``) is that instant. Without one it
is wall time in the schedule's zone; ``2026-03-28 18:00`` (a space instead of ``T``, as
spreadsheets write it) and seconds are optional. A wall time that happens twice (the
fall-back night) means its first occurrence; one that never happens (the spring-forward
gap) is refused: a hand-typed edit naming a time that does not exist is a mistake, and
guessing would put someone on call at a time they did not ask for.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from voipalert.domain.errors import RotaProblem
from voipalert.domain.oncall import resolve_local
from voipalert.domain.rota import Override, PersonName, Rota, ScheduleName

MAX_SPAN: Final = timedelta(days=92)  # a quarter: longer is a rota change, not an override
MAX_AHEAD: Final = timedelta(days=730)
MAX_NOTE_CHARS: Final = 200
MAX_NAME_CHARS: Final = 64
MAX_TIME_CHARS: Final = 40


class Origin:
    """Where an override was made (the ``origin`` column)."""

    FILE: Final = "file"  # replaced by every `rota import`
    CLI: Final = "cli"
    API: Final = "api"
    CSV: Final = "csv"
    CONSOLE: Final = "console"
    EDITS: Final = frozenset({CLI, API, CSV, CONSOLE})  # kept by `rota import --keep-overrides`


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """A stored override with its id and who made it (``made_by`` is None for the file's)."""

    id: int
    override: Override
    origin: str
    note: str = ""
    made_by: str | None = None
    made_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OverrideRequest:
    """An override as typed: text fields, checked by ``check_override``."""

    schedule: str
    person: str
    start: str
    end: str
    replaces: str | None = None
    note: str = ""


class BadTime(ValueError):
    """A time an edit cannot use; the message says why in words."""


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def parse_edit_time(text: str, zone: ZoneInfo) -> datetime:
    """The aware UTC instant ``text`` means for a schedule in ``zone`` (module docstring)."""
    text = text.strip()
    if not text or len(text) > MAX_TIME_CHARS:
        raise BadTime("expected a date and time like 2026-03-28 18:00 or 2026-03-28T17:00Z")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise BadTime(
            f"expected a date and time like 2026-03-28 18:00 or 2026-03-28T17:00Z, not {text!r}"
        ) from None
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    naive = value.replace(fold=0)
    resolved = resolve_local(naive.date(), naive.time(), zone)
    if _wall(resolved, zone) != naive:
        jump = _wall(resolved, zone).strftime("%H:%M")
        raise BadTime(
            f"{text} does not exist in {zone.key} (the clocks jump forward to {jump} that "
            f"night); give {jump} or a time with its UTC offset"
        )
    return resolved


def _clean_text(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


class _Check:
    """One request's checks; each records its problems and returns None on failure."""

    def __init__(self, rota: Rota, line: int | None) -> None:
        self.rota = rota
        self.line = line
        self.problems: list[RotaProblem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(RotaProblem(self.line, field, message))

    def name(self, field: str, value: str, known: Iterable[str], what: str) -> str | None:
        value = value.strip()
        if not value:
            self.fail(field, "missing")
            return None
        if len(value) > MAX_NAME_CHARS or value not in set(known):
            shown = value if len(value) <= MAX_NAME_CHARS else value[:MAX_NAME_CHARS] + "..."
            self.fail(field, f"no {what} named {shown!r}")
            return None
        return value

    def note(self, text: str) -> None:
        note = text.strip()
        if len(note) > MAX_NOTE_CHARS:
            self.fail("note", f"at most {MAX_NOTE_CHARS} characters (this one has {len(note)})")
        elif not _clean_text(note):
            self.fail("note", "control characters are not allowed")

    def instant(self, field: str, raw: str, zone: ZoneInfo | None) -> datetime | None:
        if not raw.strip():
            self.fail(field, "missing")
            return None
        if zone is not None:
            try:
                return parse_edit_time(raw, zone)
            except BadTime as exc:
                self.fail(field, str(exc))
                return None
        # Unknown schedule (already reported): naive times cannot be read, but a
        # malformed one is still worth saying.
        try:
            parsed = datetime.fromisoformat(raw.strip()[:MAX_TIME_CHARS])
        except ValueError:
            shown = raw.strip()[:MAX_TIME_CHARS]
            self.fail(field, f"expected a date and time like 2026-03-28 18:00, not {shown!r}")
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo is not None else None

    def period(self, start: datetime, end: datetime, now: datetime, allow_past: bool) -> None:
        if end <= start:
            self.fail("end", "must be after start")
        elif end - start > MAX_SPAN:
            self.fail("end", f"an override lasts at most {MAX_SPAN.days} days; change the rota")
        elif end <= now and not allow_past:
            self.fail("end", "is in the past: the override would never apply")
        elif start - now > MAX_AHEAD:
            self.fail("start", f"more than {MAX_AHEAD.days} days ahead")


def check_override(
    rota: Rota,
    request: OverrideRequest,
    now: datetime,
    *,
    line: int | None = None,
    allow_past: bool = False,
) -> tuple[Override | None, list[RotaProblem]]:
    """Validate ``request`` against ``rota``: the override, or every problem found (each
    with ``line``, for a CSV row, and the field it is about)."""
    check = _Check(rota, line)
    people = [p.name for p in rota.people]
    schedules = [s.name for s in rota.schedules]
    schedule_name = check.name("schedule", request.schedule, schedules, "schedule")
    person = check.name("person", request.person, people, "person")
    replaces = None
    if request.replaces is not None and request.replaces.strip():
        replaces = check.name("replaces", request.replaces, people, "person")
        if replaces is not None and replaces == person:
            check.fail("replaces", "a person cannot replace themselves")
    check.note(request.note)
    schedule = rota.schedule(schedule_name) if schedule_name else None
    zone = ZoneInfo(schedule.time_zone) if schedule else None
    start = check.instant("start", request.start, zone)
    end = check.instant("end", request.end, zone)
    if start is not None and end is not None:
        check.period(start, end, now, allow_past)
    if check.problems or not schedule_name or not person or start is None or end is None:
        return None, check.problems
    return (
        Override(
            ScheduleName(schedule_name),
            PersonName(person),
            start,
            end,
            PersonName(replaces) if replaces else None,
        ),
        [],
    )


def overlapping(records: Sequence[OverrideRecord], override: Override) -> list[OverrideRecord]:
    """The stored overrides of the same schedule whose period meets ``override``'s."""
    return [
        r
        for r in records
        if r.override.schedule == override.schedule
        and r.override.start < override.end
        and override.start < r.override.end
        and r.override != override
    ]


def orphans(rota: Rota, edits: Sequence[OverrideRecord]) -> list[str]:
    """Why each kept edit cannot stay with ``rota`` (its schedule or a person is gone):
    one line per edit, empty when all can stay."""
    found = []
    for record in edits:
        o = record.override
        missing = []
        if rota.schedule(o.schedule) is None:
            missing.append(f"schedule {o.schedule!r}")
        for who in (o.person, o.replaces):
            if who is not None and rota.person(who) is None:
                missing.append(f"person {who!r}")
        if missing:
            found.append(
                f"override #{record.id} ({describe_override(o)}) names {', '.join(missing)}"
            )
    return found


def describe_override(override: Override) -> str:
    swap = f" instead of {override.replaces}" if override.replaces else ""
    return (
        f"{override.person}{swap} on {override.schedule} "
        f"{override.start.isoformat()} to {override.end.isoformat()}"
    )


_FORMULA: Final = re.compile(r"^[=+\-@\t\r]")


def csv_cell(text: str) -> str:
    """A cell safe to open in a spreadsheet: text that a spreadsheet would run as a formula
    (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) gets a leading
    apostrophe, which spreadsheets show as text (OWASP "CSV injection")."""
    return "'" + text if _FORMULA.match(text) else text


def from_csv_cell(text: str) -> str:
    """Undo ``csv_cell``, so an exported note imports back as it was."""
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text
