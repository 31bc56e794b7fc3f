"""Call-in through ``voipalert serve`` as a user runs it: ``[callin] enabled``, the rota's
person calls voipalert's extension through Kamailio from the phone voipalert is ringing
at that moment, hears the alert (Piper), presses 1: the alert is acknowledged by
"call-in", and voipalert's own ringing call to that phone is cancelled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from testbed import Testbed

from tests.e2e.server import running_server

pytestmark = pytest.mark.testbed
PHONE = "caller"  # the session testbed's bot that rings without answering and dials on command


def rota(uri: str) -> str:
    return f"""
version: 1
people:
  - name: alice
    language: en
    contacts:
      - sip: {uri}
policies:
  - name: page
    repeat: 0
    steps:
      - targets:
          - person: alice
        timeout: 120s
        ring_timeout: 60s
routes:
  - name: all
    default: true
    policy: page
"""


async def test_calling_in_acknowledges_and_cancels_the_ringing_call(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    tb = testbed
    async with running_server(
        tb, rota(tb.uri(PHONE)), tmp_path, cache,
        CALLIN__ENABLED="true", CALLIN__PIN_REQUIRED="false",
    ) as server:  # fmt: skip
        # Call-in takes calls once its phrases are in the speech cache.
        for _ in range(600):
            if "call-in: answering calls" in server.log.read_text():
                break
            await asyncio.sleep(0.1)
        assert "call-in: answering calls" in server.log.read_text()
        since_start = len(tb.events(PHONE))
        status, body = await server.request(
            "POST", "/api/v1/alerts", {"summary": "Disk full on SRV-DB-01"}
        )
        assert status == 202, body
        alert_id = int(body["id"])
        # voipalert rings alice's phone (which never answers by itself)...
        assert await asyncio.to_thread(tb.wait_event, PHONE, "CALL_INCOMING", since_start, 30)
        # ...and alice calls voipalert back from it.
        since = tb.dial(PHONE, "voipalert")
        established = await asyncio.to_thread(tb.wait_event, PHONE, "CALL_ESTABLISHED",
                                              since, 15)  # fmt: skip
        assert established is not None
        await asyncio.sleep(2.0)  # the welcome, then the alert: a key interrupts it
        tb.command(PHONE, "sndcode", "1")
        alert = await server.wait_alert(alert_id, "acknowledged", 30)
        assert (alert["acknowledged_by"], alert["acknowledged_via"]) == ("alice", "call-in")
        (attempt,) = alert["attempts"]
        # The outbound call, still ringing, was cancelled: acknowledged once, by call-in.
        for _ in range(100):
            attempt = (await server.alert(alert_id))["attempts"][0]
            if attempt["state"] != "in_flight":
                break
            await asyncio.sleep(0.2)
        assert attempt["state"] == "cancelled" or attempt["outcome"] == "cancelled", attempt
        assert await asyncio.to_thread(tb.wait_event, PHONE, "CALL_CLOSED", since, 30)
        # /metrics counts what the call came to.
        async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as got:
            metrics = await got.text()
        for event in ("call", "identified", "acknowledged"):
            assert f'voipalert_callin_events_total{{event="{event}"}} 1.0' in metrics, event
        assert 'event="wrong_pin"' not in metrics
