"""Escalation policies and routing rules of a rota file (see ``rotafile.parse``)."""

from __future__ import annotations

import re

from voipalert.domain.rota import (
    EscalationPolicy,
    PolicyName,
    Route,
    Step,
    Target,
    TargetKind,
    TeamName,
)
from voipalert.rotafile.reader import NAME, Reader, join
from voipalert.rotafile.source import Node


def _target(r: Reader, node: Node, path: str, known: dict[TargetKind, set[str]]) -> Target | None:
    chosen = r.one_of(node, path, [k.value for k in TargetKind])
    if chosen is None:
        return None
    key, value = chosen
    name = r.text(value, join(path, key))
    if name is not None and name not in known[TargetKind(key)]:
        r.fail(value, join(path, key), f"no {key} named {name!r}")
        return None
    return Target(TargetKind(key), name) if name is not None else None


def _step(r: Reader, node: Node, path: str, known: dict[TargetKind, set[str]]) -> Step | None:
    items = r.mapping(node, path, ("targets", "timeout"), ("ring_timeout",))
    if items is None:
        return None
    targets = [
        _target(r, item, join(join(path, "targets"), i), known)
        for i, item in enumerate(r.sequence(items.get("targets"), join(path, "targets")))
    ]
    if "targets" in items and items["targets"].value == []:
        r.fail(items["targets"], join(path, "targets"), "a step needs at least one target")
    timeout = r.duration(items.get("timeout"), join(path, "timeout"), minimum=1)
    ring = (
        r.duration(items.get("ring_timeout"), join(path, "ring_timeout"), minimum=5)
        if "ring_timeout" in items
        else 30
    )
    if not targets or None in targets or timeout is None or ring is None:
        return None
    return Step(tuple(t for t in targets if t is not None), timeout, ring)


def policy(
    r: Reader, node: Node, path: str, known: dict[TargetKind, set[str]]
) -> EscalationPolicy | None:
    items = r.mapping(node, path, ("name", "steps"), ("repeat", "repeat_delay"))
    if items is None:
        return None
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    steps = [
        _step(r, item, join(join(path, "steps"), i), known)
        for i, item in enumerate(r.sequence(items.get("steps"), join(path, "steps")))
    ]
    if "steps" in items and items["steps"].value == []:
        r.fail(items["steps"], join(path, "steps"), "a policy needs at least one step")
    repeat = r.integer(items.get("repeat"), join(path, "repeat")) if "repeat" in items else 0
    delay = (
        r.duration(items.get("repeat_delay"), join(path, "repeat_delay"))
        if "repeat_delay" in items
        else 0
    )
    if name is None or not steps or None in steps or repeat is None or delay is None:
        return None
    return EscalationPolicy(
        PolicyName(name), tuple(s for s in steps if s is not None), repeat, delay
    )


def _route_match(r: Reader, node: Node | None, path: str) -> dict[str, object] | None:
    if node is None:
        return {}
    items = r.mapping(node, path, (), ("source", "severity", "subject", "labels"))
    if items is None:
        return None
    found: dict[str, object] = {
        k: r.text(items.get(k), join(path, k))
        for k in ("source", "severity", "subject")
        if k in items
    }
    if isinstance(found.get("subject"), str):
        try:
            re.compile(str(found["subject"]))
        except re.error as exc:
            r.fail(
                items["subject"], join(path, "subject"), f"not a valid regular expression: {exc}"
            )
            return None
    labels: list[tuple[str, str]] = []
    if "labels" in items:
        label_items = r.mapping(items["labels"], join(path, "labels"), (), any_keys=True)
        for key, value in (label_items or {}).items():
            text = r.text(value, join(join(path, "labels"), key))
            if text is not None:
                labels.append((key, text))
    found["labels"] = tuple(labels)
    return found if None not in found.values() else None


def route(r: Reader, node: Node, path: str, policies: set[str], teams: set[str]) -> Route | None:
    items = r.mapping(node, path, ("name",), ("policy", "team", "default", "match"))
    if items is None:
        return None
    name = r.text(items.get("name"), join(path, "name"), NAME, "a name")
    refs: dict[str, str | None] = {}
    for key, known in (("policy", policies), ("team", teams)):
        refs[key] = r.text(items.get(key), join(path, key)) if key in items else None
        if refs[key] is not None and refs[key] not in known:
            r.fail(items.get(key), join(path, key), f"no {key} named {refs[key]!r}")
            return None
    if refs["policy"] is None and refs["team"] is None:
        r.fail(node, path, "a route needs a policy, a team or both")
        return None
    default = (
        r.boolean(items.get("default"), join(path, "default")) if "default" in items else False
    )
    match = _route_match(r, items.get("match"), join(path, "match"))
    if name is None or default is None or match is None:
        return None
    labels = match.pop("labels", ())
    assert isinstance(labels, tuple)
    policy, team = refs["policy"], refs["team"]
    return Route(
        name,
        policy=PolicyName(policy) if policy else None,
        team=TeamName(team) if team else None,
        default=default,
        labels=labels,
        **{k: str(v) for k, v in match.items()},
    )
