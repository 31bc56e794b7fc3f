"""A ``Rota`` back to rota-file YAML, in the form ``rotafile.parse`` reads: what ``voipalert
rota export`` prints, so that exporting and importing again gives the same rota."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import yaml

from voipalert.domain.rota import (
    Contact,
    Layer,
    NotifyRule,
    Person,
    Rota,
    Route,
    Schedule,
    ScheduleSource,
    Step,
)

_WEEKDAY_NAMES = {1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat", 7: "sun"}


def _layer(layer: Layer) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": layer.name,
        "members": list(layer.members),
        "shift_length": layer.shift_length,
        "shift_unit": layer.shift_unit.value,
        "start": layer.start_date.isoformat(),
        "handoff": layer.handoff.strftime("%H:%M" if not layer.handoff.second else "%H:%M:%S"),
    }
    if layer.windows:
        out["windows"] = [
            {
                "days": [_WEEKDAY_NAMES[d] for d in sorted(w.days)],
                "from": w.start.strftime("%H:%M"),
                "to": w.end.strftime("%H:%M"),
            }
            for w in layer.windows
        ]
    return out


def source_to_data(source: ScheduleSource) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": source.kind.value, "url": source.url}
    if source.kind.value != "json":
        out["person_field"] = source.person_field
    if source.aliases:
        out["people"] = dict(source.aliases)
    out["poll"] = source.poll_seconds
    out["alert_after"] = source.alert_after_seconds
    for key in ("username", "password_file", "shifts"):
        if getattr(source, key) is not None:
            out[key] = getattr(source, key)
    if source.kind.value == "json":
        out["person"] = source.person
        for key in ("start", "end"):
            if getattr(source, key) is not None:
                out[key] = getattr(source, key)
    return out


def _schedule(s: Schedule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": s.name, "time_zone": s.time_zone}
    if s.layers or s.source is None:
        out["layers"] = [_layer(x) for x in s.layers]
    if s.source is not None:
        out["source"] = source_to_data(s.source)
    return out


def _contact(contact: Contact) -> dict[str, Any]:
    out: dict[str, Any] = {contact.kind.value: contact.address}
    if contact.name is not None:
        out["name"] = contact.name
    return out


def _notice(person: Person) -> dict[str, Any]:
    notice = person.shift_notice
    assert notice is not None
    named = person.contacts[notice.contact].name
    return {
        "contact": named if named is not None else notice.contact + 1,
        "before": notice.before_seconds,
    }


def _rule(person: Person, rule: NotifyRule) -> dict[str, Any]:
    named = person.contacts[rule.contact].name
    return {
        "contact": named if named is not None else rule.contact + 1,
        "method": rule.method.value,
        "after": rule.after_seconds,
    }


def _step(step: Step) -> dict[str, Any]:
    return {
        "targets": [{t.kind.value: t.name} for t in step.targets],
        "timeout": step.timeout_seconds,
        "ring_timeout": step.ring_timeout_seconds,
    }


def _route(route: Route) -> dict[str, Any]:
    out: dict[str, Any] = {"name": route.name}
    match: dict[str, Any] = {
        k: v
        for k, v in (
            ("source", route.source),
            ("severity", route.severity),
            ("subject", route.subject),
        )
        if v is not None
    }
    if route.labels:
        match["labels"] = dict(route.labels)
    if match:
        out["match"] = match
    if route.policy:
        out["policy"] = route.policy
    if route.team:
        out["team"] = route.team
    if route.default:
        out["default"] = True
    return out


def rota_to_data(rota: Rota) -> dict[str, Any]:
    """The rota as plain data (the rota file's structure)."""
    return {
        "version": 1,
        "people": [
            {
                "name": p.name,
                "language": p.language,
                "contacts": [_contact(c) for c in p.contacts],
                **({"rules": [_rule(p, r) for r in p.rules]} if p.rules else {}),
                **({"shift_notice": _notice(p)} if p.shift_notice else {}),
            }
            for p in rota.people
        ],
        "teams": [{"name": t.name, "members": list(t.members)} for t in rota.teams],
        "schedules": [_schedule(s) for s in rota.schedules],
        "overrides": [
            {
                "schedule": o.schedule,
                "person": o.person,
                **({"replaces": o.replaces} if o.replaces else {}),
                "start": o.start.astimezone(UTC).isoformat(),
                "end": o.end.astimezone(UTC).isoformat(),
            }
            for o in rota.overrides
        ],
        "policies": [
            {
                "name": p.name,
                "repeat": p.repeat_count,
                "repeat_delay": p.repeat_delay_seconds,
                "steps": [_step(s) for s in p.steps],
            }
            for p in rota.policies
        ],
        "routes": [_route(r) for r in rota.routes],
    }


def dump_rota(rota: Rota) -> str:
    """The rota as YAML text that ``parse_rota`` reads back to an equal ``Rota``."""
    header = "# voipalert rota (exported); `voipalert rota import` reads this file back.\n"
    return header + yaml.safe_dump(
        rota_to_data(rota), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
