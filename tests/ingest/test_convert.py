"""Alertmanager and Grafana payloads (real examples in tests/data/ingest/) to events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from voipalert.domain.alert import NewAlert, Severity
from voipalert.ingest.convert import (
    Resolve,
    clean_text,
    from_alert_in,
    from_alertmanager,
    from_grafana,
    label_hash,
    parse_severity,
)
from voipalert.ingest.schemas import AlertIn, AlertmanagerPayload, GrafanaPayload

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def test_alertmanager_firing_group_becomes_one_alert_per_fingerprint() -> None:
    payload = AlertmanagerPayload.model_validate_json(
        (DATA / "alertmanager_firing.json").read_text()
    )
    events = from_alertmanager(payload)
    assert len(events) == 2
    first, second = events
    assert isinstance(first, NewAlert) and isinstance(second, NewAlert)
    assert first.dedup_key == "alertmanager:5e1c7a9d04b2f3a8"
    assert second.dedup_key == "alertmanager:a03f66b2c91e7d45"
    assert first.summary == "Database server srvdb01 is down"
    assert first.severity is Severity.CRITICAL
    assert first.source == "alertmanager"
    assert first.labels["team"] == "dba" and first.labels["instance"] == "srvdb01:9187"
    # Group labels and the group key travel with each alert, for routing and templates.
    assert first.fields["group_labels"] == {"alertname": "PostgresDown"}
    assert first.fields["group_key"] == payload.groupKey
    assert first.fields["annotations"]["runbook_url"].startswith("https://")  # type: ignore[index]


def test_alertmanager_resolved_closes_by_the_same_key() -> None:
    payload = AlertmanagerPayload.model_validate_json(
        (DATA / "alertmanager_resolved.json").read_text()
    )
    assert from_alertmanager(payload) == [Resolve("alertmanager:5e1c7a9d04b2f3a8", "alertmanager")]


def test_grafana_firing_and_resolved() -> None:
    firing = from_grafana(GrafanaPayload.model_validate(load("grafana_firing.json")))
    (alert,) = firing
    assert isinstance(alert, NewAlert)
    assert alert.dedup_key == "grafana:0f3d29b6e41c8a57"
    assert alert.severity is Severity.WARNING
    assert alert.summary == "Boiler 2 pressure is 8.7 bar (limit 8)"
    assert alert.fields["values"] == {"A": 8.7, "C": 1}
    assert alert.fields["org_id"] == 1
    resolved = from_grafana(GrafanaPayload.model_validate(load("grafana_resolved.json")))
    assert resolved == [Resolve("grafana:0f3d29b6e41c8a57", "grafana")]


def test_alert_without_fingerprint_or_summary_still_has_a_key_and_a_sentence() -> None:
    payload = AlertmanagerPayload.model_validate(
        {
            "status": "firing",
            "alerts": [
                {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "nas-1"}}
            ],
        }
    )
    (alert,) = from_alertmanager(payload, default_severity=Severity.ERROR)
    assert isinstance(alert, NewAlert)
    assert alert.summary == "DiskFull on nas-1"
    assert alert.severity is Severity.ERROR  # no severity label: the configured default
    assert (
        alert.dedup_key
        == f"alertmanager:{label_hash({'alertname': 'DiskFull', 'instance': 'nas-1'})}"
    )
    # The hash does not depend on label order.
    assert label_hash({"b": "2", "a": "1"}) == label_hash({"a": "1", "b": "2"})


def test_control_characters_never_reach_the_summary() -> None:
    payload = AlertmanagerPayload.model_validate(
        {
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "annotations": {"summary": "db down\r\nX-Injected: yes\x00"},
                    "labels": {"severity": "page\n"},
                    "fingerprint": "ab\ncd",
                }
            ],
        }
    )
    (alert,) = from_alertmanager(payload)
    assert isinstance(alert, NewAlert)
    assert alert.summary == "db down X-Injected: yes"
    assert alert.dedup_key == "alertmanager:ab cd"
    assert alert.labels["severity"] == "page"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", Severity.CRITICAL),
        ("Disaster", Severity.CRITICAL),
        (" page ", Severity.CRITICAL),
        ("P2", Severity.ERROR),
        ("average", Severity.ERROR),
        ("warning", Severity.WARNING),
        ("Not classified", Severity.INFO),
        ("info", Severity.INFO),
        ("banana", None),
        (True, None),
        (None, None),
        (3, None),
    ],
)
def test_parse_severity(value: object, expected: Severity | None) -> None:
    assert parse_severity(value) is expected


def test_clean_text_cuts_long_text() -> None:
    assert clean_text("  a\tb  ", 10) == "a b"
    cut = clean_text("x" * 50, 10)
    assert len(cut) == 10 and cut.endswith("…")


def test_alert_in_maps_every_field() -> None:
    alert_in = AlertIn.model_validate(
        {
            "summary": "Pump 3 stopped",
            "severity": "warning",
            "source": "scada",
            "dedup_key": "pump-3",
            "fields": {"bar": 2.5},
            "labels": {"site": "lyon"},
            "team": "ops",
            "policy": "ops-default",
            "kind": "mass",
        }
    )
    new = from_alert_in(alert_in)
    assert new.summary == "Pump 3 stopped" and new.severity is Severity.WARNING
    assert new.source == "scada" and new.dedup_key == "pump-3"
    assert new.fields == {"bar": 2.5} and new.labels == {"site": "lyon"}
    assert new.team == "ops" and new.policy == "ops-default" and new.kind.value == "mass"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"summary": ""},
        {"summary": "   "},
        {"summary": "a\nb"},
        {"summary": "x" * 1001},
        {"summary": 5},
        {"summary": "ok", "severity": "apocalyptic"},
        {"summary": "ok", "source": "has space"},
        {"summary": "ok", "labels": {"1bad": "x"}},
        {"summary": "ok", "labels": {"k": 1}},
        {"summary": "ok", "unexpected": 1},
        {"summary": "ok", "kind": "broadcast"},
    ],
)
def test_alert_in_refuses_bad_input(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AlertIn.model_validate_json(json.dumps(body), strict=True)


def test_alert_in_strict_types() -> None:
    with pytest.raises(ValidationError):
        AlertmanagerPayload.model_validate_json(
            '{"status": "firing", "alerts": [], "truncatedAlerts": "3"}', strict=True
        )
    ok = AlertIn.model_validate_json('{"summary": "ok", "severity": "info"}', strict=True)
    assert ok.severity is Severity.INFO
