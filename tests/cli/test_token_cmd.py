"""``voipalert token create|list|revoke`` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

from tests.cli.test_main import run
from voipalert.clock import SystemClock
from voipalert.store import Scope, Store


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
