"""The rota: people and how to reach them, teams, schedules, overrides, escalation policies
and routing rules, as frozen values.

Names are the identities inside a rota (a person, team, schedule or policy name is unique in
its kind); the store maps them to row ids. The same ``Rota`` value comes out of a rota file
and out of the database, which is what makes ``rota export`` round-trip.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import NewType

PersonName = NewType("PersonName", str)
TeamName = NewType("TeamName", str)
ScheduleName = NewType("ScheduleName", str)
PolicyName = NewType("PolicyName", str)


class ContactKind(enum.StrEnum):
    SIP = "sip"  # a SIP URI called directly or through the outbound proxy
    EXTENSION = "extension"  # a PBX extension, dialled as user@registrar-domain
    NUMBER = "number"  # an E.164 or national number dialled through the trunk
    EMAIL = "email"  # an e-mail address, for rules with method email (never called)


@dataclass(frozen=True, slots=True)
class Contact:
    kind: ContactKind
    address: str
    name: str | None = None  # what notification rules call it ("mobile", "desk")


class NotifyMethod(enum.StrEnum):
    CALL = "call"  # a phone call with the spoken alert and the ack key
    MESSAGE = "message"  # a SIP MESSAGE text (RFC 3428); a reply "1" acknowledges
    EMAIL = "email"  # an e-mail with an acknowledgement link; a reply "1" acknowledges


# Contact kinds a SIP MESSAGE can reach: a trunk number is usually not text-capable.
TEXT_CONTACT_KINDS = frozenset({ContactKind.SIP, ContactKind.EXTENSION})
CALL_CONTACT_KINDS = frozenset({ContactKind.SIP, ContactKind.EXTENSION, ContactKind.NUMBER})


@dataclass(frozen=True, slots=True)
class NotifyRule:
    """Notify ``contact`` (an index into the person's contacts) by ``method``,
    ``after_seconds`` after an escalation step starts notifying the person (GoAlert's
    notification rules)."""

    contact: int
    method: NotifyMethod
    after_seconds: int


@dataclass(frozen=True, slots=True)
class Person:
    """Without ``rules``, a step calls the contacts one after another until one is heard;
    with them, every rule runs at its delay until the alert is acknowledged or resolved."""

    name: PersonName
    language: str
    contacts: tuple[Contact, ...]
    rules: tuple[NotifyRule, ...] = ()


@dataclass(frozen=True, slots=True)
class Team:
    name: TeamName
    members: tuple[PersonName, ...]


class ShiftUnit(enum.StrEnum):
    HOURS = "hours"  # real elapsed hours: the local hand-off time moves with DST
    DAYS = "days"  # calendar days in the zone: hand-off at the same wall time
    WEEKS = "weeks"


@dataclass(frozen=True, slots=True)
class Window:
    """A weekly time window in the schedule's zone. ``days`` are ISO weekdays (1 = Monday)
    on which the window *starts*; ``end <= start`` means it runs past midnight."""

    days: frozenset[int]
    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Layer:
    """One rotation. Member 0 takes the first shift, which starts on ``start_date`` at
    ``handoff`` local time; each member holds ``shift_length`` ``shift_unit``."""

    name: str
    members: tuple[PersonName, ...]
    shift_length: int
    shift_unit: ShiftUnit
    start_date: date
    handoff: time
    windows: tuple[Window, ...] = ()  # empty: always active


class SourceKind(enum.StrEnum):
    """Where a schedule's live source lives (docs/rota-sources.md)."""

    ICAL = "ical"  # an iCalendar (RFC 5545) file fetched over HTTP
    CALDAV = "caldav"  # a CalDAV (RFC 4791) calendar collection, asked with a REPORT
    JSON = "json"  # an HTTP endpoint answering "who is on call" in JSON


@dataclass(frozen=True, slots=True)
class ScheduleSource:
    """A live source of shifts for one schedule. It acts as the schedule's top layer: where
    it has someone, they are on call; elsewhere the built-in layers (if any) answer.

    ``person_field`` names the event property that holds the person (iCalendar and CalDAV);
    ``aliases`` maps what the source says (an e-mail, a display name) to rota names. For
    JSON, ``shifts`` is the dotted path of a list of shifts (each with ``person``, ``start``
    and ``end`` paths inside it), or None when the document is one answer for "now" whose
    ``person`` path names who is on call (``start``/``end`` optional)."""

    kind: SourceKind
    url: str
    person_field: str = "SUMMARY"
    aliases: tuple[tuple[str, PersonName], ...] = ()
    poll_seconds: int = 300
    alert_after_seconds: int = 900
    username: str | None = None
    password_file: str | None = None
    shifts: str | None = None
    person: str = "person"
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class FeedShift:
    """``person`` is on call from ``start`` to ``end`` (None: until the source says
    otherwise) according to the schedule's live source."""

    person: PersonName
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class Feed:
    """The shifts a source gave, as far as they are known: between ``window_start`` and
    ``window_end`` (recurring events are expanded only inside that window)."""

    shifts: tuple[FeedShift, ...]
    window_start: datetime
    window_end: datetime

    def covers(self, at: datetime) -> bool:
        return self.window_start <= at < self.window_end


@dataclass(frozen=True, slots=True)
class Schedule:
    """Layers from lowest to highest priority: a higher layer wins wherever it has someone.
    With a ``source``, the source's shifts (``feed``, attached from its last good copy) sit
    above every layer."""

    name: ScheduleName
    time_zone: str
    layers: tuple[Layer, ...]
    source: ScheduleSource | None = None
    feed: Feed | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """``person`` is on call for ``schedule`` during [start, end). With ``replaces`` set, only
    when that person would have been on call; otherwise instead of whoever it was."""

    schedule: ScheduleName
    person: PersonName
    start: datetime
    end: datetime
    replaces: PersonName | None = None


class TargetKind(enum.StrEnum):
    SCHEDULE = "schedule"  # whoever is on call in that schedule when the step starts
    PERSON = "person"
    TEAM = "team"  # everyone in the team, at once


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    name: str


@dataclass(frozen=True, slots=True)
class Step:
    targets: tuple[Target, ...]
    timeout_seconds: int  # longest wait for an ack before the next step
    ring_timeout_seconds: int  # how long each phone rings before "no answer"


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """``repeat_count`` extra passes over the steps after the first one;
    ``repeat_delay_seconds`` between passes."""

    name: PolicyName
    steps: tuple[Step, ...]
    repeat_count: int = 0
    repeat_delay_seconds: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    """A routing rule. Every criterion that is set must match; ``subject`` is a regular
    expression searched in the summary; ``labels`` must all be present with equal values."""

    name: str
    policy: PolicyName | None = None
    team: TeamName | None = None
    source: str | None = None
    severity: str | None = None
    subject: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    default: bool = False


@dataclass(frozen=True, slots=True)
class Rota:
    people: tuple[Person, ...] = ()
    teams: tuple[Team, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    overrides: tuple[Override, ...] = ()
    policies: tuple[EscalationPolicy, ...] = ()
    routes: tuple[Route, ...] = ()
    _people: dict[str, Person] = field(init=False, repr=False, compare=False)
    _teams: dict[str, Team] = field(init=False, repr=False, compare=False)
    _schedules: dict[str, Schedule] = field(init=False, repr=False, compare=False)
    _policies: dict[str, EscalationPolicy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_people", {p.name: p for p in self.people})
        object.__setattr__(self, "_teams", {t.name: t for t in self.teams})
        object.__setattr__(self, "_schedules", {s.name: s for s in self.schedules})
        object.__setattr__(self, "_policies", {p.name: p for p in self.policies})

    def person(self, name: str) -> Person | None:
        return self._people.get(name)

    def team(self, name: str) -> Team | None:
        return self._teams.get(name)

    def schedule(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def policy(self, name: str) -> EscalationPolicy | None:
        return self._policies.get(name)

    def overrides_for(self, schedule: str) -> tuple[Override, ...]:
        return tuple(o for o in self.overrides if o.schedule == schedule)
