"""Texts end to end: ``voipalert serve`` sends a SIP MESSAGE through the testbed's Kamailio
(digest-challenged like a call) to a baresip bot; the bot's reply "1" comes back through
Kamailio and acknowledges; a reply from a phone that was never texted gets 403 and changes
nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.e2e.server import Server, running_server

TEXTED = "ack2"
STRANGER = "caller"


def text_rota(testbed: Testbed) -> str:
    return f"""
version: 1
people:
  - name: texted-person
    contacts:
      - {{sip: "{testbed.uri(TEXTED)}", name: phone}}
    rules:
      - {{contact: phone, method: message}}
policies:
  - name: page
    steps:
      - targets: [{{person: texted-person}}]
        timeout: 120s
routes:
  - {{name: all, default: true, policy: page}}
"""


async def wait_log(testbed: Testbed, bot: str, needle: str, seconds: float = 20) -> str:
    async with asyncio.timeout(seconds):
        while True:
            log = testbed.bots[bot].log_file.read_text(errors="replace")
            if needle in log:
                return log
            await asyncio.sleep(0.1)


async def delivered(server: Server, alert_id: int, seconds: float = 30) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            alert = await server.alert(alert_id)
            outcomes = [a["outcome"] for a in alert["attempts"]]
            if outcomes == ["answered_no_ack"]:
                return alert
            await asyncio.sleep(0.2)


async def test_a_text_goes_out_and_the_reply_1_acknowledges(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path
) -> None:
    testbed = testbed_factory(
        [BotSpec.parse(f"{TEXTED}=busy"), BotSpec.parse(f"{STRANGER}=caller")]
    )
    async with running_server(testbed, text_rota(testbed), tmp_path, cache) as server:
        status, body = await server.request(
            "POST", "/api/v1/alerts", {"summary": "Disk full on SRV-DB-01", "severity": "critical"}
        )
        assert status == 202, body
        alert_id = int(body["id"])
        alert = await delivered(server, alert_id)
        attempt = alert["attempts"][0]
        assert (attempt["method"], attempt["rule"]) == ("message", 0)
        assert attempt["sip_status"] == 200 and attempt["contact"]["address"] == testbed.uri(TEXTED)
        log = await wait_log(testbed, TEXTED, "Reply 1 to acknowledge")
        assert f"voipalert alert #{alert_id} (critical). Reply 1 to acknowledge." in log
        assert "Disk full on SRV-DB-01" in log

        # A phone we never texted: Kamailio relays it (the caller is authenticated), we 403.
        await asyncio.to_thread(testbed.send_text, STRANGER, "voipalert", "1")
        await wait_log(testbed, STRANGER, "403 Not Expecting Texts From You")
        assert (await server.alert(alert_id))["status"] == "triggered"

        await asyncio.to_thread(testbed.send_text, TEXTED, "voipalert", "1")
        acked = await server.wait_alert(alert_id, "acknowledged", 20)
        assert acked["acknowledged_by"] == "texted-person"
        assert acked["acknowledged_via"] == "message"
