"""The REST API end to end over loopback: good and bad input on every alert endpoint,
probes and metrics, against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.ingest.conftest import Api, ApiFactory
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertId, AttemptKey, AttemptOutcome, AttemptResult
from voipalert.domain.policy import PlaceCall
from voipalert.domain.rota import Contact, ContactKind, Person, PersonName
from voipalert.ingest.config import HttpConfig, IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Store, StoreConfig

ALERTS = "/api/v1/alerts"


def row_in_file(db: Path, alert_id: int) -> sqlite3.Row | None:
    """The alert as a separate connection to the SQLite file sees it (committed data only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()  # type: ignore[no-any-return]
    finally:
        conn.close()


async def test_create_is_committed_before_the_202(api: Api) -> None:
    status, body, response = await api.call(
        "POST",
        ALERTS,
        token="trigger",
        json={"summary": "Database srvdb01 down", "dedup_key": "k1"},
    )
    assert status == 202, body
    # The client holds the 202: a separate connection to the file must already see the row.
    row = row_in_file(api.db_path, body["id"])
    assert row is not None and row["summary"] == "Database srvdb01 down"
    assert response.headers["Location"] == f"{ALERTS}/{body['id']}"
    assert body == {"id": body["id"], "status": "triggered", "created": True, "occurrences": 1}
    assert api.woken == [1]  # the engine was told
    # No team given: the rota's routes chose (database -> dba).
    _, detail, _ = await api.call("GET", f"{ALERTS}/{body['id']}")
    assert detail["team"] == "dba" and detail["policy"] == "dba-default"


async def test_replayed_dedup_key_joins_the_open_alert(api: Api) -> None:
    first = await api.call(
        "POST", ALERTS, token="trigger", json={"summary": "pump", "dedup_key": "p3"}
    )
    again = await api.call(
        "POST", ALERTS, token="trigger", json={"summary": "pump", "dedup_key": "p3"}
    )
    assert first[0] == again[0] == 202
    assert again[1]["id"] == first[1]["id"]
    assert again[1]["created"] is False and again[1]["occurrences"] == 2
    assert api.woken == [1]  # a repeat does not need the engine
    # Once resolved, the key is free: the next trigger is a new alert.
    await api.call("POST", f"{ALERTS}/{first[1]['id']}/resolve")
    third = await api.call(
        "POST", ALERTS, token="trigger", json={"summary": "pump", "dedup_key": "p3"}
    )
    assert third[1]["created"] is True and third[1]["id"] != first[1]["id"]


async def test_many_concurrent_repeats_make_one_alert(api: Api) -> None:
    results = await asyncio.gather(
        *(
            api.call("POST", ALERTS, token="trigger", json={"summary": "flap", "dedup_key": "same"})
            for _ in range(40)
        )
    )
    ids = {body["id"] for status, body, _ in results if status == 202}
    assert len(ids) == 1
    assert sum(body["created"] for _, body, _ in results) == 1
    _, detail, _ = await api.call("GET", f"{ALERTS}/{ids.pop()}")
    assert detail["occurrences"] == 40


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "summary"),
        ({"summary": ""}, "summary"),
        ({"summary": 42}, "summary"),
        ({"summary": ["a"]}, "summary"),
        ({"summary": "x", "severity": "apocalyptic"}, "severity"),
        ({"summary": "x", "severity": 1}, "severity"),
        ({"summary": "x", "labels": {"k": 5}}, "labels.k"),
        ({"summary": "x", "labels": "a=b"}, "labels"),
        ({"summary": "x", "fields": []}, "fields"),
        ({"summary": "x", "dedup_key": ""}, "dedup_key"),
        ({"summary": "x", "kind": "broadcast"}, "kind"),
        ({"summary": "x", "surprise": True}, "surprise"),
        ({"summary": "x", "team": "nosuchteam"}, "team"),
        ({"summary": "x", "policy": "nosuchpolicy"}, "policy"),
        ({"summary": "x", "kind": "mass"}, "team"),
    ],
)
async def test_create_refuses_bad_fields_with_422(api: Api, body: object, field: str) -> None:
    status, reply, _ = await api.call("POST", ALERTS, token="trigger", json=body)
    assert status == 422, reply
    assert reply["error"] == "invalid_body"
    assert field in [d["field"] for d in reply["details"]], reply


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{not json",
        b'{"summary": "x"',
        b'{"summary": NaN}',
        b'{"summary": "x", "fields": {"n": 1e999}}',
        b'{"summary": "\\ud800"}',
        b"\xff\xfe\x00",
        b"[" * 100 + b"]" * 100,
        json.dumps(
            {
                "summary": "x",
                "fields": {
                    "a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
                },
            }
        ).encode(),
    ],
)
async def test_create_refuses_what_is_not_json_with_400(api: Api, raw: bytes) -> None:
    status, reply, _ = await api.call(
        "POST", ALERTS, token="trigger", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 400, reply
    assert reply["error"] == "invalid_json"
    assert await api.store.list_alerts() is not None
    assert (await api.store.list_alerts()).alerts == ()


async def test_json_array_and_scalars_are_422(api: Api) -> None:
    for raw in (b"[]", b"3", b'"summary"', b"null"):
        status, reply, _ = await api.call("POST", ALERTS, token="trigger", data=raw)
        assert status == 422, (raw, reply)


async def test_huge_bodies_are_413(make_api: ApiFactory) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(max_body_bytes=4096)))
    big = {"summary": "x", "fields": {"blob": "y" * 10_000}}
    status, reply, _ = await api.call("POST", ALERTS, token="trigger", json=big)
    assert status == 413 and reply["error"] == "body_too_large"

    async def chunks() -> object:  # no Content-Length: refused while reading
        for _ in range(20):
            yield b" " * 1024

    status, reply, _ = await api.call("POST", ALERTS, token="trigger", data=chunks())
    assert status == 413, reply
    # Under the limit still works.
    status, _, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "small"})
    assert status == 202


async def test_unicode_summary_round_trips(api: Api) -> None:
    summary = "Température chaudière 2 : 98 °C — 危险"
    status, body, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": summary})
    assert status == 202
    _, detail, _ = await api.call("GET", f"{ALERTS}/{body['id']}", token="reader")
    assert detail["summary"] == summary


async def _alert_with_attempt(api: Api) -> int:
    _, body, _ = await api.call(
        "POST",
        ALERTS,
        token="trigger",
        json={"summary": "Boiler", "team": "ops", "policy": "ops-default"},
    )
    alert_id = body["id"]
    alice = Person(PersonName("alice"), "en", (Contact(ContactKind.EXTENSION, "201"),))
    call = PlaceCall(
        AttemptKey(AlertId(alert_id), 0, 0, alice.name, 1), alice, 0, alice.contacts[0], 30
    )
    attempt = await api.store.record_intent(call)
    assert attempt is not None
    assert await api.store.start_attempt(attempt.id)
    now = SystemClock().now_utc()
    result = AttemptResult(
        AttemptOutcome.NO_ANSWER, ended_at=now, sip_status=487, sip_reason="Request Terminated"
    )
    await api.store.finish_attempt(attempt.id, result)
    return int(alert_id)


async def test_get_alert_shows_every_attempt(api: Api) -> None:
    alert_id = await _alert_with_attempt(api)
    status, detail, _ = await api.call("GET", f"{ALERTS}/{alert_id}", token="reader")
    assert status == 200
    assert detail["team"] == "ops" and detail["policy"] == "ops-default"
    (attempt,) = detail["attempts"]
    assert attempt["person"] == "alice"
    assert attempt["contact"] == {"kind": "extension", "address": "201"}
    assert attempt["state"] == "done" and attempt["outcome"] == "no_answer"
    assert attempt["sip_status"] == 487 and attempt["sip_reason"] == "Request Terminated"
    assert attempt["started_at"] is not None and attempt["ended_at"] is not None


@pytest.mark.parametrize("path", [f"{ALERTS}/999", f"{ALERTS}/0", f"{ALERTS}/99999999999999999999"])
async def test_unknown_alert_is_404(api: Api, path: str) -> None:
    status, reply, _ = await api.call("GET", path)
    assert status == 404 and reply["error"] == "not_found"


async def test_list_filters_and_pages(api: Api) -> None:
    ids = []
    for n in range(7):
        team = "dba" if n % 2 else "ops"
        _, body, _ = await api.call(
            "POST", ALERTS, token="trigger", json={"summary": f"a{n}", "team": team}
        )
        ids.append(body["id"])
    await api.call("POST", f"{ALERTS}/{ids[0]}/ack")
    status, page, _ = await api.call("GET", f"{ALERTS}?limit=3", token="reader")
    assert status == 200
    assert [a["id"] for a in page["alerts"]] == ids[::-1][:3]  # newest first
    status, page2, _ = await api.call(
        "GET", f"{ALERTS}?limit=3&before_id={page['next_before_id']}", token="reader"
    )
    assert [a["id"] for a in page2["alerts"]] == ids[::-1][3:6]
    _, by_team, _ = await api.call("GET", f"{ALERTS}?team=dba", token="reader")
    assert {a["team"] for a in by_team["alerts"]} == {"dba"} and len(by_team["alerts"]) == 3
    _, acked, _ = await api.call("GET", f"{ALERTS}?status=acknowledged", token="reader")
    assert [a["id"] for a in acked["alerts"]] == [ids[0]]
    _, both, _ = await api.call(
        "GET", f"{ALERTS}?status=acknowledged&status=triggered", token="reader"
    )
    assert len(both["alerts"]) == 7
    future = (SystemClock().now_utc() + timedelta(hours=1)).isoformat()
    _, none, _ = await api.call("GET", ALERTS, token="reader", params={"since": future})
    assert none["alerts"] == [] and none["next_before_id"] is None
    _, by_source, _ = await api.call(
        "GET", f"{ALERTS}?source=api&since=2020-01-01T00:00:00Z", token="reader"
    )
    assert len(by_source["alerts"]) == 7


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=open", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("before_id=0", "before_id"),
        ("since=yesterday", "since"),
        ("since=2026-01-01", "since"),
        ("since=2026-01-01T00:00:00", "since"),
        ("since=2026-02-30T00:00:00Z", "since"),
        ("team=", "team"),
        ("source=" + "s" * 65, "source"),
    ],
)
async def test_list_refuses_bad_queries(api: Api, query: str, field: str) -> None:
    status, reply, _ = await api.call("GET", f"{ALERTS}?{query}", token="reader")
    assert status == 422, reply
    assert reply["details"][0]["field"] == field


async def test_ack_and_resolve_are_audited_with_the_token_name(api: Api) -> None:
    _, body, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
    alert_id = body["id"]
    woken = len(api.woken)
    status, reply, _ = await api.call("POST", f"{ALERTS}/{alert_id}/ack", token="admin")
    assert status == 200 and reply["changed"] is True
    assert reply["alert"]["status"] == "acknowledged"
    assert reply["alert"]["acknowledged_by"] == "admin"
    assert reply["alert"]["acknowledged_via"] == "api"
    assert len(api.woken) == woken + 1
    again = await api.call("POST", f"{ALERTS}/{alert_id}/ack", token="admin")
    assert again[0] == 200 and again[1]["changed"] is False
    status, reply, _ = await api.call("POST", f"{ALERTS}/{alert_id}/resolve", token="admin")
    assert status == 200 and reply["alert"]["status"] == "resolved"
    assert reply["alert"]["resolved_by"] == "admin"
    status, reply, _ = await api.call("POST", f"{ALERTS}/{alert_id}/ack", token="admin")
    assert status == 409 and reply["error"] == "conflict"
    second = await api.call("POST", f"{ALERTS}/{alert_id}/resolve", token="admin")
    assert second[0] == 200 and second[1]["changed"] is False
    trail = await api.store.audit_trail(alert_id)
    actions = [(e.action, e.actor) for e in trail]
    assert ("alert.acknowledged", "admin") in actions
    assert ("alert.resolved", "admin") in actions
    for verb in ("ack", "resolve"):
        status, reply, _ = await api.call("POST", f"{ALERTS}/424242/{verb}")
        assert status == 404


async def test_ack_may_name_the_person_and_both_are_audited_and_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    _, body, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
    alert_id = body["id"]
    with caplog.at_level(logging.INFO, logger="voipalert.http"):
        status, reply, _ = await api.call(
            "POST", f"{ALERTS}/{alert_id}/ack", token="admin", json={"by": "alice"}
        )
    assert status == 200 and reply["alert"]["acknowledged_by"] == "alice"
    (entry,) = [
        e for e in await api.store.audit_trail(alert_id) if e.action == "alert.acknowledged"
    ]
    assert entry.actor == "alice" and entry.detail["token"] == "admin"
    (line,) = [r for r in caplog.records if "acknowledged through the API" in r.getMessage()]
    assert "alice (token admin)" in line.getMessage()
    assert (line.__dict__["token"], line.__dict__["person"]) == ("admin", "alice")
    with caplog.at_level(logging.INFO, logger="voipalert.http"):
        await api.call("POST", f"{ALERTS}/{alert_id}/resolve", token="admin")
    assert any("resolved through the API by token admin" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"by": "mallory"}, "by"),  # not in the rota: nobody may be made to own an incident
        ({"by": ""}, "by"),
        ({"by": "x" * 101}, "by"),
        ({"by": "alice", "extra": 1}, "extra"),
    ],
)
async def test_ack_refuses_a_person_outside_the_rota(
    api: Api, body: dict[str, object], field: str
) -> None:
    _, created, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
    status, reply, _ = await api.call(
        "POST", f"{ALERTS}/{created['id']}/ack", token="admin", json=body
    )
    assert status == 422, reply
    assert field in str(reply["details"])
    detail = await api.store.get_alert(created["id"])
    assert detail is not None and detail.status.value == "triggered"  # nothing changed


async def test_unknown_routes_and_methods_are_json(api: Api) -> None:
    status, reply, response = await api.call("GET", "/api/v1/nothing")
    assert status == 404 and reply["error"] == "not_found"
    assert response.content_type == "application/json"
    status, reply, response = await api.call("DELETE", ALERTS)
    assert status == 405 and reply["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"] and "GET" in response.headers["Allow"]
    status, _, _ = await api.call("PUT", f"{ALERTS}/1/ack")
    assert status == 405
    status, _, _ = await api.call("GET", f"{ALERTS}/abc")
    assert status == 404


async def test_healthz_and_readyz(api: Api) -> None:
    status, body, _ = await api.call("GET", "/healthz", token=None)
    assert status == 200 and body == {"status": "ok"}
    status, body, _ = await api.call("GET", "/readyz", token=None)
    assert status == 200 and body == {
        "ready": True, "status": "ok", "database": "ok", "sip": "registered", "degraded": [],
        "rota_sources": {},  # no schedule has a live source
        "trunks": {},  # the composition root lists them (tests/ingest/test_trunk_health.py)
    }  # fmt: skip
    api.sip.append(SipState.FAILED)
    status, body, _ = await api.call("GET", "/readyz", token=None)
    assert status == 503 and body["ready"] is False and body["sip"] == "failed"
    assert body["status"] == "not ready"
    api.sip.append(SipState.NOT_CONFIGURED)  # calling targets directly needs no registrar
    status, body, _ = await api.call("GET", "/readyz", token=None)
    assert status == 200 and body["sip"] == "not_configured"


async def test_readyz_reports_a_database_it_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = await Store.open(path, SystemClock(), StoreConfig(busy_timeout_ms=100))
    app = build_app(
        store,
        wake=lambda: None,
        sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(),
        clock=SystemClock(),
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        async with aiohttp.ClientSession() as session:
            # A damaged database (its table gone under it) is reported, not a 500.
            blocker.executescript("ALTER TABLE meta RENAME TO meta_away; ")
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                body = await response.json()
                assert response.status == 503 and body["ready"] is False
                assert body["database"].startswith("not readable")
            blocker.executescript("ALTER TABLE meta_away RENAME TO meta;")
            async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                assert response.status == 200 and (await response.json())["database"] == "ok"
    finally:
        blocker.close()
        await runner.cleanup()
        await store.close()


async def test_metrics(api: Api) -> None:
    await _alert_with_attempt(api)
    await api.call("POST", ALERTS, token="trigger", json={"summary": "m", "dedup_key": "m"})
    await api.call("POST", ALERTS, token="trigger", json={"summary": "m", "dedup_key": "m"})
    status, text, response = await api.call("GET", "/metrics", token=None)
    assert status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    lines = set(text.splitlines())
    assert 'voipalert_alerts{state="triggered"} 2.0' in lines
    assert 'voipalert_alerts{state="resolved"} 0.0' in lines
    assert 'voipalert_calls_total{outcome="no_answer"} 1.0' in lines
    assert 'voipalert_sip_registration{state="registered"} 1.0' in lines
    assert 'voipalert_sip_registration{state="failed"} 0.0' in lines
    assert 'voipalert_triggers_total{outcome="created",source="api"} 2.0' in lines
    assert 'voipalert_triggers_total{outcome="joined",source="api"} 1.0' in lines
    assert 'voipalert_trigger_seconds_count{edge="api"} 3.0' in lines
    assert 'voipalert_call_setup_seconds_count{outcome="no_answer"} 1.0' in lines
    # A second scrape does not observe the same call twice.
    _, text, _ = await api.call("GET", "/metrics", token=None)
    assert 'voipalert_call_setup_seconds_count{outcome="no_answer"} 1.0' in text.splitlines()


async def test_two_apps_have_separate_registries(make_api: ApiFactory) -> None:
    first = await make_api()
    second = await make_api()
    await first.call("POST", ALERTS, token="trigger", json={"summary": "only in first"})
    _, text, _ = await second.call("GET", "/metrics", token=None)
    assert 'voipalert_triggers_total{outcome="created",source="api"}' not in text


async def test_openapi_document_is_served(api: Api) -> None:
    status, doc, _ = await api.call("GET", "/api/v1/openapi.json", token=None)
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {
        ALERTS,
        f"{ALERTS}/{{id}}",
        f"{ALERTS}/{{id}}/ack",
        f"{ALERTS}/{{id}}/resolve",
        "/api/v1/hooks/alertmanager",
        "/api/v1/hooks/grafana",
        "/api/v1/hooks/generic/{name}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "AlertIn" in doc["components"]["schemas"]


def _raw_post(api: Api, body: bytes, content_length: int | None = None) -> bytes:
    """A whole POST of ``body`` to the alerts endpoint, as bytes on the wire."""
    length = len(body) if content_length is None else content_length
    return (
        f"POST {ALERTS} HTTP/1.1\r\nHost: {api.base.removeprefix('http://')}\r\n"
        f"Authorization: Bearer {api.tokens['trigger']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode() + body


async def _alerts_when(api: Api, count: int) -> list[str]:
    """The stored alerts' summaries once there are ``count`` of them (10 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        alerts = (await api.store.list_alerts()).alerts
        if len(alerts) >= count or loop.time() > deadline:
            return sorted(f"{a.summary} x{a.occurrences}" for a in alerts)
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("hang_up", ["close", "half-close"])
async def test_a_complete_request_whose_sender_hangs_up_is_committed(
    api: Api, hang_up: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Senders that write a whole request and go (a client timeout shorter than our commit,
    a script that does not wait): each alert is committed exactly once. aiohttp marks the
    body failed when the connection goes even if it had all arrived; without
    ``json_http._received_whole`` these were 400s nobody read, and the alerts were lost."""
    caplog.set_level(logging.WARNING, logger="voipalert.http")
    port = int(api.base.rsplit(":", 1)[1])
    for n in range(5):
        body = json.dumps({"summary": f"hangup {n}", "dedup_key": f"h{n}"}).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_raw_post(api, body))
        await writer.drain()
        if hang_up == "half-close":
            # aiohttp closes on the client's FIN (no half-closed connections): no answer.
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
        await writer.wait_closed()
    assert await _alerts_when(api, 5) == [f"hangup {n} x1" for n in range(5)]
    assert [r.getMessage() for r in caplog.records if "aborted" in r.getMessage()] == []
    status, _, _ = await api.call("GET", "/healthz", token=None)
    assert status == 200


async def test_a_sender_that_hangs_up_mid_body_stores_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a body (Content-Length says more) and a close: a 400 ``aborted`` in the log,
    nothing stored, the server fine."""
    caplog.set_level(logging.WARNING, logger="voipalert.http")
    port = int(api.base.rsplit(":", 1)[1])
    body = json.dumps({"summary": "half", "dedup_key": "half"}).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_raw_post(api, body[:20], content_length=len(body)))
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not any("aborted" in r.getMessage() for r in caplog.records):
        assert loop.time() < deadline, "the half body was never refused"
        await asyncio.sleep(0.02)
    assert (await api.store.list_alerts()).alerts == ()
    status, _, _ = await api.call("GET", "/healthz", token=None)
    assert status == 200
