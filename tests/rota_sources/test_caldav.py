"""A CalDAV source against a real Radicale started on loopback (htpasswd auth, a temporary
storage folder): the REPORT with a time-range, a recurring event with its exception in one
resource, the collection's CTag as validator, a wrong password, and the server going away."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.ingest.alertmanager import free_port
from tests.requires import need_program
from tests.rota_sources.helpers import PARIS_ZONE, event, ics, sourced_rota
from tests.rota_sources.test_ical import PARIS
from voipalert.clock import FakeClock
from voipalert.domain.oncall import who_is_on_call
from voipalert.domain.rota import ScheduleSource, SourceKind
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.feed_poll import SourcePoller, SourcesConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app
from voipalert.store import Store
from voipalert.store.feeds import CopyState

START_TIMEOUT_SECONDS = 15.0


@dataclass
class Radicale:
    url: str
    process: subprocess.Popen[bytes]
    root: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _launch(binary: str, root: Path) -> subprocess.Popen[bytes]:
    with (root / "radicale.log").open("wb") as log:
        return subprocess.Popen(
            [binary, "--config", str(root / "config")],
            stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )  # fmt: skip


@pytest.fixture
async def radicale(tmp_path: Path) -> AsyncIterator[Radicale]:
    binary = need_program(
        "radicale", "apt-get install radicale, or bash sip-testbed/install-deps.sh --tests"
    )
    root = tmp_path / "radicale"
    root.mkdir()
    (root / "users").write_text("alice:s3cret\n")
    port = free_port()
    (root / "config").write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n"
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {root / 'users'}\n"
        "htpasswd_encryption = plain\n"
        f"[storage]\nfilesystem_folder = {root / 'collections'}\n"
        "[rights]\ntype = owner_only\n[logging]\nlevel = warning\n"
    )
    process = _launch(binary, root)
    server = Radicale(f"http://127.0.0.1:{port}", process, root)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    try:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{server.url}/.web/") as response:
                        if response.status < 500:
                            break
                except aiohttp.ClientError:
                    pass
                if loop.time() > deadline or process.poll() is not None:
                    log_text = (root / "radicale.log").read_text(errors="replace")
                    raise RuntimeError(f"Radicale did not start:\n{log_text}")
                await asyncio.sleep(0.1)
        yield server
    finally:
        server.stop()


AUTH = {"Authorization": "Basic YWxpY2U6czNjcmV0"}  # alice:s3cret


async def put(session: aiohttp.ClientSession, url: str, body: str) -> None:
    headers = {"Content-Type": "text/calendar; charset=utf-8"}
    async with session.put(url, data=body.encode(), headers={**headers, **AUTH}) as response:
        assert response.status in (201, 204), await response.text()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def test_caldav_source_against_radicale(radicale: Radicale, tmp_path: Path) -> None:
    calendar = f"{radicale.url}/alice/night/"
    async with aiohttp.ClientSession() as session:
        async with session.request("MKCALENDAR", calendar, headers=AUTH) as response:
            assert response.status == 201, await response.text()
        # The recurring nights with their exception: one resource (RFC 4791 §4.1).
        bob = PARIS.split("BEGIN:VEVENT\r\nUID:alice-fri")[0] + "END:VCALENDAR\r\n"
        await put(session, calendar + "bob-nights.ics", bob)
        alice = ics(
            "\n".join(PARIS.split("\r\n")[PARIS.split("\r\n").index("UID:alice-fri") - 1 :][:8]),
            zones=PARIS_ZONE,
        )
        await put(session, calendar + "alice-fri.ics", alice)

        password = tmp_path / "caldav.pass"
        password.write_text("s3cret\n")
        source = ScheduleSource(
            SourceKind.CALDAV, calendar, username="alice", password_file=str(password),
            alert_after_seconds=0,
        )  # fmt: skip
        rota = sourced_rota(source)
        clock = FakeClock(utc("2026-03-25T12:00"))
        store = await Store.open(tmp_path / "voipalert.db", clock)
        try:
            await store.replace_rota(rota)
            app = build_app(
                store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
                config=IngestConfig(), clock=clock,
            )  # fmt: skip
            poller = SourcePoller(store, app[INTAKE], clock, session, SourcesConfig())

            async def check() -> CopyState:
                return (await poller.check(rota.schedules[0], source, rota)).state

            async def on_call(at: str) -> str | None:
                loaded, _ = await store.load_rota_with_feeds()
                return who_is_on_call(loaded.schedules[0], (), utc(at)).person

            assert await check() is CopyState.LIVE
            assert await on_call("2026-03-27T22:00") == "alice"  # EXDATE: bob's night gone
            assert await on_call("2026-03-29T05:59") == "bob"  # the short DST night
            assert await on_call("2026-03-29T18:00") == "carol"  # RECURRENCE-ID
            first = await store.source_copy("night")
            assert first is not None and first.etag  # the CTag

            clock.advance(300)
            assert await check() is CopyState.LIVE
            same = await store.source_copy("night")
            assert same is not None and same.good_at == first.good_at  # CTag unchanged

            extra = event(
                "swap", "DTSTART:20260326T210000Z", "DTEND:20260327T070000Z", "carol",
            )  # fmt: skip
            await put(session, calendar + "swap.ics", ics(extra))
            clock.advance(300)
            assert await check() is CopyState.LIVE
            assert await on_call("2026-03-26T22:00") == "carol"  # the later start wins

            password.write_text("wrong\n")
            clock.advance(300)
            assert await check() is CopyState.CACHED
            copy = await store.source_copy("night")
            assert copy is not None and "HTTP 401" in (copy.error or "")
            assert await on_call("2026-03-26T22:00") == "carol"

            password.write_text("s3cret\n")
            radicale.stop()
            clock.advance(300)
            assert await check() is CopyState.CACHED
            alerts = (await store.list_alerts()).alerts
            assert [a.dedup_key for a in alerts] == ["rota-source:night"]
        finally:
            await store.close()
