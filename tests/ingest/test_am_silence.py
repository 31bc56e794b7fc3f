"""Acknowledge -> silence, resolve -> expire, against a real Alertmanager started by the test
(tests/ingest/alertmanager.py): the alert goes into Alertmanager, comes to voipalert through
Alertmanager's own webhook, is acknowledged through voipalert's API, and the silence is
looked for in Alertmanager's API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ingest.alertmanager import Alertmanager, config_yaml, free_port, start_alertmanager
from tests.ingest.conftest import Api, ApiFactory
from voipalert.clock import SystemClock
from voipalert.ingest.config import AlertmanagerHook, HttpConfig, IngestConfig, SilencerConfig
from voipalert.ingest.metrics import IngestMetrics
from voipalert.ingest.silencer import Silencer
from voipalert.store import Store

HOOK = "/api/v1/hooks/alertmanager"


@dataclass
class Stack:
    api: Api
    am: Alertmanager
    silencer: Silencer
    seen: list[tuple[str, str]]


def host_down(*hosts: str) -> list[dict[str, Any]]:
    return [
        {"labels": {"alertname": "HostDown", "instance": f"{h}:9100", "job": "node"}} for h in hosts
    ]


async def eventually(check: Callable[[], Awaitable[Any]], what: str, seconds: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {what}")


@asynccontextmanager
async def _stack(
    make_api: ApiFactory,
    tmp_path: Path,
    hook: AlertmanagerHook,
    max_tries: int = 8,
    run_silencer: bool = True,
) -> AsyncIterator[Stack]:
    am_port = free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    if hook.url == "AM":
        hook = AlertmanagerHook(
            grouping=hook.grouping, url=am_url, silence_seconds=hook.silence_seconds,
            alert_url="http://voipalert.example.org",
        )  # fmt: skip
    api = await make_api(IngestConfig(http=HttpConfig(alertmanager_hooks={"default": hook})))
    seen: list[tuple[str, str]] = []
    silencer = Silencer(
        api.store, SystemClock(),
        SilencerConfig(
            poll_seconds=0.05, max_tries=max_tries, backoff_first_seconds=0.05,
            reconcile_seconds=0.2,
        ),
        observe=lambda action, result: seen.append((action, result)),
    )  # fmt: skip
    am = await start_alertmanager(
        tmp_path / "am", config_yaml({"voipalert": api.base + HOOK}, api.tokens["trigger"], {}),
        am_port,
    )  # fmt: skip
    task = asyncio.create_task(silencer.run()) if run_silencer else None
    try:
        yield Stack(api, am, silencer, seen)
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        am.stop()


@pytest.fixture
async def stack(make_api: ApiFactory, tmp_path: Path) -> AsyncIterator[Stack]:
    async with _stack(make_api, tmp_path, AlertmanagerHook(url="AM")) as value:
        yield value


async def _open_alert(api: Api) -> dict[str, Any]:
    _, listed, _ = await api.call("GET", "/api/v1/alerts?status=triggered")
    return listed["alerts"][0] if listed["alerts"] else {}


async def test_ack_silences_the_group_and_resolve_expires_it(stack: Stack) -> None:
    api, am = stack.api, stack.am
    async with aiohttp.ClientSession() as session:
        await am.post_alerts(session, host_down("db1", "db2", "db3"))
        alert = await eventually(lambda: _open_alert(api), "Alertmanager's webhook")
        # One alert for the group of three.
        assert alert["summary"].startswith("3 alerts: HostDown on ")
        _, listed, _ = await api.call("GET", "/api/v1/alerts")
        assert len(listed["alerts"]) == 1

        status, acked, _ = await api.call(
            "POST", f"/api/v1/alerts/{alert['id']}/ack", json={"by": "alice"}
        )
        assert status == 200 and acked["alert"]["status"] == "acknowledged"
        stack.silencer.wake()

        async def active_silence() -> Any:
            found = [s for s in await am.silences(session) if s["status"]["state"] == "active"]
            return found[0] if found else None

        silence = await eventually(active_silence, "the silence in Alertmanager")
        assert silence["createdBy"] == "alice"
        assert silence["matchers"] == [
            {"name": "alertname", "value": "HostDown", "isRegex": False, "isEqual": True}
        ]
        assert f"alert {alert['id']}" in silence["comment"]
        assert f"http://voipalert.example.org/api/v1/alerts/{alert['id']}" in silence["comment"]

        # Alertmanager itself now reports the group's alerts as silenced.
        async with session.get(f"{am.url}/api/v2/alerts") as response:
            in_am = await response.json()
        assert {a["status"]["state"] for a in in_am} == {"suppressed"}
        assert {tuple(a["status"]["silencedBy"]) for a in in_am} == {(silence["id"],)}

        await api.call("POST", f"/api/v1/alerts/{alert['id']}/resolve")
        stack.silencer.wake()

        async def expired() -> bool:
            async with session.get(f"{am.url}/api/v2/silence/{silence['id']}") as response:
                return bool((await response.json())["status"]["state"] == "expired")

        await eventually(expired, "the silence expired")
    trail = [e.action for e in await api.store.audit_trail(alert["id"])]
    assert trail.index("alert.acknowledged") < trail.index("alertmanager.silenced")
    assert trail.index("alert.resolved") < trail.index("alertmanager.expired")
    assert stack.seen == [("silence", "ok"), ("expire", "ok")]
    rows = await api.store.outbox_of(alert["id"])
    assert [(r.action, r.state, r.silence_id) for r in rows] == [
        ("silence", "done", silence["id"]),
        ("expire", "done", silence["id"]),
    ]


async def test_a_group_resolved_under_its_silence_resolves_the_alert(stack: Stack) -> None:
    """Alertmanager sends nothing for silenced alerts, not even "resolved": voipalert asks."""
    api, am = stack.api, stack.am
    async with aiohttp.ClientSession() as session:
        await am.post_alerts(session, host_down("web1", "web2"))
        alert = await eventually(lambda: _open_alert(api), "Alertmanager's webhook")
        await api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", json={"by": "bob"})
        stack.silencer.wake()
        await eventually(lambda: _silence_state(api, alert["id"], "done"), "the silence")
        await asyncio.sleep(0.5)  # several checks: still firing, still acknowledged
        fresh = await api.store.get_alert(alert["id"])
        assert fresh is not None and fresh.status.value == "acknowledged"

        ended = [{**a, "endsAt": _now_text()} for a in host_down("web1", "web2")]
        await am.post_alerts(session, ended)

        async def resolved() -> bool:
            fresh = await api.store.get_alert(alert["id"])
            return fresh is not None and fresh.status.value == "resolved"

        await eventually(resolved, "resolved from Alertmanager's alert list")
        await eventually(lambda: _silence_state(api, alert["id"], "done", 1), "the expiry")
        silence_id = (await api.store.outbox_of(alert["id"]))[0].silence_id
        async with session.get(f"{am.url}/api/v2/silence/{silence_id}") as response:
            assert (await response.json())["status"]["state"] == "expired"
    fresh = await api.store.get_alert(alert["id"])
    assert fresh is not None and fresh.resolved_by == "alertmanager"


def _now_text() -> str:
    return SystemClock().now_utc().isoformat()


async def _silence_state(api: Api, alert_id: int, state: str, index: int = 0) -> bool:
    rows = await api.store.outbox_of(alert_id)
    return len(rows) > index and rows[index].state == state


async def test_an_unreachable_alertmanager_never_blocks_the_ack(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    hook = AlertmanagerHook(url=closed)
    async with _stack(make_api, tmp_path, hook, max_tries=3) as stack:
        await _gives_up(stack)


async def _gives_up(stack: Stack) -> None:
    api = stack.api
    async with aiohttp.ClientSession() as session:
        await stack.am.post_alerts(session, host_down("db1"))
        alert = await eventually(lambda: _open_alert(api), "Alertmanager's webhook")
    status, _, _ = await api.call("POST", f"/api/v1/alerts/{alert['id']}/ack")
    assert status == 200  # at once: the silence waits in the outbox

    async def given_up() -> bool:
        rows = await api.store.outbox_of(alert["id"])
        return rows[0].state == "failed"

    await eventually(given_up, "three failed tries")
    [row] = await api.store.outbox_of(alert["id"])
    assert row.tries == 3 and row.last_error and "Connect" in row.last_error
    assert stack.seen == [("silence", "retry"), ("silence", "retry"), ("silence", "failed")]
    trail = [e.action for e in await api.store.audit_trail(alert["id"])]
    assert trail.count("alertmanager.silence_retrying") == 2
    assert trail.count("alertmanager.silence_failed") == 1
    # Resolving it queues no expiry: no silence was made.
    await api.call("POST", f"/api/v1/alerts/{alert['id']}/resolve")
    assert [r.action for r in await api.store.outbox_of(alert["id"])] == ["silence"]
    # The API shows the failed request with the alert.
    _, detail, _ = await api.call("GET", f"/api/v1/alerts/{alert['id']}")
    [request] = detail["silences"]
    assert (request["action"], request["state"], request["tries"]) == ("silence", "failed", 3)
    assert "Connect" in request["last_error"]


async def test_a_silence_queued_before_a_restart_is_made_after_it(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    """The ack commits the request; a silencer started later (a new process, its own
    connection to the database file) makes the silence."""
    async with _stack(make_api, tmp_path, AlertmanagerHook(url="AM"), run_silencer=False) as stack:
        api, am = stack.api, stack.am
        async with aiohttp.ClientSession() as session:
            await am.post_alerts(session, host_down("db1", "db2"))
            alert = await eventually(lambda: _open_alert(api), "Alertmanager's webhook")
            await api.call("POST", f"/api/v1/alerts/{alert['id']}/ack", json={"by": "alice"})
            assert await am.silences(session) == []  # nobody sends it yet
            reopened = await Store.open(api.db_path, SystemClock())
            try:
                later = Silencer(reopened, SystemClock(), SilencerConfig(poll_seconds=0.05))
                assert await later.drain(session) == 1
            finally:
                await reopened.close()
            [made] = await am.silences(session)
            assert made["createdBy"] == "alice" and made["status"]["state"] == "active"


def test_the_payload_chooses_the_alertmanager_only_from_the_allow_list() -> None:
    hook = AlertmanagerHook(
        url="http://am.internal:9093/", allowed_urls=("http://AM-2.internal:9093",)
    )
    assert hook.silence_url(None) == "http://am.internal:9093"
    assert hook.silence_url("http://attacker.example:80") == "http://am.internal:9093"
    assert hook.silence_url("http://am-2.internal:9093/") == "http://am-2.internal:9093"
    assert AlertmanagerHook().silence_url("http://am-2.internal:9093") is None


def test_silence_requests_are_counted_in_metrics() -> None:
    metrics = IngestMetrics(SystemClock())
    metrics.observe_silence("silence", "failed")
    metrics.observe_silence("silence", "ok")
    text = metrics.render().decode()
    assert (
        'voipalert_alertmanager_silence_requests_total{action="silence",result="failed"} 1.0'
        in text
    )
