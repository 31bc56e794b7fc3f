"""The whole chain with a real Alertmanager and the real ``voipalert serve``: three alerts of
one group fired in Alertmanager reach voipalert through Alertmanager's own webhook as one
alert and one call; the callee's key press acknowledges it and a silence appears in
Alertmanager, made by that person; the group resolves in Alertmanager (which, silenced,
tells nobody), voipalert notices, resolves the alert and expires the silence."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
from testbed import Testbed

from tests.e2e.server import rota_yaml, running_server
from tests.ingest.alertmanager import config_yaml, free_port, start_alertmanager
from voipalert.clock import SystemClock


def host_down(*hosts: str, ended: bool = False) -> list[dict[str, Any]]:
    extra = {"endsAt": SystemClock().now_utc().isoformat()} if ended else {}
    return [{"labels": {"alertname": "HostDown", "instance": f"{h}:9100"}, **extra} for h in hosts]


async def test_key_press_silences_the_group_in_alertmanager(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    am_port = free_port()
    am_url = f"http://127.0.0.1:{am_port}"
    rota = rota_yaml(testbed, "ack", "noanswer", ring=20)
    async with running_server(
        testbed, rota, tmp_path, cache,
        hooks__alertmanager__default__url=am_url,
        hooks__silence_poll_seconds="0.2",
        hooks__silence_check_seconds="1",
    ) as server:  # fmt: skip
        hook = f"{server.url}/api/v1/hooks/alertmanager"
        am = await start_alertmanager(
            tmp_path / "am", config_yaml({"voipalert": hook}, server.token, {}), am_port
        )
        try:
            async with aiohttp.ClientSession() as session:
                await am.post_alerts(session, host_down("db1", "db2", "db3"))

                async def acknowledged() -> dict[str, Any] | None:
                    _, listing = await server.request("GET", "/api/v1/alerts")
                    done = [a for a in listing["alerts"] if a["status"] == "acknowledged"]
                    return done[0] if done else None

                alert = await _eventually(acknowledged, 60, "the key press")
                _, listing = await server.request("GET", "/api/v1/alerts")
                assert len(listing["alerts"]) == 1  # one alert for the group of three
                assert alert["summary"] == "3 alerts: HostDown on db1, db2, db3"
                assert alert["acknowledged_by"] == "ack-person"
                detail = await server.alert(alert["id"])
                assert [a["outcome"] for a in detail["attempts"]] == ["acknowledged"]  # one call

                async def silence() -> dict[str, Any] | None:
                    active = [
                        s for s in await am.silences(session) if s["status"]["state"] == "active"
                    ]
                    return active[0] if active else None

                made = await _eventually(silence, 20, "the silence")
                assert made["createdBy"] == "ack-person"
                assert f"alert {alert['id']}" in made["comment"]

                await am.post_alerts(session, host_down("db1", "db2", "db3", ended=True))
                resolved = await server.wait_alert(alert["id"], "resolved", 30)
                assert resolved["resolved_by"] == "alertmanager"

                async def expired() -> bool:
                    url = f"{am.url}/api/v2/silence/{made['id']}"
                    async with session.get(url) as response:
                        return bool((await response.json())["status"]["state"] == "expired")

                await _eventually(expired, 20, "the silence expired")
                detail = await server.alert(alert["id"])
                assert [(s["action"], s["state"]) for s in detail["silences"]] == [
                    ("silence", "done"),
                    ("expire", "done"),
                ]
        finally:
            am.stop()


async def _eventually(check: Any, seconds: float, what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for: {what}")
