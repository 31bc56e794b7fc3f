"""Alertmanager groups: one voipalert alert (and one call) per group by default, its message
summarising the group, refreshed without a new call as the group changes, closed by the
group's "resolved"."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any

import pytest

from tests.ingest.conftest import Api, ApiFactory
from tests.scripted_notifier import Hold, ScriptedNotifier
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertStatus, Severity
from voipalert.engine import Engine, EngineConfig
from voipalert.ingest.convert import (
    GROUP_SUMMARY_CHARS,
    Grouping,
    Resolve,
    alertmanager_events,
    group_summary,
)
from voipalert.ingest.schemas import AlertmanagerAlert, AlertmanagerPayload
from voipalert.store import Store

AM = "/api/v1/hooks/alertmanager"


def am_alert(name: str, instance: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "instance": instance, "job": "node", **labels},
        "annotations": {},
        "startsAt": "2026-03-29T00:58:12.311Z",
        "fingerprint": f"fp-{name}-{instance}",
    }


def group(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HostDown"}',
        "status": status,
        "receiver": "voipalert",
        "groupLabels": {"alertname": "HostDown"},
        "commonLabels": {"alertname": "HostDown", "job": "node"},
        "externalURL": "http://alertmanager.example.org:9093",
        "alerts": list(alerts),
    }


THREE = group(
    am_alert("HostDown", "db1:9100"), am_alert("HostDown", "db2:9100"),
    am_alert("HostDown", "db3:9100"),
)  # fmt: skip


# ------------------------------------------------------------------ the pure conversion


def test_group_summary_names_the_group() -> None:
    payload = AlertmanagerPayload.model_validate(THREE)
    assert group_summary(payload.alerts) == "3 alerts: HostDown on db1, db2, db3"


def test_group_summary_is_bounded_and_counts_the_rest() -> None:
    alerts = [
        AlertmanagerAlert.model_validate(am_alert(f"Alert{i % 3}", f"host-{i}.example.org"))
        for i in range(40)
    ]
    text = group_summary(alerts, truncated=5)
    assert text.startswith("45 alerts: Alert0 on host-0.example.org, host-3.example.org, ")
    assert "and 10 more" in text
    assert len(text) <= GROUP_SUMMARY_CHARS


def test_a_group_of_one_says_the_alert_itself() -> None:
    one = am_alert("HostDown", "db1:9100")
    one["annotations"] = {"summary": "Host db1 is down"}
    payload = AlertmanagerPayload.model_validate(group(one))
    assert group_summary(payload.alerts) == "Host db1 is down"


def test_one_event_per_group_keyed_by_group_key() -> None:
    mixed = group(
        am_alert("HostDown", "db1:9100", severity="warning"),
        am_alert("HostDown", "db2:9100", severity="critical"),
        am_alert("HostDown", "db3:9100", status="resolved"),
    )
    [event] = alertmanager_events(AlertmanagerPayload.model_validate(mixed))
    new = event.event
    assert not isinstance(new, Resolve)
    assert new.summary == "2 alerts: HostDown on db1, db2"  # the resolved one is not said
    assert new.severity is Severity.CRITICAL and new.refresh
    assert new.dedup_key is not None and new.dedup_key.startswith("alertmanager:group:")
    assert event.matchers == {"alertname": "HostDown"}  # a silence matches the group
    [closed] = alertmanager_events(
        AlertmanagerPayload.model_validate({**mixed, "status": "resolved"})
    )
    assert closed.event == Resolve(new.dedup_key, "alertmanager")


def test_per_alert_grouping_keys_each_fingerprint() -> None:
    events = alertmanager_events(AlertmanagerPayload.model_validate(THREE), grouping=Grouping.ALERT)
    assert [e.event.dedup_key for e in events] == [
        "alertmanager:fp-HostDown-db1:9100",
        "alertmanager:fp-HostDown-db2:9100",
        "alertmanager:fp-HostDown-db3:9100",
    ]
    assert events[0].matchers["instance"] == "db1:9100"  # the raw labels, for a silence


# ------------------------------------------------------------------ through the engine


@pytest.fixture
async def running(
    store: Store, make_api: ApiFactory
) -> AsyncIterator[tuple[Api, ScriptedNotifier]]:
    """The API and the real engine over one store; alice's calls ring until stopped."""
    notifier = ScriptedNotifier({"alice": [Hold(), Hold(), Hold()]})
    engine = Engine(store, notifier, SystemClock(), EngineConfig(idle_poll_seconds=0.02))
    task = asyncio.create_task(engine.run())
    try:
        yield await make_api(), notifier
    finally:
        await engine.shutdown()
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for: {what}")


async def test_three_alerts_of_one_group_make_one_alert_and_one_call(
    running: tuple[Api, ScriptedNotifier],
) -> None:
    api, notifier = running
    status, reply, _ = await api.call("POST", AM, token="trigger", json=THREE)
    assert status == 202, reply
    [result] = reply["results"]
    assert result["action"] == "created"
    alert_id = result["id"]

    async def one_call() -> bool:
        return len(notifier.calls) >= 1

    await eventually(one_call, "the call")
    await asyncio.sleep(0.2)  # several engine ticks: no second call appears
    assert [n.person for n in notifier.calls] == ["alice"]
    assert notifier.calls[0].fields["summary"] == "3 alerts: HostDown on db1, db2, db3"

    # The group grows: same alert, new text, still one call.
    grown = copy.deepcopy(THREE)
    grown["alerts"].append(am_alert("HostDown", "db4:9100"))
    _, reply, _ = await api.call("POST", AM, token="trigger", json=grown)
    assert reply["results"] == [
        {"dedup_key": result["dedup_key"], "action": "joined", "id": alert_id}
    ]
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{alert_id}")
    assert detail["summary"] == "4 alerts: HostDown on db1, db2, db3, db4"
    assert detail["occurrences"] == 2 and detail["fields"]["firing"] == 4
    await asyncio.sleep(0.2)
    assert len(notifier.calls) == 1
    _, listed, _ = await api.call("GET", "/api/v1/alerts")
    assert [a["id"] for a in listed["alerts"]] == [alert_id]
    actions = [e.action for e in await api.store.audit_trail(alert_id)]
    assert "alert.updated" in actions

    # The group's "resolved" closes it and stops the ringing call.
    resolved = group(*(dict(a, status="resolved") for a in grown["alerts"]), status="resolved")
    _, reply, _ = await api.call("POST", AM, token="trigger", json=resolved)
    assert reply["results"][0]["action"] == "resolved"

    async def stopped() -> bool:
        return len(notifier.cancelled) == 1

    await eventually(stopped, "the call stopped")
    fresh = await api.store.get_alert(alert_id)
    assert fresh is not None and fresh.status is AlertStatus.RESOLVED
