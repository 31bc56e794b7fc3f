"""``voipalert serve`` as a real process, wired to the SIP testbed, for end-to-end tests.

Each test gets its own database, ports and rota; the process is started in its own process
group and stopped by SIGTERM (checking it exits 0) or, for the crash test, SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from testbed import Testbed

from tests.e2e.stalls import SPAWN_MARK, STALL_MS, assert_no_stalls
from tests.net.sip_harness import free_port

REPO = Path(__file__).resolve().parents[2]


def rota_yaml(testbed: Testbed, first: str, second: str, *, ring: int = 6) -> str:
    """Two people whose phones are testbed bots, called one after the other."""
    return f"""
version: 1
people:
  - name: {first}-person
    language: en
    contacts:
      - sip: {testbed.uri(first)}
  - name: {second}-person
    language: en
    contacts:
      - sip: {testbed.uri(second)}
teams:
  - name: ops
    members: [{first}-person, {second}-person]
policies:
  - name: page
    repeat: 0
    steps:
      - targets:
          - person: {first}-person
        timeout: 60s
        ring_timeout: {ring}s
      - targets:
          - person: {second}-person
        timeout: 60s
        ring_timeout: {ring}s
routes:
  - name: all
    default: true
    policy: page
    team: ops
"""


def team_rota(testbed: Testbed, bots: list[str]) -> str:
    people = "".join(
        f"  - name: {bot}-person\n    language: en\n"
        f"    contacts:\n      - sip: {testbed.uri(bot)}\n"
        for bot in bots
    )
    members = ", ".join(f"{bot}-person" for bot in bots)
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: everyone\n    members: [{members}]\n"
        "policies:\n  - name: page\n    repeat: 0\n    steps:\n      - targets:\n"
        "          - team: everyone\n        timeout: 60s\n        ring_timeout: 10s\n"
        "routes:\n  - name: all\n    default: true\n    policy: page\n    team: everyone\n"
    )


@dataclass
class Server:
    directory: Path
    env: dict[str, str]
    http_port: int
    token: str = ""
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "serve.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voipalert", *args], env=self.env, cwd=self.directory,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    def spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            # Each run of serve appends to one log; the marker tells the stall check where a
            # run (and its start-up) begins.
            out.write(SPAWN_MARK.encode() + b"\n")
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voipalert", "serve"], env=self.env, cwd=self.directory,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self.process

    async def start(self) -> None:
        self.process = self.spawn()
        async with asyncio.timeout(60):
            while not await self._healthy():
                if self.process.poll() is not None:
                    raise AssertionError(f"serve exited: {self.log.read_text()[-3000:]}")
                await asyncio.sleep(0.1)

    async def _healthy(self) -> bool:
        try:
            async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        process = self.process
        if process is None:
            return None
        self.process = None
        if process.poll() is None:
            os.killpg(process.pid, sig)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            return None

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    async def alert(self, alert_id: int) -> dict[str, Any]:
        status, body = await self.request("GET", f"/api/v1/alerts/{alert_id}")
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def wait_alert(self, alert_id: int, status: str, seconds: float) -> dict[str, Any]:
        async with asyncio.timeout(seconds):
            while True:
                alert = await self.alert(alert_id)
                if alert["status"] == status:
                    return alert
                await asyncio.sleep(0.25)


def _free_tcp_port() -> int:
    return free_port(socket.SOCK_STREAM)


@asynccontextmanager
async def running_server(
    testbed: Testbed, rota: str, tmp_path: Path, cache: Path, **settings: str
) -> AsyncIterator[Server]:
    directory = tmp_path / "serve"
    directory.mkdir()
    rtp = free_port(even=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_SIP__REGISTRAR": testbed.registrar,
        "VOIPALERT_SIP__USERNAME": "voipalert",
        "VOIPALERT_SIP__PASSWORD": testbed.users["voipalert"],
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port()),
        "VOIPALERT_MEDIA__RTP_PORT_MIN": str(rtp),
        "VOIPALERT_MEDIA__RTP_PORT_MAX": str(rtp + 99),
        "VOIPALERT_HTTP__PORT": str(_free_tcp_port()),
        "VOIPALERT_DATABASE__PATH": str(directory / "voipalert.db"),
        "VOIPALERT_TTS__CACHE_DIR": str(cache),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_ENGINE__IDLE_POLL_SECONDS": "1",
        "VOIPALERT_CALL__REPETITIONS": "1",
        "VOIPALERT_CALL__PAUSE_SECONDS": "1",
        # Every e2e run watches serve's event loop (tests/e2e/stalls.py checks the log).
        "VOIPALERT_ENGINE__LOOP_STALL_MS": str(STALL_MS),
    }
    if os.environ.get("VOIPALERT_E2E_ASYNCIO_DEBUG") == "1":
        env["PYTHONASYNCIODEBUG"] = "1"
    env |= {f"VOIPALERT_{k.upper()}": v for k, v in settings.items()}
    server = Server(directory, env, int(env["VOIPALERT_HTTP__PORT"]))
    (directory / "rota.yaml").write_text(rota)
    imported = await asyncio.to_thread(server.cli, "rota", "import", "rota.yaml")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    created = await asyncio.to_thread(
        server.cli, "token", "create", "e2e", "--scope", "admin", "--json"
    )
    assert created.returncode == 0, created.stderr
    server.token = json.loads(created.stdout)["token"]
    await server.start()
    try:
        yield server
    finally:
        status = server.stop()
        assert status in (0, None), server.log.read_text()[-3000:]
        assert_no_stalls(server.log.read_text())
