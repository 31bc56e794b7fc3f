"""``voipalert serve`` with two trunks (two Kamailio testbeds, a bot behind each): the first
trunk's PBX crashes in the middle of an escalation, while the first person's phone rings;
that attempt ends at its ring timeout and is not placed again (it rang), the next attempt
goes through the second trunk and the person's key acknowledges; ``/readyz`` and
``/metrics`` name the failing trunk (docs/sip-failover.md). The failover inside one attempt
is tested in tests/net/test_trunk_failover.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from testbed import BotSpec

from tests.conftest import TestbedFactory
from tests.e2e.server import Server, rota_yaml, running_server
from tests.net.sip_harness import free_port


async def _get(server: Server, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        return response.status, await response.text()


async def test_first_trunk_lost_mid_escalation_the_next_attempt_fails_over(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path
) -> None:
    bots = [BotSpec("noanswer", "noanswer"), BotSpec("ack", "dtmf", "1", 1.0)]
    first = testbed_factory(bots)
    second = testbed_factory([BotSpec("ack", "dtmf", "1", 1.0)])
    trunk = {
        "name": "backup", "local_port": free_port(), "registrar": second.registrar,
        "username": "voipalert", "password": second.users["voipalert"],
    }  # fmt: skip
    rota = rota_yaml(first, "noanswer", "ack", ring=5)  # contacts at the first trunk's domain
    async with running_server(
        first, rota, tmp_path, cache, sip__name="main", sip__trunk=json.dumps([trunk])
    ) as server:
        status, text = await _get(server, "/readyz")
        ready = json.loads(text)
        assert status == 200 and ready["status"] == "ok", ready
        assert list(ready["trunks"]) == ["main", "backup"]
        assert {t["state"] for t in ready["trunks"].values()} == {"registered"}

        status, body = await server.request(
            "POST", "/api/v1/alerts", {"summary": "Trunk test", "severity": "critical"}
        )
        assert status == 202, body
        # The first person's phone rings through the first trunk; then that PBX crashes.
        rang = await asyncio.to_thread(first.wait_event, "noanswer", "CALL_INCOMING", 0, 20)
        assert rang is not None
        assert first.crash_kamailio() > 0

        alert = await server.wait_alert(int(body["id"]), "acknowledged", 60)
        attempts = sorted(alert["attempts"], key=lambda a: a["id"])
        # The ringing attempt ended without a failover: it had rung, so never a second ring.
        assert [a["person"] for a in attempts] == ["noanswer-person", "ack-person"], attempts
        assert "failed trunks" not in (attempts[0]["detail"] or "")
        assert attempts[1]["outcome"] == "acknowledged"
        detail = attempts[1]["detail"]
        # The main trunk's crash showed at once (the CANCEL to it came back ICMP unreachable,
        # and so did its registration): the next attempt started on the backup trunk.
        assert detail.endswith("via trunk backup"), detail
        assert await asyncio.to_thread(second.wait_event, "ack", "CALL_ESTABLISHED", 0, 0)

        status, text = await _get(server, "/readyz")
        ready = json.loads(text)
        assert status == 200 and ready["ready"] and ready["status"] == "degraded", ready
        assert ready["trunks"]["main"]["state"] == "failing"
        assert ready["trunks"]["backup"]["state"] == "registered"
        assert any(r.startswith("sip trunk main failing") for r in ready["degraded"])
        _, metrics = await _get(server, "/metrics")
        lines = set(metrics.splitlines())
        assert 'voipalert_sip_trunk_up{trunk="main"} 0.0' in lines
        assert 'voipalert_sip_trunk_up{trunk="backup"} 1.0' in lines
        assert any(
            ln.startswith('voipalert_sip_trunk_failovers_total{trunk="main"}') for ln in lines
        )
