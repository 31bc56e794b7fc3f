"""The PostgreSQL backend's text handling, without a server: placeholders and the URL as
shown to people."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voipalert.errors import ConfigError
from voipalert.settings import load_settings, masked_dump
from voipalert.store.pg import is_postgresql_url, numbered
from voipalert.store.pg_url import shown_url


def test_placeholders_are_numbered_outside_string_literals() -> None:
    assert numbered("SELECT ? , '?', 'it''s ?', ?") == "SELECT $1 , '?', 'it''s ?', $2"
    assert numbered("UPDATE t SET a = ? WHERE b IN (?, ?)") == (
        "UPDATE t SET a = $1 WHERE b IN ($2, $3)"
    )
    assert numbered("SELECT 1") == "SELECT 1"


def test_a_password_is_never_shown() -> None:
    url = "postgresql://voipalert:s3cr%40t@db.example:5433/voipalert?sslmode=require"
    shown = shown_url(url)
    assert "s3cr" not in shown
    assert shown == "postgresql://voipalert:***@db.example:5433/voipalert?sslmode=require"
    assert shown_url("postgresql://voipalert@db/x") == "postgresql://voipalert@db/x"


def test_only_postgresql_urls_select_postgresql() -> None:
    assert is_postgresql_url("postgresql://h/db") and is_postgresql_url("postgres://h/db")
    assert not is_postgresql_url("voipalert.db")
    assert not is_postgresql_url("mysql://h/db")


def test_database_url_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "voipalert.toml"
    config.write_text("")
    default = load_settings(config, environ={})
    assert default.database.location == Path("voipalert.db")
    url = "postgresql://voipalert:hunter2@127.0.0.1/voipalert"
    monkeypatch.setenv("VOIPALERT_DATABASE__URL", url)
    chosen = load_settings(config, environ={})
    assert chosen.database.location == url
    assert "hunter2" not in json.dumps(masked_dump(chosen)), "the URL is a secret"
    monkeypatch.setenv("VOIPALERT_DATABASE__URL", "mysql://h/db")
    with pytest.raises(ConfigError, match="postgresql://"):
        load_settings(config, environ={})
