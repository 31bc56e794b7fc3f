"""A rota file (YAML or TOML) to a validated ``Rota``, or a ``RotaError`` listing every
problem with its line and reason. See ``deploy/rota.example.yaml`` for the format."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, Literal, TypeVar
from zoneinfo import ZoneInfo

from voipalert.domain.errors import RotaError
from voipalert.domain.rota import (
    Layer,
    Override,
    Person,
    PersonName,
    Rota,
    Schedule,
    ScheduleName,
    ScheduleSource,
    ShiftNotice,
    ShiftUnit,
    SourceKind,
    TargetKind,
    Team,
    TeamName,
    Window,
)
from voipalert.rotafile.parse_policy import policy, route
from voipalert.rotafile.parse_rules import check_contact_names, contact, rules, shift_notice
from voipalert.rotafile.reader import NAME, Reader, join
from voipalert.rotafile.source import Node, load_toml, load_yaml

RotaFormat = Literal["yaml", "toml"]
FORMAT_VERSION: Final = 1

LANGUAGE: Final = re.compile(r"[a-z]{2,3}(?:[_-][A-Za-z]{2,4})?")
WEEKDAYS: Final = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}

T = TypeVar("T")


def _each(
    r: Reader, node: Node | None, path: str, build: Callable[[Reader, Node, str], T | None]
) -> list[T | None]:
    return [build(r, item, join(path, i)) for i, item in enumerate(r.sequence(node, path))]


def _person(r: Reader, node: Node, path: str) -> Person | None:
    items = r.mapping(node, path, ("name", "contacts"), ("language", "rules", "shift_notice"))
    if items is None:
        return None
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    language = "en"
    if "language" in items:
        language = (
            r.text(
                items["language"], join(path, "language"), LANGUAGE, "a language code like en or fr"
            )
            or ""
        )
    contacts = _each(r, items.get("contacts"), join(path, "contacts"), contact)
    if "contacts" in items and items["contacts"].value == []:
        r.fail(items["contacts"], join(path, "contacts"), "a person needs at least one contact")
    if None in contacts or not contacts:
        return None
    valid = _valid(contacts)
    check_contact_names(r, items.get("contacts"), join(path, "contacts"), list(valid))
    found = rules(r, items.get("rules"), join(path, "rules"), list(valid))
    notice = shift_notice(r, items.get("shift_notice"), join(path, "shift_notice"), list(valid))
    if name is None or not language or found is None or notice is False:
        return None
    kept = notice if isinstance(notice, ShiftNotice) else None
    return Person(PersonName(name), language, valid, tuple(found), kept)


def _names(r: Reader, node: Node | None, path: str, known: set[str], what: str) -> list[str] | None:
    if node is None:
        return None
    names: list[str] = []
    for i, item in enumerate(r.sequence(node, path)):
        name = r.text(item, join(path, i))
        if name is not None and name not in known:
            r.fail(item, join(path, i), f"no {what} named {name!r}")
        elif name is not None:
            names.append(name)
    if isinstance(node.value, list) and not node.value:
        r.fail(node, path, "must not be empty")
    return names if len(names) == len(r.sequence(node, path)) and names else None


def _team(r: Reader, node: Node, path: str, people: set[str]) -> Team | None:
    items = r.mapping(node, path, ("name", "members"))
    if items is None:
        return None
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    members = _names(r, items.get("members"), join(path, "members"), people, "person")
    if members is not None and len(set(members)) != len(members):
        r.fail(items.get("members"), join(path, "members"), "a person can be in a team once")
        return None
    if name is None or members is None:
        return None
    return Team(TeamName(name), tuple(PersonName(m) for m in members))


def _window(r: Reader, node: Node, path: str) -> Window | None:
    items = r.mapping(node, path, ("days", "from", "to"))
    if items is None:
        return None
    days: set[int] = set()
    for i, day in enumerate(r.sequence(items.get("days"), join(path, "days"))):
        text = str(day.raw if day.raw is not None else day.value).strip().lower()[:3]
        if text not in WEEKDAYS:
            r.fail(
                day,
                join(join(path, "days"), i),
                "expected a weekday: mon, tue, wed, thu, fri, sat or sun",
            )
            return None
        days.add(WEEKDAYS[text])
    start = r.time_of_day(items.get("from"), join(path, "from"))
    end = r.time_of_day(items.get("to"), join(path, "to"))
    if start is None or end is None or not days:
        return None
    return Window(frozenset(days), start, end)


def _layer(r: Reader, node: Node, path: str, people: set[str]) -> Layer | None:
    keys = ("name", "members", "shift_length", "shift_unit", "start", "handoff")
    items = r.mapping(node, path, keys, ("windows",))
    if items is None:
        return None
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    members = _names(r, items.get("members"), join(path, "members"), people, "person")
    length = r.integer(items.get("shift_length"), join(path, "shift_length"), minimum=1)
    unit_text = r.text(items.get("shift_unit"), join(path, "shift_unit"))
    units = {u.value: u for u in ShiftUnit}
    unit = units.get(unit_text) if unit_text is not None else None
    if unit_text is not None and unit is None:
        r.fail(items.get("shift_unit"), join(path, "shift_unit"), "expected hours, days or weeks")
    start = r.day(items.get("start"), join(path, "start"))
    handoff = r.time_of_day(items.get("handoff"), join(path, "handoff"))
    windows = _each(r, items.get("windows"), join(path, "windows"), _window)
    if (
        name is None
        or members is None
        or length is None
        or unit is None
        or start is None
        or handoff is None
        or None in windows
    ):
        return None
    return Layer(
        name,
        tuple(PersonName(m) for m in members),
        length,
        unit,
        start,
        handoff,
        tuple(w for w in windows if w is not None),
    )


# Event properties that can name the person (RFC 5545 §3.8); X- properties are allowed too.
PERSON_FIELDS: Final = ("SUMMARY", "ATTENDEE", "ORGANIZER", "DESCRIPTION", "LOCATION",
                        "CATEGORIES", "CONTACT", "COMMENT")  # fmt: skip
_URL: Final = re.compile(r"https?://[^\s<>\"'\\]{1,2000}")
_DOTTED: Final = re.compile(r"[A-Za-z0-9_@$-]+(?:\.[A-Za-z0-9_@$-]+){0,15}")
_SOURCE_KEYS: Final = {
    "kind", "url", "person_field", "people", "poll", "alert_after", "username",
    "password_file", "shifts", "person", "start", "end",
}  # fmt: skip
MIN_POLL_SECONDS: Final = 10


def _aliases(r: Reader, node: Node | None, path: str, people: set[str]) -> list[tuple[str, str]]:
    if node is None:
        return []
    items = r.mapping(node, path, (), any_keys=True)
    out = []
    for key, value in (items or {}).items():
        name = r.text(value, join(path, key))
        if name is not None and name not in people:
            r.fail(value, join(path, key), f"no person named {name!r}")
        elif name is not None:
            out.append((key.strip(), name))
    return out


def _json_paths(
    r: Reader, node: Node, items: dict[str, Node], path: str, kind: SourceKind | None
) -> dict[str, str | None]:
    paths = {
        key: r.text(items.get(key), join(path, key), _DOTTED, "a dotted path like data.user.name")
        for key in ("shifts", "person", "start", "end")
    }
    if kind is SourceKind.JSON and paths["shifts"] is not None:
        for key in ("start", "end"):
            if paths[key] is None:
                r.fail(node, join(path, key), "missing (a list of shifts needs start and end)")
    if kind is not SourceKind.JSON:
        for key in paths:
            if key in items:
                r.fail(items[key], join(path, key), "only for kind: json")
    return paths


def _source(r: Reader, node: Node, path: str, people: set[str]) -> ScheduleSource | None:
    before = len(r.problems)
    items = r.mapping(node, path, ("kind", "url"), _SOURCE_KEYS - {"kind", "url"})
    if items is None:
        return None
    kind_text = r.text(items.get("kind"), join(path, "kind"))
    kind = {k.value: k for k in SourceKind}.get(kind_text or "")
    if kind_text is not None and kind is None:
        r.fail(items.get("kind"), join(path, "kind"), "expected ical, caldav or json")
    url = r.text(items.get("url"), join(path, "url"), _URL, "an http:// or https:// URL")
    field = (r.text(items.get("person_field"), join(path, "person_field")) or "SUMMARY").upper()
    if field not in PERSON_FIELDS and not field.startswith("X-"):
        r.fail(
            items.get("person_field"),
            join(path, "person_field"),
            f"expected one of {', '.join(PERSON_FIELDS)} or an X- property",
        )
    aliases = _aliases(r, items.get("people"), join(path, "people"), people)
    poll = r.duration(items.get("poll"), join(path, "poll"), MIN_POLL_SECONDS)
    alert_after = r.duration(items.get("alert_after"), join(path, "alert_after"), 0)
    username = r.text(items.get("username"), join(path, "username"))
    password_file = r.text(items.get("password_file"), join(path, "password_file"))
    paths = _json_paths(r, node, items, path, kind)
    if kind is None or url is None or len(r.problems) > before:
        return None
    return ScheduleSource(
        kind=kind,
        url=url,
        person_field=field,
        aliases=tuple((k, PersonName(v)) for k, v in aliases),
        poll_seconds=poll if poll is not None else 300,
        alert_after_seconds=alert_after if alert_after is not None else 900,
        username=username,
        password_file=password_file,
        shifts=paths["shifts"],
        person=paths["person"] or "person",
        start=paths["start"],
        end=paths["end"],
    )


def _schedule(
    r: Reader, node: Node, path: str, people: set[str], zones: dict[str, ZoneInfo | None]
) -> Schedule | None:
    items = r.mapping(node, path, ("name", "time_zone"), ("layers", "source"))
    if items is None:
        return None
    source = None
    if "source" in items:
        source = _source(r, items["source"], join(path, "source"), people)
        if source is None:
            return None
    elif "layers" not in items:
        r.fail(node, join(path, "layers"), "missing (a schedule needs layers, a source, or both)")
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    zone = r.zone(items.get("time_zone"), join(path, "time_zone"))
    if name is not None:
        zones[name] = zone
    layers_path = join(path, "layers")
    layers = [
        _layer(r, item, join(layers_path, i), people)
        for i, item in enumerate(r.sequence(items.get("layers"), layers_path))
    ]
    _unique(r, items.get("layers"), layers_path)
    if name is None or zone is None or None in layers:
        return None
    return Schedule(ScheduleName(name), zone.key, _valid(layers), source)


def _unique(r: Reader, node: Node | None, path: str) -> set[str]:
    """The ``name`` values of a list of mappings, reporting duplicates."""
    seen: set[str] = set()
    for i, item in enumerate(
        r.sequence(node, path) if node is not None and isinstance(node.value, list) else []
    ):
        if not isinstance(item.value, dict) or "name" not in item.value:
            continue
        name_node = item.value["name"]
        name = str(name_node.raw if name_node.raw is not None else name_node.value).strip()
        if name in seen:
            r.fail(name_node, join(join(path, i), "name"), f"duplicate name {name!r}")
        seen.add(name)
    return seen


def _override(
    r: Reader, node: Node, path: str, zones: dict[str, ZoneInfo | None], people: set[str]
) -> Override | None:
    items = r.mapping(node, path, ("schedule", "person", "start", "end"), ("replaces",))
    if items is None:
        return None
    schedule = r.text(items.get("schedule"), join(path, "schedule"))
    if schedule is not None and schedule not in zones:
        r.fail(items.get("schedule"), join(path, "schedule"), f"no schedule named {schedule!r}")
    zone = zones.get(schedule or "")
    refs = [
        r.text(items.get(k), join(path, k)) if k in items else "" for k in ("person", "replaces")
    ]
    for key, ref in zip(("person", "replaces"), refs, strict=True):
        if ref and ref not in people:
            r.fail(items.get(key), join(path, key), f"no person named {ref!r}")
    start = r.instant(items.get("start"), join(path, "start"), zone)
    end = r.instant(items.get("end"), join(path, "end"), zone)
    if start is not None and end is not None and end <= start:
        r.fail(items.get("end"), join(path, "end"), "must be after start")
        return None
    person, replaces = refs
    if (
        not schedule
        or schedule not in zones
        or not person
        or person not in people
        or start is None
        or end is None
    ):
        return None
    if replaces and replaces not in people:
        return None
    return Override(
        ScheduleName(schedule),
        PersonName(person),
        start,
        end,
        PersonName(replaces) if replaces else None,
    )


def _valid(items: Iterable[T | None]) -> tuple[T, ...]:
    return tuple(x for x in items if x is not None)


def build_rota(root: Node, filename: str = "rota") -> Rota:
    """Validate a located tree into a ``Rota``; raise ``RotaError`` with every problem."""
    r = Reader()
    sections = ("teams", "schedules", "overrides", "policies", "routes", "version")
    top = r.mapping(root, "", ("people",), sections)
    if top is None:
        raise RotaError(r.problems, filename)
    if "version" in top and r.integer(top["version"], "version") not in (None, FORMAT_VERSION):
        r.fail(
            top["version"], "version", f"this voipalert reads rota format version {FORMAT_VERSION}"
        )
    people = _each(r, top.get("people"), "people", _person)
    person_names = _unique(r, top.get("people"), "people")
    teams = _each(r, top.get("teams"), "teams", lambda r, n, p: _team(r, n, p, person_names))
    team_names = _unique(r, top.get("teams"), "teams")
    zones: dict[str, ZoneInfo | None] = {}
    schedules = _each(
        r,
        top.get("schedules"),
        "schedules",
        lambda r, n, p: _schedule(r, n, p, person_names, zones),
    )
    schedule_names = _unique(r, top.get("schedules"), "schedules")
    overrides = _each(
        r,
        top.get("overrides"),
        "overrides",
        lambda r, n, p: _override(r, n, p, zones, person_names),
    )
    known = {
        TargetKind.SCHEDULE: schedule_names,
        TargetKind.PERSON: person_names,
        TargetKind.TEAM: team_names,
    }
    policies = _each(r, top.get("policies"), "policies", lambda r, n, p: policy(r, n, p, known))
    policy_names = _unique(r, top.get("policies"), "policies")
    routes = _each(
        r, top.get("routes"), "routes", lambda r, n, p: route(r, n, p, policy_names, team_names)
    )
    _unique(r, top.get("routes"), "routes")
    if r.problems:
        raise RotaError(r.problems, filename)
    return Rota(
        people=_valid(people),
        teams=_valid(teams),
        schedules=_valid(schedules),
        overrides=_valid(overrides),
        policies=_valid(policies),
        routes=_valid(routes),
    )


def parse_rota(text: str, fmt: RotaFormat = "yaml", filename: str = "rota") -> Rota:
    """Parse and validate rota text; ``RotaError`` names the line and reason of each problem."""
    try:
        root = load_yaml(text) if fmt == "yaml" else load_toml(text)
    except RotaError as exc:
        raise RotaError(exc.problems, filename) from None
    return build_rota(root, filename)
