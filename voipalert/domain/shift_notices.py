"""Which shift-change notices are due (pure): a person who asked for one is told, some time
before each of their shifts starts, that they will be on call (docs/rota-edits.md).

A shift here is a stretch of a schedule's on-call segments held by one person: consecutive
segments of the same person (an override ending, a source's copy changing) are one shift,
and the notice is for its start. A notice is due from ``start - before`` until the shift
starts; one that came due while voipalert was not running is still sent if the shift has
not started yet, and never once it has. The caller remembers what was sent (by
``NoticeKey``), so each shift gets one notice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from voipalert.domain.oncall_view import Segment
from voipalert.domain.rota import Contact, PersonName, Rota, ScheduleName

NoticeKey = tuple[str, str, str]  # person, schedule, shift start (ISO, UTC)


@dataclass(frozen=True, slots=True)
class DueNotice:
    person: PersonName
    schedule: ScheduleName
    start: datetime
    end: datetime
    time_zone: str
    contact: Contact
    language: str

    @property
    def key(self) -> NoticeKey:
        return (self.person, self.schedule, self.start.isoformat())


def longest_notice(rota: Rota) -> timedelta:
    """How far ahead to look: the longest notice anyone asked for."""
    seconds = [p.shift_notice.before_seconds for p in rota.people if p.shift_notice]
    return timedelta(seconds=max(seconds, default=0))


def shifts(segments: Sequence[Segment]) -> list[Segment]:
    """Consecutive segments of one person joined into one shift; gaps dropped."""
    joined: list[Segment] = []
    for seg in segments:
        if seg.person is None:
            continue
        last = joined[-1] if joined else None
        if last is not None and last.person == seg.person and last.end >= seg.start:
            joined[-1] = Segment(last.person, last.start, max(last.end, seg.end), last.source)
        else:
            joined.append(seg)
    return joined


def due_notices(
    rota: Rota,
    schedule: ScheduleName,
    time_zone: str,
    segments: Sequence[Segment],
    now: datetime,
    sent: Iterable[NoticeKey],
) -> list[DueNotice]:
    """The notices of one schedule's shifts that are due at ``now`` and not yet sent.

    ``segments`` must start at or before ``now`` (so that a shift already under way is seen
    as such, not as one starting later) and reach past ``now`` + the longest notice."""
    done = set(sent)
    due = []
    for shift in shifts(segments):
        if shift.person is None or shift.start <= now:
            continue  # under way or over: too late for a notice
        person = rota.person(shift.person)
        notice = person.shift_notice if person is not None else None
        if person is None or notice is None:
            continue
        if now < shift.start - timedelta(seconds=notice.before_seconds):
            continue
        found = DueNotice(
            person.name, schedule, shift.start, shift.end, time_zone,
            person.contacts[notice.contact], person.language,
        )  # fmt: skip
        if found.key not in done:
            due.append(found)
    return due


def notice_text(notice: DueNotice) -> str:
    """The text of a notice, in the schedule's time zone."""
    zone = ZoneInfo(notice.time_zone)
    start, end = notice.start.astimezone(zone), notice.end.astimezone(zone)
    fmt = "%a %d %b %H:%M"
    if notice.language.startswith("fr"):
        short = "%d/%m %H:%M"
        return (
            f"voipalert : vous êtes d'astreinte pour {notice.schedule} du "
            f"{start.strftime(short)} au {end.strftime(short)} ({notice.time_zone})."
        )
    return (
        f"voipalert: you are on call for {notice.schedule} from {start.strftime(fmt)} "
        f"to {end.strftime(fmt)} ({notice.time_zone})."
    )
