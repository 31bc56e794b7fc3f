"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) for the tests, on
loopback, with its own storage directory and no clustering; its receiver posts to a
voipalert URL given by the test. Stopped through its own process group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.requires import need_program

START_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config_yaml(receivers: dict[str, str], token: str, routes: dict[str, str]) -> str:
    """A config with one webhook receiver per entry of ``receivers`` (name -> URL, with the
    voipalert token as Bearer credentials); ``routes`` sends an alertname to a receiver, the
    first receiver takes the rest. JSON is YAML, so no YAML writer is needed."""
    first = next(iter(receivers))
    config = {
        "route": {
            "receiver": first,
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [
                {
                    "receiver": receiver,
                    "matchers": [f'alertname="{name}"'],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "1s",
                }
                for name, receiver in routes.items()
            ],
        },
        "receivers": [
            {
                "name": name,
                "webhook_configs": [
                    {
                        "url": url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"credentials": token}},
                    }
                ],
            }
            for name, url in receivers.items()
        ],
    }
    return json.dumps(config, indent=2)


@dataclass
class Alertmanager:
    url: str
    process: subprocess.Popen[bytes]
    root: Path

    async def post_alerts(self, session: aiohttp.ClientSession, alerts: list[Any]) -> None:
        async with session.post(f"{self.url}/api/v2/alerts", json=alerts) as response:
            assert response.status == 200, await response.text()

    async def silences(self, session: aiohttp.ClientSession) -> list[Any]:
        async with session.get(f"{self.url}/api/v2/silences") as response:
            assert response.status == 200
            silences: list[Any] = await response.json()
            return silences

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    @property
    def log(self) -> str:
        return (self.root / "alertmanager.log").read_text(errors="replace")


def _launch(binary: str, root: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "alertmanager.yml").write_text(config)
    with (root / "alertmanager.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={root / 'alertmanager.yml'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.path={root / 'data'}",
                "--cluster.listen-address=",
                f"--web.external-url=http://127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    return process


async def start_alertmanager(root: Path, config: str, port: int) -> Alertmanager:
    binary = need_program(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager, or bash sip-testbed/install-deps.sh --tests",
    )
    process = _launch(binary, root, config, port)
    server = Alertmanager(f"http://127.0.0.1:{port}", process, root)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_SECONDS
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline and process.poll() is None:
            try:
                async with session.get(f"{server.url}/-/ready") as response:
                    if response.status == 200:
                        return server
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    server.stop()
    raise RuntimeError(f"Alertmanager did not start on port {port}:\n{server.log}")
