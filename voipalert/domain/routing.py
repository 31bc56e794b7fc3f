"""Routing rules: which team and escalation policy an incoming alert goes to.

Rules are tried in order; the first whose every set criterion matches wins; otherwise the
first rule marked ``default``; otherwise no route (the alert has nobody to call, which the
planner closes with that reason, recorded in the audit log).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from voipalert.domain.rota import Route


def matches(
    route: Route, *, source: str, severity: str, summary: str, labels: Mapping[str, str]
) -> bool:
    if route.default:
        return False
    if route.source is not None and route.source != source:
        return False
    if route.severity is not None and route.severity != severity:
        return False
    if route.subject is not None and re.search(route.subject, summary) is None:
        return False
    return all(labels.get(key) == value for key, value in route.labels)


def route(
    routes: Sequence[Route],
    *,
    source: str,
    severity: str,
    summary: str,
    labels: Mapping[str, str],
) -> Route | None:
    """The first matching rule, else the default rule, else None."""
    for candidate in routes:
        if matches(candidate, source=source, severity=severity, summary=summary, labels=labels):
            return candidate
    return next((r for r in routes if r.default), None)
