"""Alertmanager, Grafana and generic webhooks over loopback, with the real payloads of
tests/data/ingest/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.ingest.conftest import Api, ApiFactory
from voipalert.domain.alert import AlertId, AttemptKey, AttemptState
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Contact, ContactKind, Person, PersonName
from voipalert.ingest.config import AlertmanagerHook, HttpConfig, IngestConfig
from voipalert.ingest.convert import Grouping
from voipalert.ingest.mapping import GenericMapping

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"
AM = "/api/v1/hooks/alertmanager"
GRAFANA = "/api/v1/hooks/grafana"


def payload(name: str) -> Any:
    return json.loads((DATA / name).read_text())


PER_ALERT = IngestConfig(
    http=HttpConfig(alertmanager_hooks={"default": AlertmanagerHook(grouping=Grouping.ALERT)})
)


async def test_alertmanager_firing_then_resolved(make_api: ApiFactory) -> None:
    # Per-alert keys (grouping = "alert"); the default, one alert per group, is tested in
    # tests/ingest/test_am_grouping.py.
    api = await make_api(PER_ALERT)
    status, reply, _ = await api.call(
        "POST", AM, token="trigger", json=payload("alertmanager_firing.json")
    )
    assert status == 202, reply
    results = reply["results"]
    assert [r["action"] for r in results] == ["created", "created"]
    assert [r["dedup_key"] for r in results] == [
        "alertmanager:5e1c7a9d04b2f3a8",
        "alertmanager:a03f66b2c91e7d45",
    ]
    first_id = results[0]["id"]
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{first_id}")
    assert detail["summary"] == "Database server srvdb01 is down"
    assert detail["source"] == "alertmanager" and detail["labels"]["team"] == "dba"
    assert detail["fields"]["group_labels"] == {"alertname": "PostgresDown"}
    assert detail["team"] == "dba"  # the rota routes "database" summaries to dba

    # Alertmanager repeats a firing group every repeat_interval: joins, nothing new.
    _, again, _ = await api.call(
        "POST", AM, token="trigger", json=payload("alertmanager_firing.json")
    )
    assert [r["action"] for r in again["results"]] == ["joined", "joined"]
    assert [r["id"] for r in again["results"]] == [r["id"] for r in results]

    # A call is pending for srvdb01 when the resolved notification arrives.
    alice = Person(PersonName("alice"), "en", (Contact(ContactKind.EXTENSION, "201"),))
    pending = await api.store.record_intent(
        PlaceCall(
            AttemptKey(AlertId(first_id), 0, 0, alice.name, 1), alice, 0, alice.contacts[0], 30
        )
    )
    assert pending is not None
    woken = len(api.woken)
    status, reply, _ = await api.call(
        "POST", AM, token="trigger", json=payload("alertmanager_resolved.json")
    )
    assert status == 202
    assert reply["results"] == [
        {"dedup_key": "alertmanager:5e1c7a9d04b2f3a8", "action": "resolved", "id": first_id}
    ]
    assert len(api.woken) == woken + 1
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{first_id}")
    assert detail["status"] == "resolved" and detail["resolved_by"] == "alertmanager"
    assert [a["state"] for a in detail["attempts"]] == [AttemptState.CANCELLED.value]
    # The other alert of the group is still open.
    _, other, _ = await api.call("GET", f"/api/v1/alerts/{results[1]['id']}")
    assert other["status"] == "triggered"
    # A resolved replay finds nothing open.
    _, replay, _ = await api.call(
        "POST", AM, token="trigger", json=payload("alertmanager_resolved.json")
    )
    assert replay["results"][0]["action"] == "not_open" and replay["results"][0]["id"] is None


async def test_grafana_firing_then_resolved(api: Api) -> None:
    status, reply, _ = await api.call(
        "POST", GRAFANA, token="trigger", json=payload("grafana_firing.json")
    )
    assert status == 202, reply
    (created,) = reply["results"]
    assert created["action"] == "created" and created["dedup_key"] == "grafana:0f3d29b6e41c8a57"
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{created['id']}")
    assert detail["severity"] == "warning"
    assert detail["fields"]["values"] == {"A": 8.7, "C": 1}
    assert detail["team"] == "ops"  # the rota's default route
    status, reply, _ = await api.call(
        "POST", GRAFANA, token="trigger", json=payload("grafana_resolved.json")
    )
    assert reply["results"][0]["action"] == "resolved"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "status"),
        ({"status": "firing"}, "alerts"),
        ({"status": "burning", "alerts": []}, "status"),
        ({"status": "firing", "alerts": [{"labels": {}}]}, "alerts.0.status"),
        (
            {"status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}}]},
            "alerts.0.labels.a",
        ),
        ({"status": "firing", "alerts": {}}, "alerts"),
        ({"status": "firing", "alerts": [], "truncatedAlerts": "0"}, "truncatedAlerts"),
        (
            {"status": "firing", "alerts": [{"status": "firing", "fingerprint": "f" * 300}]},
            "alerts.0.fingerprint",
        ),
    ],
)
async def test_bad_alertmanager_payloads_are_422(api: Api, body: Any, field: str) -> None:
    for path in (AM, GRAFANA):
        status, reply, _ = await api.call("POST", path, token="trigger", json=body)
        assert status == 422, reply
        assert field in [d["field"] for d in reply["details"]], reply


async def test_hooks_refuse_non_json(api: Api) -> None:
    for path in (AM, GRAFANA, "/api/v1/hooks/generic/x"):
        status, reply, _ = await api.call("POST", path, token="trigger", data=b"status=firing")
        assert status in (400, 404), reply
        assert reply["error"] in ("invalid_json", "not_found")


UPTIME = GenericMapping(
    summary="monitor.name",
    dedup_key="monitor.id",
    resolved="heartbeat.status",
    resolved_values=("1",),
    source="generic:uptime",
)


async def test_generic_hook(make_api: ApiFactory) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(generic_hooks={"uptime": UPTIME})))
    down = {"heartbeat": {"status": 0}, "monitor": {"id": 7, "name": "Portal is down"}}
    path = "/api/v1/hooks/generic/uptime"
    status, reply, _ = await api.call("POST", path, token="trigger", json=down)
    assert status == 202, reply
    (created,) = reply["results"]
    assert created["action"] == "created" and created["dedup_key"] == "7"
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{created['id']}")
    assert detail["source"] == "generic:uptime" and detail["fields"]["body"] == down
    up = {"heartbeat": {"status": 1}, "monitor": {"id": 7, "name": "Portal is down"}}
    _, reply, _ = await api.call("POST", path, token="trigger", json=up)
    assert reply["results"][0]["action"] == "resolved"
    status, reply, _ = await api.call("POST", path, token="trigger", json={"monitor": {}})
    assert status == 422 and reply["details"][0]["field"] == "summary"
    status, reply, _ = await api.call(
        "POST", "/api/v1/hooks/generic/nope", token="trigger", json=down
    )
    assert status == 404
    status, reply, _ = await api.call("POST", path, token="trigger", data=b"[1,")
    assert status == 400
