"""Attacks on the HTTP edge, each performed on loopback against the real aiohttp app and a
real SQLite file, with the legitimate request beside it: replayed and forged signatures,
oversized numbers, aborted uploads, a flood of made-up sources, an unauthenticated write
amplifier, and the trace every refused trigger must leave."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ingest.conftest import Api, ApiFactory
from tests.ingest.test_auth import AM, FIRING, now_stamp, signed
from voipalert.clock import SystemClock
from voipalert.ingest.config import HttpConfig, IngestConfig
from voipalert.ingest.log_budget import LogBudget
from voipalert.ingest.metrics import MAX_SOURCES
from voipalert.ingest.replay import ReplayCache, Seen
from voipalert.ingest.tokens import sign
from voipalert.store import Store

ALERTS = "/api/v1/alerts"
BODY = json.dumps(FIRING).encode()


async def sample(api: Api, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when the series does not exist)."""
    _, text, _ = await api.call("GET", "/metrics", token=None)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def rejected(caplog: pytest.LogCaptureFixture, reason: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "voipalert.http"
        and r.levelno == logging.WARNING
        and getattr(r, "reason", None) == reason
    ]


# ------------------------------------------------------------------ replay


async def test_a_replayed_signed_webhook_is_refused_and_counted(api: Api) -> None:
    headers = signed(api, BODY)
    status, reply, _ = await api.call("POST", AM, token=None, data=BODY, headers=headers)
    assert status == 202, reply
    first = reply["results"][0]["id"]
    # The attacker captured the request and sends it again, byte for byte...
    status, reply, _ = await api.call("POST", AM, token=None, data=BODY, headers=headers)
    assert status == 401 and "already received" in reply["message"]
    # ...or with the signature in another case or without its "sha256=" prefix.
    for variant in (headers["X-Voipalert-Signature"].upper(), headers["X-Voipalert-Signature"][7:]):
        again = {**headers, "X-Voipalert-Signature": variant}
        status, _, _ = await api.call("POST", AM, token=None, data=BODY, headers=again)
        assert status == 401
    assert (
        await sample(
            api, "voipalert_triggers_rejected_total", edge="alertmanager", reason="replayed"
        )
        == 3.0
    )
    # Only one alert occurrence came of it.
    detail = (await api.call("GET", f"{ALERTS}/{first}"))[1]
    assert detail["occurrences"] == 1
    # The sender's next, freshly signed notification still goes through.
    status, _, _ = await api.call(
        "POST", AM, token=None, data=BODY + b" ", headers=signed(api, BODY + b" ")
    )
    assert status == 202


async def test_without_required_timestamps_replays_are_still_caught_in_the_window(
    make_api: ApiFactory,
) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(require_signature_timestamp=False)))
    bare = signed(api, BODY, **{"X-Voipalert-Timestamp": ""})
    assert (await api.call("POST", AM, token=None, data=BODY, headers=bare))[0] == 202
    assert (await api.call("POST", AM, token=None, data=BODY, headers=bare))[0] == 401


def test_the_replay_cache_forgets_after_the_window_and_is_bounded() -> None:
    cache = ReplayCache(ttl_seconds=600, max_entries=3)
    assert cache.check_and_add("a", now=0.0) is Seen.NEW
    assert cache.check_and_add("a", now=599.0) is Seen.REPLAYED
    assert cache.check_and_add("b", now=10.0) is Seen.NEW
    assert cache.check_and_add("c", now=20.0) is Seen.NEW
    # Full of live entries: refused rather than forgetting one early (fail closed).
    assert cache.check_and_add("d", now=30.0) is Seen.FULL and len(cache) == 3
    # The window over, "a" is gone and its slot is free again.
    assert cache.check_and_add("d", now=600.0) is Seen.NEW
    assert cache.check_and_add("a", now=601.0) is Seen.FULL  # b, c and d still live
    assert cache.check_and_add("a", now=611.0) is Seen.NEW  # b expired at 610
    assert len(cache) == 3
    cache.forget("a")
    assert cache.check_and_add("a", now=602.0) is Seen.NEW


async def test_a_request_that_failed_on_our_side_may_be_retried(api: Api, store: Store) -> None:
    # Grafana retries the same signed body when we answer 5xx: that is no replay.
    headers = signed(api, BODY)
    conn = sqlite3.connect(api.db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("BEGIN IMMEDIATE")  # another writer holds the lock: our commit fails
        status, _, _ = await api.call("POST", AM, token=None, data=BODY, headers=headers)
        assert status == 503
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    status, reply, _ = await api.call("POST", AM, token=None, data=BODY, headers=headers)
    assert status == 202, reply


# ------------------------------------------------------------------ forged signatures


async def test_the_database_alone_does_not_give_the_signing_secret(
    api: Api, tmp_path: Path
) -> None:
    # The attacker can read the database file (a backup, a loose file mode)...
    conn = sqlite3.connect(f"file:{api.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT * FROM api_tokens").fetchall()
        names = [d[0] for d in conn.execute("SELECT * FROM api_tokens").description]
    finally:
        conn.close()
    stored = {str(v) for row in rows for v in row if v is not None}
    stamp = now_stamp()
    # ...and signs with every value it holds, as the old scheme (key = token hash) allowed.
    for value in stored:
        forged = {
            "X-Voipalert-Signature": sign(value, BODY, stamp),
            "X-Voipalert-Timestamp": stamp,
        }
        status, _, _ = await api.call("POST", AM, token=None, data=BODY, headers=forged)
        assert status == 401, (names, value)
    # A copy of the database opened elsewhere (without the server secret file) derives
    # other signing secrets: a fresh key is made there.
    copy = tmp_path / "stolen" / "copy.db"
    copy.parent.mkdir()
    source = sqlite3.connect(api.db_path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    stolen = await Store.open(copy, SystemClock())
    try:
        derived = await stolen.signing_secret("trigger")
    finally:
        await stolen.close()
    assert derived is not None and derived != api.signing["trigger"]
    forged = signed(api, BODY, secret=derived)
    assert (await api.call("POST", AM, token=None, data=BODY, headers=forged))[0] == 401
    # The real signing secret still works.
    assert (await api.call("POST", AM, token=None, data=BODY, headers=signed(api, BODY)))[0] == 202


async def test_read_tokens_have_no_signing_secret_and_rotation_works(
    make_api: ApiFactory,
) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(token_cache_seconds=0)))
    assert "reader" not in api.signing
    assert await api.store.signing_secret("reader") is None
    old = api.signing["trigger"]
    new = await api.store.signing_secret("trigger", rotate=True)
    assert new is not None and new != old
    assert await api.store.signing_secret("trigger") == new
    refused = signed(api, BODY, secret=old)
    assert (await api.call("POST", AM, token=None, data=BODY, headers=refused))[0] == 401
    accepted = signed(api, BODY, secret=new)
    assert (await api.call("POST", AM, token=None, data=BODY, headers=accepted))[0] == 202
    # Revoked: no signing secret any more.
    await api.store.revoke_api_token("trigger")
    assert await api.store.signing_secret("trigger") is None


# ------------------------------------------------------------------ bounded numbers


@pytest.mark.parametrize(
    "stamp",
    ["9" * 400, "1" * 5000, "-1", "1e9", "17000000²", " ", "0x10", "1700000000.5"],
)
async def test_oversized_or_malformed_timestamps_are_401_never_500(api: Api, stamp: str) -> None:
    # Signed exactly as a sender would sign this value, so only the parsing is under test.
    message = stamp.encode("latin-1") + b":" + BODY
    signature = hmac.new(api.signing["trigger"].encode(), message, hashlib.sha256).hexdigest()
    headers = {"X-Voipalert-Signature": signature, "X-Voipalert-Timestamp": stamp}
    status, reply, _ = await api.call("POST", AM, token=None, data=BODY, headers=headers)
    assert status == 401, reply
    assert reply["error"] == "unauthorized"


@pytest.mark.parametrize("digits", [20, 400, 5000])
async def test_oversized_alert_ids_are_404_never_500(api: Api, digits: int) -> None:
    alert_id = "9" * digits
    for method, path in (
        ("GET", f"{ALERTS}/{alert_id}"),
        ("POST", f"{ALERTS}/{alert_id}/ack"),
        ("POST", f"{ALERTS}/{alert_id}/resolve"),
    ):
        status, reply, _ = await api.call(method, path)
        assert status == 404, (method, reply)
    status, reply, _ = await api.call("GET", f"{ALERTS}?before_id={alert_id}")
    assert status == 422, reply
    status, reply, _ = await api.call("GET", f"{ALERTS}?limit={alert_id}")
    assert status == 422, reply


async def test_small_ids_still_work(api: Api) -> None:
    _, created, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
    assert (await api.call("GET", f"{ALERTS}/{created['id']}"))[0] == 200
    assert (await api.call("GET", f"{ALERTS}/0{created['id']}"))[0] == 200


# ------------------------------------------------------------------ aborted uploads


async def test_an_aborted_upload_is_one_warning_line_not_a_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = api.base.removeprefix("http://").split(":")
    with caplog.at_level(logging.INFO):
        for path in (ALERTS, AM):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.tokens['trigger']}"
                "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                '{"summary": "half a bo'.encode()
            )
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            await writer.wait_closed()
        for _ in range(100):  # the server notices the close asynchronously
            if len(rejected(caplog, "aborted")) == 2:
                break
            await asyncio.sleep(0.02)
    assert len(rejected(caplog, "aborted")) == 2
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # A whole body on a new connection is accepted.
    assert (await api.call("POST", ALERTS, token="trigger", json={"summary": "x"}))[0] == 202


# ------------------------------------------------------------------ /metrics and /readyz


async def test_a_flood_of_made_up_sources_cannot_grow_metrics(api: Api) -> None:
    for i in range(MAX_SOURCES + 200):
        status, _, _ = await api.call(
            "POST", ALERTS, token="trigger", json={"summary": f"s{i}", "source": f"src{i}"}
        )
        assert status == 202
    _, text, _ = await api.call("GET", "/metrics", token=None)
    sources = {
        s.labels["source"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "voipalert_triggers_total"
    }
    assert len(sources) == MAX_SOURCES + 1 and "other" in sources
    assert "src0" in sources  # the first ones keep their own series
    assert await sample(api, "voipalert_triggers_total", source="other") == 200.0


async def test_readyz_writes_nothing(api: Api) -> None:
    watcher = sqlite3.connect(api.db_path)
    try:
        before = watcher.execute("PRAGMA data_version").fetchone()[0]
        wal = f"{api.db_path}-wal"
        wal_size = os.stat(wal).st_size
        for _ in range(50):
            status, body, _ = await api.call("GET", "/readyz", token=None)
            assert status == 200 and body["database"] == "ok"
        # data_version changes when another connection commits; the WAL grows on a write.
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == before
        assert os.stat(wal).st_size == wal_size
        # A real write is seen by the same watcher (the check can fail).
        await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != before
    finally:
        watcher.close()


# ------------------------------------------------------------------ rejected triggers


async def test_every_rejected_trigger_is_logged_and_counted(
    make_api: ApiFactory, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(max_body_bytes=2048)))
    big = b'{"summary": "' + b"x" * 4000 + b'"}'

    async def chunked() -> None:
        async def parts() -> AsyncIterator[bytes]:
            yield big

        async with api.session.post(
            api.base + ALERTS, data=parts(), headers=api.auth("trigger")
        ) as response:
            assert response.status == 413

    cases: list[tuple[str, int, str | None, object]] = [
        ("no_credentials", 401, None, lambda: api.call("POST", ALERTS, token=None, json={})),
        (
            "bad_token",
            401,
            None,
            lambda: api.call(
                "POST", ALERTS, token=None, json={}, headers={"Authorization": "Bearer va_nope"}
            ),
        ),
        (
            "bad_credentials",
            401,
            None,
            lambda: api.call(
                "POST", ALERTS, token=None, json={}, headers={"Authorization": "Basic eDp5"}
            ),
        ),
        ("forbidden", 403, "reader", lambda: api.call("POST", AM, token="reader", json=FIRING)),
        (
            "invalid_body",
            422,
            "trigger",
            lambda: api.call("POST", ALERTS, token="trigger", json={"summary": 5}),
        ),
        (
            "invalid_json",
            400,
            "trigger",
            lambda: api.call("POST", ALERTS, token="trigger", data=b"{not json"),
        ),
        (
            "unknown_target",
            422,
            "trigger",
            lambda: api.call(
                "POST", ALERTS, token="trigger", json={"summary": "x", "team": "nope"}
            ),
        ),
        ("too_large", 413, "trigger", lambda: api.call("POST", ALERTS, token="trigger", data=big)),
        ("too_large", 413, "trigger", chunked),
        (
            "bad_signature",
            401,
            None,
            lambda: api.call(
                "POST", AM, token=None, data=BODY, headers=signed(api, BODY, secret="vas_x")
            ),
        ),
        (
            "stale_timestamp",
            401,
            None,
            lambda: api.call(
                "POST",
                AM,
                token=None,
                data=BODY,
                headers=signed(api, BODY, **{"X-Voipalert-Timestamp": "1700000000"}),
            ),
        ),
        (
            "no_timestamp",
            401,
            None,
            lambda: api.call(
                "POST",
                AM,
                token=None,
                data=BODY,
                headers=signed(api, BODY, **{"X-Voipalert-Timestamp": ""}),
            ),
        ),
        (
            "no_such_hook",
            404,
            "trigger",
            lambda: api.call("POST", "/api/v1/hooks/generic/nope", token="trigger", json={}),
        ),
    ]
    replay = signed(api, BODY, token="monitor")
    assert (await api.call("POST", AM, token=None, data=BODY, headers=replay))[0] == 202
    cases.append(
        (
            "replayed",
            401,
            "monitor",
            lambda: api.call("POST", AM, token=None, data=BODY, headers=replay),
        )
    )
    with caplog.at_level(logging.WARNING, logger="voipalert.http"):
        for reason, status, token, send in cases:
            caplog.clear()
            result = await send()  # type: ignore[operator]
            if result is not None:
                assert result[0] == status, (reason, result[1])
            (record,) = rejected(caplog, reason)
            assert record.status == status  # type: ignore[attr-defined]
            assert record.remote == "127.0.0.1"  # type: ignore[attr-defined]
            assert record.token_name == (token or "-"), reason  # type: ignore[attr-defined]
    for reason in {c[0] for c in cases}:
        expected = float(sum(1 for c in cases if c[0] == reason))
        total = 0.0
        for edge in ("api", "alertmanager", "generic"):
            total += await sample(
                api, "voipalert_triggers_rejected_total", edge=edge, reason=reason
            )
        assert total == expected, reason
    # Accepted triggers are not counted as rejected.
    before = await sample(api, "voipalert_triggers_rejected_total", edge="api", reason="bad_token")
    assert (await api.call("POST", ALERTS, token="trigger", json={"summary": "ok"}))[0] == 202
    after = await sample(api, "voipalert_triggers_rejected_total", edge="api", reason="bad_token")
    assert before == after == 1.0


async def test_a_flood_of_bad_requests_is_counted_but_cannot_flood_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {"Authorization": "Bearer va_guess"}
    with caplog.at_level(logging.WARNING, logger="voipalert.http"):
        for _ in range(300):
            status, _, _ = await api.call("POST", ALERTS, token=None, json={}, headers=bad)
            assert status == 401
    lines = rejected(caplog, "bad_token")
    assert 1 <= len(lines) <= 20
    assert (
        await sample(api, "voipalert_triggers_rejected_total", edge="api", reason="bad_token")
        == 300.0
    )


def test_the_log_budget_reports_what_it_left_out() -> None:
    budget = LogBudget(lines=2, window_seconds=10)
    assert [budget.take(0.0), budget.take(1.0), budget.take(2.0), budget.take(3.0)] == [
        (True, 0),
        (True, 0),
        (False, 0),
        (False, 0),
    ]
    assert budget.take(10.0) == (True, 2)  # a new window: the first line says 2 were left out
    assert budget.take(11.0) == (True, 0)
