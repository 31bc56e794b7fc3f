"""From validated payloads to the events the intake commits (pure: no I/O).

An event is either a ``NewAlert`` (trigger: create, or join the open alert with the same
dedup key) or a ``Resolve`` (close the open alert with that dedup key and cancel its calls).

Alertmanager and Grafana key each alert by its fingerprint (a hash of its label set), so the
same problem reported again joins the open alert, and its "resolved" notification closes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
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
    payload: AlertmanagerPayload, default_severity: Severity = Severity.CRITICAL
) -> list[Event]:
    """One event per alert in the group: firing triggers, resolved closes."""
    group = _group_fields(payload)
    return [_alert_event("alertmanager", a, group, default_severity) for a in payload.alerts]


def from_grafana(
    payload: GrafanaPayload, default_severity: Severity = Severity.CRITICAL
) -> list[Event]:
    """Grafana's contact point sends Alertmanager's shape with a few extra fields."""
    group = {**_group_fields(payload), "org_id": payload.orgId}
    return [_alert_event("grafana", a, group, default_severity) for a in payload.alerts]
