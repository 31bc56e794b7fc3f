"""A heartbeat monitor in the real ``voipalert serve``: the URL ``voipalert heartbeat add``
prints is beaten with curl; when the beats stop, serve opens the alert and the on-call phone
rings (and acknowledges); the next beat resolves it."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from testbed import Testbed

from tests.e2e.server import rota_yaml, running_server
from tests.requires import need_program


def curl(url: str) -> int:
    curl_path = need_program("curl", "apt-get install curl")
    return subprocess.run([curl_path, "-fsS", "-o", "/dev/null", url], timeout=10).returncode


async def test_a_missed_heartbeat_calls_and_the_next_beat_resolves(
    testbed: Testbed, tmp_path: Path, cache: Path
) -> None:
    rota = rota_yaml(testbed, "ack", "noanswer", ring=20)
    async with running_server(
        testbed, rota, tmp_path, cache, heartbeat__check_seconds="0.5"
    ) as server:  # fmt: skip
        added = await asyncio.to_thread(
            server.cli, "heartbeat", "add", "backup", "--every", "10s", "--route", "all"
        )
        assert added.returncode == 0, added.stderr
        url = added.stdout.strip()
        assert url.startswith(f"{server.url}/api/v1/heartbeat/hb_")
        assert await asyncio.to_thread(curl, url) == 0

        async def missed() -> dict[str, object] | None:
            _, listing = await server.request("GET", "/api/v1/alerts?source=heartbeat")
            return listing["alerts"][0] if listing["alerts"] else None

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while (alert := await missed()) is None:
            assert loop.time() < deadline, "no alert for the missed heartbeat"
            await asyncio.sleep(0.25)
        assert alert["summary"] == "Heartbeat backup missed: nothing for 10 seconds"
        acked = await server.wait_alert(int(str(alert["id"])), "acknowledged", 60)
        assert acked["acknowledged_by"] == "ack-person"  # the phone rang, a key was pressed

        assert await asyncio.to_thread(curl, url) == 0  # it is back
        resolved = await server.wait_alert(int(str(alert["id"])), "resolved", 10)
        assert resolved["resolved_by"] == "heartbeat"
