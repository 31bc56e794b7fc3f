"""A live source's body to shifts (pure: no I/O; heavy, so ``feed_worker`` runs it in a
child process with a deadline). See docs/rota-sources.md.

iCalendar (RFC 5545): events are expanded with ``recurring_ical_events`` (RRULE, RDATE,
EXDATE, RECURRENCE-ID exceptions, TZID with VTIMEZONE) only inside a bounded window, and at
most ``MAX_OCCURRENCES`` of them. All-day events (``VALUE=DATE``, §3.3.4) run from local
midnight to local midnight in the schedule's zone, and floating times (no TZID, no ``Z``,
§3.3.5 form 1) are the schedule's wall time. Cancelled events (STATUS, §3.8.1.11) are
skipped. Rules repeating every second or minute (§3.3.10 FREQ) are refused: no rota needs
them, and expanding them is where a hostile feed would spend our CPU.

CalDAV (RFC 4791): the REPORT's multistatus carries one ``calendar-data`` per resource;
their events are gathered into one calendar and read as above.

JSON: dotted paths (as in the generic webhooks' mappings) find either a list of shifts or
one "who is on call now" answer.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import icalendar
import recurring_ical_events

from voipalert.domain.oncall import resolve_local
from voipalert.domain.rota import Feed, FeedShift, PersonName, ScheduleSource
from voipalert.errors import VoipAlertError

MAX_OCCURRENCES: Final = 20_000
MAX_COMPONENTS: Final = 20_000
FOREVER: Final = timedelta(days=3650)  # window end of an open-ended JSON answer
_REFUSED_FREQ: Final = ("SECONDLY", "MINUTELY")
_DAV: Final = "{DAV:}"
_CALDAV: Final = "{urn:ietf:params:xml:ns:caldav}"


def lookup(document: object, path: str) -> object:
    """The value at the dotted ``path`` (object keys and list indexes), or None; the same
    paths as the generic webhooks' (``ingest.mapping``), without loading its models in the
    expansion's child process."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
        if node is None:
            return None
    return node


class SourceError(VoipAlertError, ValueError):
    """The source's copy is unusable; the message says why, for the operator."""


def _person(
    candidates: Iterable[str], source: ScheduleSource, people: frozenset[str], where: str
) -> PersonName:
    aliases = {k.casefold(): v for k, v in source.aliases}
    folded = {p.casefold(): p for p in people}
    tried = []
    for raw in candidates:
        text = raw.strip()
        if text.lower().startswith("mailto:"):
            text = text[7:]
        if not text:
            continue
        tried.append(text)
        if text.casefold() in aliases:
            return aliases[text.casefold()]
        if text in people:
            return PersonName(text)
        if text.casefold() in folded:
            return PersonName(folded[text.casefold()])
    if not tried:
        raise SourceError(f"{where}: no {source.person_field} naming the person on call")
    raise SourceError(
        f"{where}: {tried[0]!r} is not a person in the rota "
        "(add them to the rota, or map the name under the source's people:)"
    )


def _instant(value: object, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: the schedule's wall clock
            return resolve_local(value.date(), value.time(), zone)
        return value.astimezone(UTC)
    if isinstance(value, date):  # all-day: local midnight
        return resolve_local(value, time(0), zone)
    raise SourceError(f"not a date or date-time: {value!r}")


def _field_values(event: icalendar.Event, field: str) -> list[str]:
    value = event.get(field)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        params = getattr(item, "params", {})
        if field in ("ATTENDEE", "ORGANIZER") and params.get("CN"):
            out.append(str(params["CN"]))
        if field == "CATEGORIES" and hasattr(item, "cats"):
            out.extend(str(c) for c in item.cats)
        else:
            out.append(str(item))
    return out


def _check_rules(calendar: icalendar.Calendar) -> None:
    count = 0
    for event in calendar.walk("VEVENT"):
        count += 1
        if count > MAX_COMPONENTS:
            raise SourceError(f"more than {MAX_COMPONENTS} events")
        rules = event.get("RRULE")
        for rule in rules if isinstance(rules, list) else [rules] if rules is not None else []:
            freq = [str(f).upper() for f in rule.get("FREQ", [])]
            if any(f in _REFUSED_FREQ for f in freq):
                raise SourceError(
                    f"event {event.get('UID', '?')}: RRULE FREQ={freq[0]} refused "
                    "(shifts repeat hourly at most)"
                )


def _dt(event: icalendar.Event, name: str) -> object:
    prop: object = event.get(name)
    return getattr(prop, "dt", None)


def _shift(
    event: icalendar.Event, source: ScheduleSource, people: frozenset[str], zone: ZoneInfo
) -> FeedShift | None:
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return None
    begin, finish, duration = (_dt(event, k) for k in ("DTSTART", "DTEND", "DURATION"))
    if begin is None:
        return None
    first = _instant(begin, zone)
    if finish is not None:
        last = _instant(finish, zone)
    elif isinstance(duration, timedelta):
        last = first + duration
    elif isinstance(begin, date) and not isinstance(begin, datetime):
        last = _instant(begin + timedelta(days=1), zone)  # §3.6.1: a date alone lasts a day
    else:  # a date-time alone has no duration
        return None
    if last <= first:
        return None
    where = f"event {event.get('UID', '?')} at {first.isoformat()}"
    return FeedShift(
        _person(_field_values(event, source.person_field), source, people, where), first, last
    )


def parse_ical(
    body: bytes,
    source: ScheduleSource,
    people: frozenset[str],
    zone_name: str,
    window: tuple[datetime, datetime],
) -> Feed:
    """The shifts of an iCalendar body inside ``window``; ``SourceError`` when unusable."""
    zone = ZoneInfo(zone_name)
    try:
        calendar = icalendar.Calendar.from_ical(body)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"not iCalendar data: {str(exc)[:200]}") from None
    if not isinstance(calendar, icalendar.Calendar):
        raise SourceError("not a VCALENDAR")
    _check_rules(calendar)
    start, end = window
    try:
        occurrences = recurring_ical_events.of(calendar).between(start, end)
    except Exception as exc:  # the library's errors are many and undocumented
        raise SourceError(f"cannot expand the events: {type(exc).__name__}: {exc}") from None
    if len(occurrences) > MAX_OCCURRENCES:
        raise SourceError(f"more than {MAX_OCCURRENCES} shifts in {window_text(window)}")
    shifts = [
        shift for event in occurrences if (shift := _shift(event, source, people, zone)) is not None
    ]
    return Feed(tuple(sorted(shifts, key=lambda s: (s.start, s.end or FOREVER_END))), start, end)


FOREVER_END: Final = datetime(9999, 1, 1, tzinfo=UTC)


def window_text(window: tuple[datetime, datetime]) -> str:
    return f"{window[0].isoformat()} → {window[1].isoformat()}"


def caldav_to_ical(body: bytes) -> bytes:
    """The events of a CalDAV REPORT's multistatus (RFC 4791 §7.8) as one calendar."""
    try:
        root = ET.fromstring(body)  # size-capped; expat refuses entity bombs
    except ET.ParseError as exc:
        raise SourceError(f"not a CalDAV multistatus: {exc}") from None
    if root.tag != f"{_DAV}multistatus":
        raise SourceError(f"not a CalDAV multistatus: root element {root.tag}")
    merged = icalendar.Calendar()
    merged.add("PRODID", "-//voipalert//caldav copy//EN")
    merged.add("VERSION", "2.0")
    seen_zones: set[str] = set()
    for data in root.iter(f"{_CALDAV}calendar-data"):
        if not data.text:
            continue
        try:
            calendar = icalendar.Calendar.from_ical(data.text)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SourceError(f"a CalDAV resource is not iCalendar data: {exc}") from None
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                tzid = str(component.get("TZID"))
                if tzid in seen_zones:
                    continue
                seen_zones.add(tzid)
            merged.add_component(component)
    return bytes(merged.to_ical())


def _json_instant(value: object, zone: ZoneInfo, where: str) -> datetime:
    if not isinstance(value, str):
        raise SourceError(f"{where}: expected an ISO 8601 date-time, found {value!r:.80}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SourceError(f"{where}: {value!r:.80} is not an ISO 8601 date-time") from None
    return _instant(parsed, zone)


def _json_text(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


def parse_json(
    body: bytes,
    source: ScheduleSource,
    people: frozenset[str],
    zone_name: str,
    now: datetime,
    window: tuple[datetime, datetime],
) -> Feed:
    """Shifts from a JSON endpoint: a list at ``source.shifts``, or one answer for ``now``
    (open-ended unless the document gives its end)."""
    zone = ZoneInfo(zone_name)
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"not JSON: {exc}") from None
    if source.shifts is None:
        found = lookup(document, source.person)
        if found is None or found == "":
            return Feed((), now, now + FOREVER)  # the source says: nobody
        names = _json_text(found)
        person = _person(names, source, people, f"{source.person}") if names else None
        if person is None:
            raise SourceError(f"{source.person}: expected a name, found {found!r:.80}")
        start = (
            _json_instant(lookup(document, source.start), zone, source.start)
            if (source.start and lookup(document, source.start) is not None)
            else now
        )
        end = (
            _json_instant(lookup(document, source.end), zone, source.end)
            if (source.end and lookup(document, source.end) is not None)
            else None
        )
        return Feed((FeedShift(person, min(start, now), end),), min(start, now), now + FOREVER)
    items = lookup(document, source.shifts)
    if not isinstance(items, list):
        raise SourceError(f"{source.shifts}: expected a list of shifts")
    if len(items) > MAX_OCCURRENCES:
        raise SourceError(f"{source.shifts}: more than {MAX_OCCURRENCES} shifts")
    assert source.start is not None and source.end is not None
    shifts = []
    for i, item in enumerate(items):
        where = f"{source.shifts}.{i}"
        first = _json_instant(lookup(item, source.start), zone, f"{where}.{source.start}")
        last = _json_instant(lookup(item, source.end), zone, f"{where}.{source.end}")
        if last <= first:
            raise SourceError(f"{where}: ends before it starts")
        names = _json_text(lookup(item, source.person))
        person = _person(names, source, people, f"{where}.{source.person}")
        shifts.append(FeedShift(person, first, last))
    return Feed(tuple(sorted(shifts, key=lambda s: s.start)), window[0], window[1])
