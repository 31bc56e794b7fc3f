"""Which copy answered, as ``/readyz``, ``/metrics`` and ``voipalert oncall`` say it; the
rota file's ``source:`` key; the engine reloading when a copy changes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.rota_sources.helpers import event, feed_server, ics
from voipalert.cli import main
from voipalert.clock import FakeClock
from voipalert.domain.errors import RotaError
from voipalert.ingest.app_keys import INTAKE
from voipalert.ingest.config import IngestConfig
from voipalert.ingest.feed_poll import SourcePoller, SourcesConfig
from voipalert.ingest.health import SipState
from voipalert.ingest.webhook import build_app, start_http
from voipalert.rotafile.dump import dump_rota
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DAYS = ics(
    event("a", "DTSTART:20260302T080000Z", "DTEND:20260302T200000Z", "alice", "RRULE:FREQ=DAILY"),
)

ROTA = """
version: 1
people:
  - {name: alice, contacts: [{extension: "201"}]}
  - {name: bob, contacts: [{extension: "202"}]}
schedules:
  - name: day
    time_zone: UTC
    source:
      kind: ical
      url: URL
      person_field: summary
      people: {"Alice Martin": alice}
      poll: 5m
      alert_after: 15m
    layers:
      - {name: fallback, members: [bob], shift_length: 1, shift_unit: days,
         start: 2026-01-01, handoff: "00:00"}
"""


def test_rota_file_source_round_trips_and_is_validated() -> None:
    rota = parse_rota(ROTA.replace("URL", "http://127.0.0.1:1/x.ics"))
    source = rota.schedules[0].source
    assert source is not None and source.poll_seconds == 300 and source.person_field == "SUMMARY"
    assert source.aliases == (("Alice Martin", "alice"),)
    assert parse_rota(dump_rota(rota)) == rota
    bad = (
        ROTA.replace("URL", "file:///etc/passwd")
        .replace("kind: ical", "kind: ftp")
        .replace("poll: 5m", "poll: 1s")
        .replace(": alice}", ": mallory}")
    )
    with pytest.raises(RotaError) as caught:
        parse_rota(bad)
    text = str(caught.value)
    assert "source.kind: expected ical, caldav or json" in text
    assert "source.url: 'file:///etc/passwd' is not an http:// or https:// URL" in text
    assert "source.poll: must be at least 10 seconds" in text
    assert "no person named 'mallory'" in text
    with pytest.raises(RotaError, match="needs layers, a source, or both"):
        parse_rota("people: []\nschedules: [{name: x, time_zone: UTC}]")


async def test_readyz_and_metrics_say_which_copy_answers(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "voipalert.db", clock)
    async with feed_server() as server, aiohttp.ClientSession() as session:
        rota = parse_rota(ROTA.replace("URL", server.put("d.ics", DAYS)))
        await store.replace_rota(rota)
        app = build_app(
            store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
            config=IngestConfig(), clock=clock,
        )  # fmt: skip
        runner, port = await start_http(app, "127.0.0.1", 0)
        poller = SourcePoller(store, app[INTAKE], clock, session, SourcesConfig())
        base = f"http://127.0.0.1:{port}"

        async def ready() -> dict[str, str]:
            async with session.get(f"{base}/readyz") as response:
                assert response.status == 200
                body: dict[str, str] = (await response.json())["rota_sources"]
                return body

        async def metrics() -> str:
            async with session.get(f"{base}/metrics") as response:
                return await response.text()

        try:
            assert await ready() == {"day": "none (not fetched yet)"}
            assert await poller.poll_due() == ["day"]
            assert await ready() == {"day": "live"}
            assert 'voipalert_rota_source{schedule="day",state="live"} 1.0' in await metrics()
            server.down = True
            clock.advance(300)
            await poller.check(rota.schedules[0], rota.schedules[0].source, rota)  # type: ignore[arg-type]
            assert await ready() == {
                "day": "cached since 2026-03-02T10:00:00+00:00 (HTTP 503 Service Unavailable)"
            }
            text = await metrics()
            assert 'voipalert_rota_source{schedule="day",state="cached"} 1.0' in text
            assert 'voipalert_rota_source_copy_age_seconds{schedule="day"} 300.0' in text
        finally:
            await runner.cleanup()
            await store.close()


def test_oncall_says_which_copy_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "voipalert.toml"
    database = tmp_path / "voipalert.db"
    config.write_text(f'[database]\npath = "{database}"\n')

    async def fill() -> None:
        # Fetch once through the poller into the database the command reads.
        store = await Store.open(database, FakeClock(START))
        async with feed_server() as server, aiohttp.ClientSession() as session:
            rota = parse_rota(ROTA.replace("URL", server.put("d.ics", DAYS)))
            (tmp_path / "rota.yaml").write_text(dump_rota(rota))
            await store.replace_rota(rota)
            app = build_app(
                store, wake=lambda: None, sip_state=lambda: SipState.REGISTERED,
                config=IngestConfig(), clock=FakeClock(START),
            )  # fmt: skip
            await SourcePoller(store, app[INTAKE], FakeClock(START), session).poll_due()
        await store.close()

    asyncio.run(fill())
    assert main(["--config", str(config), "oncall", "--at", "2026-03-02T12:00Z"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("day: at 2026-03-02 12:00 UTC: alice (live source, 2026-03-02 08:00")
    assert out[1] == "  source (ical): live"
    # Beyond the stored window: the stored body is expanded again around that instant.
    assert main(["--config", str(config), "oncall", "--at", "2026-09-15T12:00Z"]) == 0
    assert "alice (live source, 2026-09-15 08:00 UTC" in capsys.readouterr().out
    assert main(["--config", str(config), "oncall", "--at", "2026-09-15T21:00Z"]) == 0
    assert "bob (layer fallback" in capsys.readouterr().out
    # The server is gone: --fetch says so and answers from the stored copy.
    assert main(["--config", str(config), "oncall", "--fetch", "--at", "2026-03-02T12:00Z"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "alice (live source" in out[0]
    assert out[1].startswith("  source (ical): fetch failed (") and out[1].endswith("; live")
