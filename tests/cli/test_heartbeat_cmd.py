"""``voipalert heartbeat add|list|remove`` as a user runs them; the printed URL beats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from tests.cli.test_main import run
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertStatus, NewAlert
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Store


def configure(tmp_path: Path) -> str:
    config = tmp_path / "voipalert.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "cli.db"}"\n'
        '[http]\npublic_url = "https://alerts.example.org/"\n'
    )
    return str(config)


def test_add_list_remove(tmp_path: Path) -> None:
    config = configure(tmp_path)
    added = run("--config", config, "heartbeat", "add", "backup", "--every", "5m", "--grace", "1m")
    assert added.returncode == 0, added.stderr
    url = added.stdout.strip()
    assert re.fullmatch(r"https://alerts\.example\.org/api/v1/heartbeat/hb_[A-Za-z0-9_-]{32}", url)
    token = url.rsplit("/", 1)[1]
    assert token not in (tmp_path / "cli.db").read_bytes().decode("latin-1")  # hash only
    again = run("--config", config, "heartbeat", "add", "backup", "--every", "5m")
    assert again.returncode == 1 and "exists already" in again.stderr
    listed = json.loads(run("--config", config, "heartbeat", "list", "--json").stdout)
    assert [(h["name"], h["every_seconds"], h["grace_seconds"]) for h in listed] == [
        ("backup", 300, 60)
    ]
    assert "url" not in listed[0]
    removed = run("--config", config, "heartbeat", "remove", "backup")
    assert removed.returncode == 0
    assert run("--config", config, "heartbeat", "remove", "backup").returncode == 1


def test_wrong_arguments_exit_2(tmp_path: Path) -> None:
    config = configure(tmp_path)
    for args in (
        ("add", "x", "--every", "5q"),
        ("add", "bad name", "--every", "5m"),
        ("add", "x", "--every", "5s"),
        ("add", "x", "--every", "5m", "--team", "nobody"),
        ("add", "x", "--every", "5m", "--route", "nowhere"),
    ):
        result = run("--config", config, "heartbeat", *args)
        assert result.returncode == 2, (args, result.stderr)


async def test_remove_resolves_the_open_alert(tmp_path: Path) -> None:
    config = configure(tmp_path)
    assert run("--config", config, "heartbeat", "add", "gone", "--every", "1m").returncode == 0
    store = await Store.open(tmp_path / "cli.db", SystemClock())
    try:
        alert, _ = await store.create_or_join_alert(
            NewAlert("Heartbeat gone missed", source="heartbeat", dedup_key="heartbeat:gone")
        )
    finally:
        await store.close()
    assert run("--config", config, "heartbeat", "remove", "gone").returncode == 0
    store = await Store.open(tmp_path / "cli.db", SystemClock())
    try:
        fresh = await store.get_alert(alert.id)
        assert fresh is not None and fresh.status is AlertStatus.RESOLVED
    finally:
        await store.close()


async def test_the_printed_url_beats(tmp_path: Path) -> None:
    config = configure(tmp_path)
    added = run("--config", config, "heartbeat", "add", "nightly", "--every", "1h", "--json")
    token = json.loads(added.stdout)["url"].rsplit("/", 1)[1]
    store = await Store.open(tmp_path / "cli.db", SystemClock())
    app = build_app(
        store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
        config=IngestConfig(), clock=SystemClock(),
    )  # fmt: skip
    runner, port = await start_http(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}/api/v1/heartbeat/{token}"
            async with session.post(url) as response:
                assert response.status == 200
        [heartbeat] = await store.list_heartbeats()
        assert heartbeat.beats == 1
    finally:
        await runner.cleanup()
        await store.close()
