"""Heartbeat monitors: beats over loopback HTTP (curl, as cron would send them, and a real
Alertmanager's Watchdog), the watch that opens and the beat that resolves the alert, with a
fake clock where time decides."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.ingest.alertmanager import config_yaml, free_port, start_alertmanager
from tests.ingest.conftest import sample_rota
from tests.requires import need_program
from voipalert.clock import FakeClock
from voipalert.domain.alert import AlertStatus
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.config import HttpConfig, IngestConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.heartbeat import HeartbeatWatch, dedup_key
from voipalert.ingest.webhook import build_app, start_http
from voipalert.store import Scope, Store

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@dataclass
class Beats:
    base: str
    store: Store
    clock: FakeClock
    watch: HeartbeatWatch
    session: aiohttp.ClientSession
    woken: list[int]

    async def beat(self, token: str, method: str = "GET", **kwargs: Any) -> tuple[int, Any]:
        url = f"{self.base}/api/v1/heartbeat/{token}"
        async with self.session.request(method, url, **kwargs) as response:
            return response.status, await response.json()

    async def open_alert(self, name: str) -> Any:
        page = await self.store.list_alerts()
        found = [a for a in page.alerts if a.dedup_key == dedup_key(name)]
        return found[0] if found else None


@asynccontextmanager
async def _serve(tmp_path: Path, per_minute: int = 60) -> AsyncIterator[Beats]:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(sample_rota())
    woken: list[int] = []
    config = IngestConfig(http=HttpConfig(heartbeat_beats_per_minute=per_minute))
    app = build_app(
        store, wake=lambda: woken.append(1), sip_state=lambda: SipState.REGISTERED,
        config=config, clock=clock,
    )  # fmt: skip
    runner, port = await start_http(app, "127.0.0.1", 0)
    session = aiohttp.ClientSession()
    try:
        watch = HeartbeatWatch(store, app[INTAKE], clock, check_seconds=0.05)
        yield Beats(f"http://127.0.0.1:{port}", store, clock, watch, session, woken)
    finally:
        await session.close()
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def beats(tmp_path: Path) -> AsyncIterator[Beats]:
    async with _serve(tmp_path) as value:
        yield value


async def test_silence_opens_an_alert_and_the_next_beat_resolves_it(beats: Beats) -> None:
    _, token = await beats.store.add_heartbeat("backup", every_seconds=300, grace_seconds=60)
    assert await beats.watch.check() == []
    beats.clock.advance(359)
    assert await beats.watch.check() == []  # within period + grace
    status, reply = await beats.beat(token)
    assert status == 200 and reply == {
        "heartbeat": "backup",
        "recorded": True,
        "resolved_alert": None,
    }

    beats.clock.advance(359)
    assert await beats.watch.check() == []  # counted from the beat
    beats.clock.advance(1)
    assert await beats.watch.check() == ["backup"]
    alert = await beats.open_alert("backup")
    assert alert.status is AlertStatus.TRIGGERED and alert.source == "heartbeat"
    assert alert.summary == "Heartbeat backup missed: nothing for 6 minutes"
    assert alert.labels == {"heartbeat": "backup"}
    assert alert.policy == "ops-default"  # routed like any other alert (the rota's default)
    assert beats.woken  # the engine was woken to call
    beats.clock.advance(600)
    assert await beats.watch.check() == []  # one alert, not one per check
    assert (await beats.store.get_alert(alert.id)).occurrences == 1  # type: ignore[union-attr]

    status, reply = await beats.beat(token, "POST", data=b"ok")
    assert status == 200 and reply["resolved_alert"] == alert.id
    fresh = await beats.store.get_alert(alert.id)
    assert fresh is not None and fresh.status is AlertStatus.RESOLVED
    assert fresh.resolved_by == "heartbeat"
    [listed] = await beats.store.list_heartbeats()
    assert listed.beats == 2 and not listed.down


async def test_routing_options_are_kept(beats: Beats) -> None:
    await beats.store.add_heartbeat("db-dump", 60, team="dba", policy="dba-default")
    beats.clock.advance(61)
    assert await beats.watch.check() == ["db-dump"]
    alert = await beats.open_alert("db-dump")
    assert (alert.team, alert.policy) == ("dba", "dba-default")


async def test_the_watch_runs_by_itself(beats: Beats) -> None:
    await beats.store.add_heartbeat("cron", 60)
    beats.clock.advance(61)
    task = asyncio.create_task(beats.watch.run())
    try:
        for _ in range(200):
            if await beats.open_alert("cron") is not None:
                break
            await asyncio.sleep(0.01)
        assert await beats.open_alert("cron") is not None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_unknown_tokens_are_404_alike(beats: Beats) -> None:
    _, token = await beats.store.add_heartbeat("backup", 300)
    answers = []
    for wrong in (
        "x",
        token[:-1] + ("A" if token[-1] != "A" else "B"),
        "hb_" + "z" * 90,
        "y" * 101,
    ):
        answers.append(await beats.beat(wrong))
    assert {status for status, _ in answers} == {404}
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1
    [listed] = await beats.store.list_heartbeats()
    assert listed.beats == 0


async def test_beats_are_rate_limited(tmp_path: Path) -> None:
    async with _serve(tmp_path, per_minute=3) as beats:
        _, token = await beats.store.add_heartbeat("busy", 60)
        statuses = [(await beats.beat(token))[0] for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        beats.clock.advance(60)  # the window moves on
        assert (await beats.beat(token))[0] == 200


async def test_an_alertmanager_resolved_notification_is_no_beat(beats: Beats) -> None:
    _, token = await beats.store.add_heartbeat("watchdog", 60)
    status, reply = await beats.beat(token, "POST", json={"status": "resolved", "alerts": []})
    assert status == 200 and reply["recorded"] is False
    assert (await beats.store.list_heartbeats())[0].beats == 0


async def test_curl_from_cron(beats: Beats) -> None:
    curl = need_program("curl", "apt-get install curl")
    _, token = await beats.store.add_heartbeat("nightly", 3600)
    url = f"{beats.base}/api/v1/heartbeat/{token}"
    for extra in ([], ["-X", "POST", "-d", "done"]):
        done = await asyncio.to_thread(
            subprocess.run, [curl, "-fsS", *extra, url], capture_output=True, timeout=10
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["recorded"] is True
    missing = await asyncio.to_thread(
        subprocess.run, [curl, "-fsS", url + "x"], capture_output=True, timeout=10
    )
    assert missing.returncode == 22  # curl -f: the 404 is a failure the cron job sees
    assert (await beats.store.list_heartbeats())[0].beats == 2


async def test_alertmanager_watchdog_beats(beats: Beats, tmp_path: Path) -> None:
    """Alertmanager's always-firing Watchdog, routed to a receiver whose URL is the
    heartbeat's, beats at every repeat_interval (1 s here)."""
    _, token = await beats.store.add_heartbeat("prometheus", 60)
    await beats.store.create_api_token("am", frozenset({Scope.TRIGGER}))
    receivers = {
        "default": f"{beats.base}/api/v1/hooks/alertmanager",
        "watchdog": f"{beats.base}/api/v1/heartbeat/{token}",
    }
    am = await start_alertmanager(
        tmp_path / "am", config_yaml(receivers, "unused", {"Watchdog": "watchdog"}), free_port()
    )
    try:
        watchdog = [{"labels": {"alertname": "Watchdog", "severity": "none"}}]
        await am.post_alerts(beats.session, watchdog)
        for _ in range(100):
            if (await beats.store.list_heartbeats())[0].beats >= 2:
                break
            await asyncio.sleep(0.1)
        [heartbeat] = await beats.store.list_heartbeats()
        assert heartbeat.beats >= 2, am.log  # the first notification and a repeat
        assert (await beats.store.list_alerts()).alerts == ()  # a beat, not an alert
    finally:
        am.stop()
