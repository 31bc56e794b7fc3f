"""Who may call what: bearer tokens with scopes, HMAC body signatures, revocation."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.ingest.conftest import Api, ApiFactory
from voipalert.clock import SystemClock
from voipalert.ingest.auth import grants
from voipalert.ingest.config import HttpConfig, IngestConfig
from voipalert.ingest.tokens import normalize_signature, sign, signature_matches, token_digest
from voipalert.store import Scope

ALERTS = "/api/v1/alerts"
AM = "/api/v1/hooks/alertmanager"
FIRING = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]}


async def test_the_store_keeps_only_the_token_hash(api: Api) -> None:
    # What the store keeps for a token is its SHA-256, never the token nor a signing secret.
    conn = sqlite3.connect(f"file:{api.db_path}?mode=ro", uri=True)
    try:
        kept = dict(conn.execute("SELECT name, token_sha256 FROM api_tokens").fetchall())
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert kept["trigger"] == token_digest(api.tokens["trigger"])
    assert api.tokens["trigger"] not in kept.values() and len(kept["trigger"]) == 64
    assert api.signing["trigger"] not in dump and api.signing["trigger"][4:] not in dump
    assert grants(frozenset({Scope.ADMIN}), Scope.READ)
    assert not grants(frozenset({Scope.TRIGGER}), Scope.READ)


def test_signatures() -> None:
    body = b'{"a": 1}'
    secret = "vas_" + "ab" * 32
    good = sign(secret, body)
    assert signature_matches(secret, body, good, None)
    upper = normalize_signature("sha256=" + good.upper())
    assert upper is not None and signature_matches(secret, body, upper, None)
    assert not signature_matches(secret, body + b" ", good, None)
    assert not signature_matches(secret, body, good, "1700000000")
    assert signature_matches(secret, body, sign(secret, body, "1700000000"), "1700000000")
    assert not signature_matches(secret, body, "é" * 64, None)
    assert normalize_signature("é" * 64) is None and normalize_signature(good[:-1]) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", ALERTS),
        ("GET", ALERTS),
        ("GET", f"{ALERTS}/1"),
        ("POST", f"{ALERTS}/1/ack"),
        ("POST", f"{ALERTS}/1/resolve"),
        ("POST", AM),
        ("POST", "/api/v1/hooks/grafana"),
        ("POST", "/api/v1/hooks/generic/any"),
    ],
)
async def test_no_credentials_is_401_json_with_a_challenge(
    api: Api, method: str, path: str
) -> None:
    status, reply, response = await api.call(method, path, token=None, json={"summary": "x"})
    assert status == 401, reply
    assert reply["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer va_unknown", "Token abc", "Bearer a b"],
)
async def test_wrong_tokens_are_401(api: Api, header: str) -> None:
    status, reply, _ = await api.call(
        "POST", ALERTS, token=None, json={"summary": "x"}, headers={"Authorization": header}
    )
    assert status == 401, reply


@pytest.mark.parametrize(
    ("token", "method", "path", "expected"),
    [
        ("reader", "POST", ALERTS, 403),
        ("reader", "POST", AM, 403),
        ("trigger", "GET", ALERTS, 403),
        ("trigger", "GET", f"{ALERTS}/1", 403),
        ("trigger", "POST", f"{ALERTS}/1/ack", 403),
        ("monitor", "POST", f"{ALERTS}/1/resolve", 403),
        ("reader", "GET", ALERTS, 200),
        ("monitor", "GET", ALERTS, 200),
        ("admin", "GET", ALERTS, 200),
        ("admin", "POST", AM, 202),
    ],
)
async def test_scopes(api: Api, token: str, method: str, path: str, expected: int) -> None:
    status, reply, _ = await api.call(method, path, token=token, json=FIRING)
    assert status == expected, reply
    if expected == 403:
        assert reply["error"] == "forbidden" and token in reply["message"]


async def test_revoked_token_stops_working(make_api: ApiFactory) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(token_cache_seconds=0)))
    assert (await api.call("GET", ALERTS, token="reader"))[0] == 200
    assert await api.store.revoke_api_token("reader")
    status, reply, _ = await api.call("GET", ALERTS, token="reader")
    assert status == 401 and "revoked" in reply["message"]
    (record,) = [t for t in await api.tables.list_tokens() if t.name == "reader"]
    assert record.last_used_at is not None and record.revoked_at is not None


async def test_revocation_reaches_a_caching_server_within_the_cache_time(
    make_api: ApiFactory,
) -> None:
    api = await make_api(IngestConfig(http=HttpConfig(token_cache_seconds=0.2)))
    assert (await api.call("GET", ALERTS, token="reader"))[0] == 200
    await api.store.revoke_api_token("reader")
    import asyncio

    await asyncio.sleep(0.3)
    assert (await api.call("GET", ALERTS, token="reader"))[0] == 401


def now_stamp() -> str:
    return str(int(SystemClock().now_utc().timestamp()))


def signed(
    api: Api, body: bytes, token: str = "trigger", secret: str | None = None, **headers: str
) -> dict[str, str]:
    """Signature headers as a sender signs them; a timestamp of now unless one is given
    (``X-Voipalert-Timestamp=""`` sends none)."""
    stamp = headers.pop("X-Voipalert-Timestamp", now_stamp()) or None
    key = secret if secret is not None else api.signing.get(token, "vas_" + "00" * 32)
    signature = sign(key, body, stamp)
    out = {"X-Voipalert-Signature": f"sha256={signature}", **headers}
    if stamp is not None:
        out["X-Voipalert-Timestamp"] = stamp
    return out


async def test_hmac_signed_webhook_is_accepted(api: Api) -> None:
    body = json.dumps(FIRING).encode()
    status, reply, _ = await api.call("POST", AM, token=None, data=body, headers=signed(api, body))
    assert status == 202, reply
    # Grafana's own header names work too, with its plain hex form.
    stamp = now_stamp()
    grafana_sig = sign(api.signing["monitor"], body, stamp)
    grafana = {"X-Grafana-Alerting-Signature": grafana_sig, "X-Grafana-Alerting-Timestamp": stamp}
    status, _, _ = await api.call("POST", AM, token=None, data=body, headers=grafana)
    assert status == 202


async def test_bad_signatures_are_401(api: Api) -> None:
    body = json.dumps(FIRING).encode()
    headers = signed(api, body)
    status, _, _ = await api.call("POST", AM, token=None, data=body + b" ", headers=headers)
    assert status == 401
    # A token without the trigger scope cannot sign.
    status, _, _ = await api.call(
        "POST", AM, token=None, data=body, headers=signed(api, body, "reader")
    )
    assert status == 401
    # A signature never grants read or admin.
    for method, path in (("GET", ALERTS), ("POST", f"{ALERTS}/1/ack")):
        status, _, _ = await api.call(method, path, token=None, headers=signed(api, b""))
        assert status == 401


async def test_signature_timestamps(api: Api) -> None:
    # Required by default.
    body = json.dumps(FIRING).encode()
    bare = signed(api, body, **{"X-Voipalert-Timestamp": ""})
    status, reply, _ = await api.call("POST", AM, token=None, data=body, headers=bare)
    assert status == 401 and "timestamp" in reply["message"]
    now = now_stamp()
    fresh = signed(api, body, **{"X-Voipalert-Timestamp": now})
    assert (await api.call("POST", AM, token=None, data=body, headers=fresh))[0] == 202
    old = str(int(now) - 3600)
    stale = signed(api, body, **{"X-Voipalert-Timestamp": old})
    status, reply, _ = await api.call("POST", AM, token=None, data=body, headers=stale)
    assert status == 401 and "too old" in reply["message"]
    junk = signed(api, body, **{"X-Voipalert-Timestamp": "soon"})
    assert (await api.call("POST", AM, token=None, data=body, headers=junk))[0] == 401


async def test_audit_records_token_names(api: Api) -> None:
    _, created, _ = await api.call("POST", ALERTS, token="trigger", json={"summary": "x"})
    await api.call("POST", f"{ALERTS}/{created['id']}/ack", token="admin")
    trail = await api.store.audit_trail(created["id"])
    assert [e.actor for e in trail if e.action == "alert.acknowledged"] == ["admin"]
