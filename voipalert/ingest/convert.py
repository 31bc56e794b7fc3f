"""From validated payloads to the events the intake commits (pure: no I/O).

An event is either a ``NewAlert`` (trigger: create, or join the open alert with the same
dedup key) or a ``Resolve`` (close the open alert with that dedup key and cancel its calls).

Alertmanager's notifications are grouped (``groupKey``): by default one group is one alert,
keyed by the group, whose summary says what the group holds ("3 alerts: HostDown on db1,
db2, db3"). A later notification of the same group joins it and refreshes that text without
placing a new call; the group's "resolved" closes it. ``Grouping.ALERT`` keys each alert by
its fingerprint (a hash of its label set) instead, as Grafana's alerts always are.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from voipalert.domain.alert import NewAlert, Severity
from voipalert.domain.rota import PolicyName, TeamName
from voipalert.ingest.schemas import (
    MAX_KEY_CHARS,
    MAX_LABEL_VALUE_CHARS,
    MAX_SUMMARY_CHARS,
    AlertIn,
    AlertmanagerAlert,
    AlertmanagerPayload,
    GrafanaAlert,
    GrafanaPayload,
)


@dataclass(frozen=True, slots=True)
class Resolve:
    """Close the open alert that has this dedup key, if there is one."""

    dedup_key: str
    source: str


Event = NewAlert | Resolve


class Grouping(enum.StrEnum):
    GROUP = "group"  # one alert per Alertmanager group (groupKey)
    ALERT = "alert"  # one alert per Alertmanager alert (fingerprint)


@dataclass(frozen=True, slots=True)
class AmEvent:
    """An Alertmanager event and the labels a silence for it matches, as Alertmanager has
    them (not cleaned: a silence must match the real label values)."""

    event: Event
    matchers: Mapping[str, str] = field(default_factory=dict)


GROUP_SUMMARY_CHARS: Final = 200  # a spoken sentence, not a list of every instance
GROUP_NAMES_SPOKEN: Final = 4  # instances named per alert name; the rest are counted
GROUP_ALERTS_KEPT: Final = 50  # alerts of a group kept in the alert's fields
_PORT: Final = re.compile(r":\d{1,5}$")

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]+")

# Severity words from the tools that send to us (Prometheus rule labels, Zabbix, syslog
# levels, Nagios states, PagerDuty-style priorities), lower case.
_SEVERITY_WORDS: Final[Mapping[str, Severity]] = {
    **dict.fromkeys(
        (
            "critical crit page emergency emerg alert disaster fatal high down unreachable "
            "p1 sev1 s1"
        ).split(),
        Severity.CRITICAL,
    ),
    **dict.fromkeys("error err major average unknown p2 sev2 s2".split(), Severity.ERROR),
    **dict.fromkeys("warning warn minor p3 sev3 s3".split(), Severity.WARNING),
    **dict.fromkeys(
        "info information informational notice low none ok debug p4 p5 sev4 sev5".split(),
        Severity.INFO,
    ),
    "not classified": Severity.INFO,
}


def clean_text(value: str, max_chars: int) -> str:
    """Control characters become one space; the result is stripped and cut to size."""
    text = _CONTROL.sub(" ", value).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def parse_severity(value: object) -> Severity | None:
    """A severity word from any of the tools we know, or None."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    return _SEVERITY_WORDS.get(str(value).strip().lower())


def label_hash(labels: Mapping[str, str]) -> str:
    """A stable key for a label set, when a sender gives no fingerprint."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def clean_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {
        clean_text(key, 128): clean_text(value, MAX_LABEL_VALUE_CHARS)
        for key, value in labels.items()
        if clean_text(key, 128)
    }


def from_alert_in(alert: AlertIn) -> NewAlert:
    return NewAlert(
        summary=alert.summary,
        severity=alert.severity,
        source=alert.source,
        dedup_key=alert.dedup_key,
        fields=dict(alert.fields),
        labels=dict(alert.labels),
        policy=PolicyName(alert.policy) if alert.policy else None,
        team=TeamName(alert.team) if alert.team else None,
        kind=alert.kind,
    )


def _summary(alert: AlertmanagerAlert) -> str:
    for key in ("summary", "description", "message"):
        text = clean_text(alert.annotations.get(key, ""), MAX_SUMMARY_CHARS)
        if text:
            return text
    name = alert.labels.get("alertname", "alert")
    where = alert.labels.get("instance") or alert.labels.get("host")
    return clean_text(f"{name} on {where}" if where else name, MAX_SUMMARY_CHARS) or "alert"


def _group_fields(payload: AlertmanagerPayload | GrafanaPayload) -> dict[str, object]:
    return {
        "group_key": payload.groupKey,
        "group_labels": dict(payload.groupLabels),
        "common_annotations": dict(payload.commonAnnotations),
        "receiver": payload.receiver,
        "external_url": payload.externalURL,
    }


def _alert_event(
    source: str,
    alert: AlertmanagerAlert,
    group: dict[str, object],
    default_severity: Severity,
) -> Event:
    fingerprint = clean_text(alert.fingerprint or "", MAX_KEY_CHARS) or label_hash(alert.labels)
    key = f"{source}:{fingerprint}"
    if alert.status == "resolved":
        return Resolve(key, source)
    fields: dict[str, object] = {
        **group,
        "annotations": dict(alert.annotations),
        "starts_at": alert.startsAt,
        "generator_url": alert.generatorURL,
        "fingerprint": fingerprint,
    }
    if isinstance(alert, GrafanaAlert):
        fields.update(
            values=alert.values,
            value_string=alert.valueString,
            silence_url=alert.silenceURL,
            dashboard_url=alert.dashboardURL,
            panel_url=alert.panelURL,
            image_url=alert.imageURL,
        )
    return NewAlert(
        summary=_summary(alert),
        severity=parse_severity(alert.labels.get("severity")) or default_severity,
        source=source,
        dedup_key=key,
        fields={k: v for k, v in fields.items() if v is not None},
        labels=clean_labels(alert.labels),
    )


def from_alertmanager(
    payload: AlertmanagerPayload,
    default_severity: Severity = Severity.CRITICAL,
    grouping: Grouping = Grouping.ALERT,
) -> list[Event]:
    """The events of one notification, one per alert unless told otherwise (the hook calls
    ``alertmanager_events`` with its configured grouping, by group by default)."""
    return [e.event for e in alertmanager_events(payload, default_severity, grouping)]


def alertmanager_events(
    payload: AlertmanagerPayload,
    default_severity: Severity = Severity.CRITICAL,
    grouping: Grouping = Grouping.GROUP,
) -> list[AmEvent]:
    """``GROUP``: one event for the whole group; ``ALERT``: one event per alert in it
    (firing triggers, resolved closes)."""
    group = _group_fields(payload)
    if grouping is Grouping.GROUP:
        return [_group_event(payload, group, default_severity)]
    return [
        AmEvent(_alert_event("alertmanager", a, group, default_severity), dict(a.labels))
        for a in payload.alerts
    ]


def group_dedup_key(group_key: str | None, group_labels: Mapping[str, str]) -> str:
    """The dedup key of an Alertmanager group's alert."""
    # groupKey is Alertmanager's own identity of the group ("{}/{...}:{alertname=...}"),
    # unbounded in length: hashed. Without one, the group's labels stand for it.
    if group_key:
        digest = hashlib.sha256(group_key.encode()).hexdigest()[:24]
    else:
        digest = label_hash(group_labels)
    return f"alertmanager:group:{digest}"


def _spoken_instance(labels: Mapping[str, str]) -> str | None:
    where = labels.get("instance") or labels.get("host") or labels.get("hostname")
    return _PORT.sub("", where) if where else None


def group_summary(alerts: Sequence[AlertmanagerAlert], truncated: int = 0) -> str:
    """What a call says of a group: one alert's own summary, or "3 alerts: HostDown on db1,
    db2, db3; DiskFull on db4", bounded."""
    total = len(alerts) + truncated
    if total == 1 and alerts:
        return _summary(alerts[0])
    by_name: dict[str, list[str]] = {}
    for alert in alerts:
        places = by_name.setdefault(alert.labels.get("alertname", "alert"), [])
        where = _spoken_instance(alert.labels)
        if where and where not in places:
            places.append(where)
    parts = []
    for name, places in by_name.items():
        named = places[:GROUP_NAMES_SPOKEN]
        more = len(places) - len(named)
        where = ", ".join(named) + (f" and {more} more" if more else "")
        parts.append(f"{name} on {where}" if where else name)
    return clean_text(f"{total} alerts: {'; '.join(parts)}", GROUP_SUMMARY_CHARS)


def _alert_record(alert: AlertmanagerAlert) -> dict[str, object]:
    return {
        "status": alert.status,
        "labels": clean_labels(alert.labels),
        "annotations": dict(alert.annotations),
        "starts_at": alert.startsAt,
        "fingerprint": alert.fingerprint,
    }


def _group_event(
    payload: AlertmanagerPayload, group: dict[str, object], default_severity: Severity
) -> AmEvent:
    key = group_dedup_key(payload.groupKey, payload.groupLabels)
    # A silence for the group matches the labels Alertmanager grouped by; with no grouping
    # labels (group_by: [...] empty) those all its alerts share.
    matchers = dict(payload.groupLabels) or dict(payload.commonLabels)
    firing = [a for a in payload.alerts if a.status == "firing"]
    if payload.status == "resolved" or not firing:
        return AmEvent(Resolve(key, "alertmanager"), matchers)
    severities = [parse_severity(a.labels.get("severity")) or default_severity for a in firing]
    order = list(Severity)  # most severe first
    fields: dict[str, object] = {
        **group,
        "firing": len(firing) + payload.truncatedAlerts,
        "alerts": [_alert_record(a) for a in firing[:GROUP_ALERTS_KEPT]],
    }
    new = NewAlert(
        summary=group_summary(firing, payload.truncatedAlerts),
        severity=min(severities, key=order.index),
        source="alertmanager",
        dedup_key=key,
        fields={k: v for k, v in fields.items() if v is not None},
        labels=clean_labels(payload.commonLabels),
        refresh=True,
    )
    return AmEvent(new, matchers)


def from_grafana(
    payload: GrafanaPayload, default_severity: Severity = Severity.CRITICAL
) -> list[Event]:
    """Grafana's contact point sends Alertmanager's shape with a few extra fields."""
    group = {**_group_fields(payload), "org_id": payload.orgId}
    return [_alert_event("grafana", a, group, default_severity) for a in payload.alerts]
