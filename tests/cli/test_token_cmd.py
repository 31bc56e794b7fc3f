"""``voipalert token create|list|revoke`` as a user runs them."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import sqlite3
from pathlib import Path

import aiohttp

from tests.cli.test_main import run
from voipalert.clock import SystemClock
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Scope, Store, StoreConfig


def configure(tmp_path: Path) -> Path:
    config = tmp_path / "voipalert.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "cli.db"}"\n')
    return config


async def verify(db: Path, token: str) -> frozenset[Scope] | None:
    store = await Store.open(db, SystemClock())
    try:
        record = await store.verify_api_token(token)
        return record.scopes if record else None
    finally:
        await store.close()


def test_create_shows_the_secret_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    config = str(configure(tmp_path))
    created = run(
        "--config", config, "token", "create", "grafana", "--scope", "trigger", "--scope", "read"
    )
    assert created.returncode == 0, created.stderr
    (token,) = re.findall(r"va_[A-Za-z0-9_-]{40,}", created.stdout)
    (signing,) = re.findall(r"vas_[0-9a-f]{64}", created.stdout)  # for senders that sign
    assert signing != token
    assert asyncio.run(verify(tmp_path / "cli.db", token)) == frozenset({Scope.TRIGGER, Scope.READ})
    conn = sqlite3.connect(tmp_path / "cli.db")
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    assert token not in dump
    listed = run("--config", config, "token", "list")
    assert listed.returncode == 0 and "grafana" in listed.stdout and "read,trigger" in listed.stdout
    assert token not in listed.stdout and "active" in listed.stdout


def test_duplicates_revocation_and_bad_names(tmp_path: Path) -> None:
    config = str(configure(tmp_path))
    first = run("--config", config, "token", "create", "ci", "--scope", "admin", "--json")
    assert first.returncode == 0, first.stderr
    token = json.loads(first.stdout)["token"]
    again = run("--config", config, "token", "create", "ci", "--scope", "read")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert run("--config", config, "token", "revoke", "ci").returncode == 0
    assert asyncio.run(verify(tmp_path / "cli.db", token)) is None
    second = run("--config", config, "token", "revoke", "ci")
    assert second.returncode == 1 and "no active token" in second.stderr
    (entry,) = json.loads(run("--config", config, "token", "list", "--json").stdout)
    assert entry["name"] == "ci" and entry["revoked_at"] is not None
    bad = run("--config", config, "token", "create", "has space", "--scope", "read")
    assert bad.returncode == 2
    no_scope = run("--config", config, "token", "create", "x")
    assert no_scope.returncode == 2 and "--scope" in no_scope.stderr
    wrong_scope = run("--config", config, "token", "create", "x", "--scope", "root")
    assert wrong_scope.returncode == 2


def test_config_check_prints_route_and_rule_tables(tmp_path: Path) -> None:
    config = tmp_path / "voipalert.toml"
    config.write_text(
        '[[routes]]\nname = "db"\nteam = "dba"\n'
        '[[smtp.rules]]\nname = "nagios"\nmonitoring = true\n'
        '[hooks.generic.uptime]\nsummary = "monitor.name"\n'
        '[imap]\nenabled = true\nusername = "u"\npassword = "imap-pw-secret"\n'
    )
    result = run("--config", str(config), "config", "check")
    assert result.returncode == 0, result.stderr
    for line in ("[[routes]]", 'name = "db"', "[[smtp.rules]]", "[hooks.generic.uptime]"):
        assert line in result.stdout
    assert "imap-pw-secret" not in result.stdout


async def post_signed(db: Path, secret: str, secret_file: Path | None = None) -> int:
    """Serve the real app over ``db`` on loopback and send one Grafana-style signed trigger."""
    store = await Store.open(db, SystemClock(), StoreConfig(secret_file=secret_file))
    app = build_app(
        store,
        wake=lambda: None,
        sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(),
        clock=SystemClock(),
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    body = json.dumps({"summary": "cli secret works"}).encode()
    stamp = str(int(SystemClock().now_utc().timestamp()))
    signature = hmac.new(secret.encode(), f"{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Grafana-Alerting-Signature": signature, "X-Grafana-Alerting-Timestamp": stamp}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/api/v1/alerts", data=body, headers=headers) as r,
        ):
            return r.status
    finally:
        await runner.cleanup()
        await store.close()


def test_only_tokens_that_may_sign_print_a_signing_secret_and_it_works(tmp_path: Path) -> None:
    config = str(configure(tmp_path))
    db = tmp_path / "cli.db"
    reader = run("--config", config, "token", "create", "dash", "--scope", "read")
    assert reader.returncode == 0, reader.stderr
    assert "vas_" not in reader.stdout and "signing secret" not in reader.stdout
    as_json = run("--config", config, "token", "create", "dash2", "--scope", "read", "--json")
    assert "signing_secret" not in json.loads(as_json.stdout)
    refused = run("--config", config, "token", "signing-secret", "dash")
    assert refused.returncode == 1 and "may sign" in refused.stderr
    created = run("--config", config, "token", "create", "grafana", "--scope", "trigger", "--json")
    printed = json.loads(created.stdout)["signing_secret"]
    assert asyncio.run(post_signed(db, printed)) == 202  # what was printed is accepted
    again = run("--config", config, "token", "signing-secret", "grafana")
    assert again.returncode == 0 and again.stdout.strip() == printed
    rotated = run("--config", config, "token", "signing-secret", "grafana", "--rotate")
    new = rotated.stdout.strip()
    assert rotated.returncode == 0 and new != printed and new.startswith("vas_")
    assert asyncio.run(post_signed(db, printed)) == 401
    assert asyncio.run(post_signed(db, new)) == 202
    # The database file alone does not hold it: with another server secret it is refused.
    assert asyncio.run(post_signed(db, new, secret_file=tmp_path / "other.secret")) == 401
