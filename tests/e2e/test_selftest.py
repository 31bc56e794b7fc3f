"""The self-test in the real ``voipalert serve`` against a test-owned testbed (its own
Kamailio, never the session's shared one): the test call to a bot is acknowledged and /readyz
and /metrics say so; then that Kamailio is stopped, the registration is lost and the next
test call fails, /readyz turns "degraded" with both reasons, /metrics counts it, and the
alert the self-test opens reaches a status webhook receiver."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
from testbed import BotSpec, free_port

from tests.conftest import TestbedFactory
from tests.e2e.server import Server, running_server, team_rota
from tests.ingest.status_receiver import Receiver, receiving


async def _get(server: Server, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        return response.status, await response.text()


async def _ready(server: Server) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as response:
        body = await response.json()
        assert isinstance(body, dict)
        return body


def _metric(text: str, name: str) -> float | None:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


async def _until_metric(server: Server, name: str, seconds: float) -> float:
    async with aiohttp.ClientSession() as http:
        for _ in range(int(seconds / 0.25)):
            async with http.get(server.url + "/metrics") as response:
                value = _metric(await response.text(), name)
            if value:
                return value
            await asyncio.sleep(0.25)
    raise AssertionError(f"{name} never became non-zero")


async def test_a_bot_answers_then_a_stopped_kamailio_degrades(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path
) -> None:
    # Not the usual 5060: once this Kamailio stops, another test's testbed may take its
    # port, and the test call would reach that one's "ack" bot (seen on the shared machine).
    own = testbed_factory([BotSpec("ack", "dtmf", "1", 1.0)], free_port())
    receiver = Receiver()
    async with receiving(receiver):
        async with running_server(
            own, team_rota(own, ["ack"]), tmp_path, cache,
            selftest__number=own.uri("ack"),
            selftest__every="10s",
            selftest__ring_timeout_seconds="5",
            selftest__require_ack="true",
            selftest__registration_grace_seconds="1",
            selftest__check_seconds="0.2",
            sip__keepalive_seconds="1",
            outbound__targets__ops__url=receiver.url,
            outbound__targets__ops__events='["created"]',
            outbound__poll_seconds="0.2",
        ) as server:  # fmt: skip
            success = await _until_metric(
                server, "voipalert_selftest_last_success_timestamp_seconds", 30
            )
            assert success > 0
            ready = await _ready(server)
            assert (ready["status"], ready["degraded"]) == ("ok", [])

            await asyncio.to_thread(own.stop)  # Kamailio (and the bot behind it) gone
            await _until_metric(server, "voipalert_phone_path_degraded", 20)
            await _until_metric(server, "voipalert_selftest_failures_total", 30)
            _, text = await _get(server, "/metrics")
            assert _metric(text, "voipalert_sip_registration_losses_total") == 1.0
            ready = await _ready(server)
            assert ready["status"] in ("degraded", "not ready")
            reasons = " | ".join(ready["degraded"])
            assert "SIP registration lost" in reasons
            assert f"test call to {own.uri('ack')} failed" in reasons
            await receiver.wait_until(lambda: bool(receiver.got), 20)
    [created] = receiver.bodies()  # one alert per outage, not one per failing part
    assert created["event"] == "created"
    assert created["alert"]["source"] == "selftest"
    assert created["alert"]["summary"].startswith("voipalert phone path failing: ")
