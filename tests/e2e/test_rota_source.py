"""A schedule fed by a live iCalendar source in the real ``voipalert serve``: the poller
fetches it at start, ``/readyz`` says the copy is live, and an alert rings the person the
feed names (not the schedule's own fallback layer), who acknowledges."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from testbed import Testbed

from tests.e2e.server import rota_yaml, running_server
from tests.rota_sources.helpers import event, feed_server, ics
from voipalert.clock import SystemClock


def sourced_rota(testbed: Testbed, url: str) -> str:
    base = rota_yaml(testbed, "ack", "noanswer", ring=20)
    people = base.split("teams:")[0]
    return (
        people
        + f"""schedules:
  - name: desk
    time_zone: Europe/Paris
    source:
      kind: ical
      url: {url}
      poll: 10s
    layers:
      - name: fallback
        members: [noanswer-person]
        shift_length: 1
        shift_unit: days
        start: 2026-01-01
        handoff: "00:00"
policies:
  - name: desk
    steps:
      - targets:
          - schedule: desk
        timeout: 60s
        ring_timeout: 20s
routes:
  - name: all
    default: true
    policy: desk
"""
    )


async def test_alert_rings_whom_the_live_source_names(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    start = (SystemClock().now_utc() - timedelta(days=2)).strftime("%Y%m%dT000000Z")
    body = ics(event("desk", f"DTSTART:{start}", "DURATION:P1D", "ack-person", "RRULE:FREQ=DAILY"))
    async with feed_server() as feeds:
        rota = sourced_rota(testbed, feeds.put("desk.ics", body))
        async with running_server(testbed, rota, tmp_path, cache) as server:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while True:
                _, ready = await server.request("GET", "/readyz")
                if ready["rota_sources"] == {"desk": "live"}:
                    break
                assert loop.time() < deadline, ready
                await asyncio.sleep(0.25)
            status, created = await server.request(
                "POST", "/api/v1/alerts", {"summary": "Printer on fire", "severity": "critical"}
            )
            assert status == 202, created
            acked = await server.wait_alert(int(created["id"]), "acknowledged", 60)
            assert acked["acknowledged_by"] == "ack-person"
            oncall = await asyncio.to_thread(server.cli, "oncall")
            assert "ack-person (live source" in oncall.stdout, oncall.stdout + oncall.stderr
            assert "  source (ical): live" in oncall.stdout
