"""Trigger to INVITE: from the webhook request to the INVITE on the wire (warm prompt cache).

    python -m benchmarks.trigger_to_invite [ALERTS]

Starts the SIP testbed (a busy bot, so each call ends at once with 486), runs ``serve``
in this process on a temporary database, posts ALERTS alerts (default 30) one after the
other to ``POST /api/v1/alerts``, and times each from just before the HTTP request leaves
to the moment the endpoint hands the first INVITE for that alert to its socket (the wire
trace hook). The prompt cache is warmed by a first alert that is not counted.

Design bar (docs/architecture.md §13): under 50 ms median with a rendered prompt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from voipalert.app.demo import find_testbed, testbed_ports
from voipalert.app.serve import Running, serve
from voipalert.clock import SystemClock
from voipalert.rotafile.parse import parse_rota
from voipalert.settings import Settings
from voipalert.store import Scope, Store

ROTA = """
version: 1
people:
  - name: pat
    language: en
    contacts: [{{sip: "{uri}"}}]
teams:
  - name: ops
    members: [pat]
policies:
  - name: once
    repeat: 0
    steps:
      - targets: [{{person: pat}}]
        timeout: 1m
        ring_timeout: 10s
routes:
  - name: all
    default: true
    policy: once
    team: ops
"""


class InviteClock(logging.Handler):
    """Records when each INVITE leaves (the wire trace logs every message it sends)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[float] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if (
            message.startswith("send ")
            and "\nINVITE " in message
            and "Authorization" not in message
        ):
            self.sent.append(time.perf_counter())
            self.changed.set()


async def measure(alerts: int) -> list[float]:
    testbed_module = find_testbed()
    testbed = await asyncio.to_thread(
        testbed_module.start, bots=[testbed_module.BotSpec("busy", "busy")]
    )
    clock = InviteClock()
    wire = logging.getLogger("voipalert.sip.wire")
    wire.setLevel(logging.DEBUG)
    wire.addHandler(clock)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return await _run(testbed, Path(tmp), alerts, clock)
    finally:
        wire.removeHandler(clock)
        await asyncio.to_thread(testbed.stop)


async def _run(testbed: object, directory: Path, alerts: int, clock: InviteClock) -> list[float]:
    sip_port, rtp, http_port = testbed_ports()
    settings = Settings.model_validate({
        "sip": {"registrar": testbed.registrar, "username": "voipalert",  # type: ignore[attr-defined]
                "password": testbed.users["voipalert"], "local_port": sip_port},  # type: ignore[attr-defined]
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 99},
        "http": {"port": http_port},
        "database": {"path": directory / "bench.db", "synchronous": "FULL"},
        "tts": {"cache_dir": directory / "cache"},
        "engine": {"idle_poll_seconds": 5.0},
    })  # fmt: skip
    rota = parse_rota(ROTA.format(uri=testbed.uri("busy")))  # type: ignore[attr-defined]
    async with await Store.open(settings.database.path, SystemClock()) as store:
        await store.replace_rota(rota)
        _, token = await store.create_api_token("bench", frozenset({Scope.ADMIN}))
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(settings, ready.set_result, stop))
    await ready
    latencies: list[float] = []
    try:
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for n in range(alerts + 1):
                before = len(clock.sent)
                clock.changed.clear()
                started = time.perf_counter()
                body = {"summary": f"Disk full on SRV-DB-{n:02d}", "dedup_key": f"bench-{n}"}
                async with http.post(f"http://127.0.0.1:{http_port}/api/v1/alerts", json=body) as r:
                    assert r.status == 202, await r.text()
                async with asyncio.timeout(10):
                    while len(clock.sent) == before:
                        clock.changed.clear()
                        await clock.changed.wait()
                if n:  # the first alert warms the prompt cache
                    latencies.append(clock.sent[before] - started)
                await asyncio.sleep(0.3)  # let the 486 come back before the next alert
    finally:
        stop.set()
        await server
    return latencies


def main() -> None:
    alerts = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    logging.basicConfig(level=logging.WARNING)
    latencies = asyncio.run(measure(alerts))
    ms = sorted(x * 1000 for x in latencies)
    print(f"trigger to INVITE on the wire, {len(ms)} alerts, {os.cpu_count()} cores")
    print(f"  median {statistics.median(ms):.1f} ms   p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms"
          f"   min {ms[0]:.1f} ms   max {ms[-1]:.1f} ms")  # fmt: skip
    print("  (includes the HTTP request, the SQLite commit with synchronous=FULL, the engine's")
    print("   wake-up, planning, the committed call intent, and the INVITE's serialization)")


if __name__ == "__main__":
    main()
