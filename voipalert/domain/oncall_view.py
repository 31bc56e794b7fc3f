"""On-call answers as people read them: the instant a "what if" time means, the one-line
answer ``voipalert oncall`` prints, and a schedule's shifts over the next days. Shared by the
CLI and the web console, so both give the same answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from voipalert.domain.oncall import SOURCE_LAYER, OnCall, resolve_local, who_is_on_call
from voipalert.domain.rota import Override, PersonName, Schedule

SAMPLE: Final = timedelta(minutes=15)


def parse_at(text: str, schedule: Schedule) -> datetime:
    """``text`` as ``oncall --at`` reads it: with an offset, that instant; without, the
    schedule's local wall time (first occurrence when ambiguous). ``ValueError`` when it is
    not an ISO date-time."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        return value
    return resolve_local(value.date(), value.time(), ZoneInfo(schedule.time_zone))


def source_of(answer: OnCall) -> str:
    if answer.override and answer.override.replaces:
        return f"override of {answer.override.replaces}"
    if answer.override:
        return "override"
    return "live source" if answer.layer == SOURCE_LAYER else f"layer {answer.layer}"


def describe(schedule: Schedule, at: datetime, answer: OnCall) -> str:
    """The line ``voipalert oncall`` prints for one schedule."""
    zone = ZoneInfo(schedule.time_zone)

    def local(instant: datetime) -> str:
        return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    if answer.person is None:
        return f"{schedule.name}: at {local(at)}: nobody on call (gap)"
    span = (
        f", {local(answer.since)} → {local(answer.until)}" if answer.since and answer.until else ""
    )
    return f"{schedule.name}: at {local(at)}: {answer.person} ({source_of(answer)}{span})"


@dataclass(frozen=True, slots=True)
class Segment:
    """``person`` (None: a gap) is on call from ``start`` to ``end``."""

    person: PersonName | None
    start: datetime
    end: datetime
    source: str


def _next_quarter(instant: datetime) -> datetime:
    """The next quarter hour (UTC-aligned, so also every zone's quarter hours) after
    ``instant``."""
    base = instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)
    return base + SAMPLE


def segments(
    schedule: Schedule, overrides: Sequence[Override], start: datetime, days: int = 14
) -> list[Segment]:
    """Who is on call from ``start`` for ``days`` days, as consecutive segments. The answer
    is asked at every quarter hour, at the end of each answer's shift, and at every
    override's and live-source shift's start and end, and equal neighbours are merged; so
    a hand-off is shown at its exact time, and a window that cuts a shift is seen within 15
    minutes (windows start and end on quarter hours in practice)."""
    end = start + timedelta(days=days)
    changes = [t for o in overrides if o.schedule == schedule.name for t in (o.start, o.end)]
    if schedule.feed is not None:  # a live source's shifts start and end anywhere
        changes += [t for s in schedule.feed.shifts for t in (s.start, s.end) if t is not None]
        changes += [schedule.feed.window_start, schedule.feed.window_end]
    bounds = sorted(t for t in changes if start < t < end)
    found: list[Segment] = []
    at = start
    while at < end:
        answer = who_is_on_call(schedule, overrides, at)
        source = "" if answer.person is None else source_of(answer)
        if not found or found[-1].person != answer.person or found[-1].source != source:
            if found:
                last = found[-1]
                found[-1] = Segment(last.person, last.start, at, last.source)
            found.append(Segment(answer.person, at, end, source))
        following = [_next_quarter(at), end]
        if answer.until is not None and answer.until > at:
            following.append(answer.until)
        following.extend(t for t in bounds if t > at)
        at = min(following)
    return found
