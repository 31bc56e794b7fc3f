"""Trigger to INVITE: from the webhook request to the INVITE on the wire (warm prompt cache).

    python -m benchmarks.trigger_to_invite [ALERTS] [--load N]

Starts the SIP testbed (a busy bot, so each call ends at once with 486), runs ``serve``
in this process on a temporary database, posts ALERTS alerts (default 30) one after the
other to ``POST /api/v1/alerts``, and times each from just before the HTTP request leaves
to the moment the endpoint hands the first INVITE for that alert to its socket (the wire
trace hook). The prompt cache is warmed by a first alert that is not counted.

With ``--load N`` the measure is taken under load: first a mass alert to N people whose
phones are SIPp's "silent" phone (benchmarks/sipp_far_end.py: answers after 200 ms, talks
back, never presses a key) puts N answered, full-duplex calls in progress (each repeats the
message for minutes), then the ALERTS alerts are timed as above while those calls go on.

Design bar (docs/architecture.md §13): under 50 ms median with a rendered prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.sipp_far_end import Phones, phones
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

LOAD_PEOPLE = """
  - name: l{n:04d}
    language: en
    contacts: [{{sip: "sip:l{n:04d}@{at}"}}]
"""


class InviteClock(logging.Handler):
    """Records when each INVITE leaves (the wire trace logs every message it sends)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[float] = []
        self.changed = asyncio.Event()
        self.load_answered = 0  # 200 OKs to the load calls' INVITEs

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if (
            message.startswith("send ")
            and "\nINVITE sip:l" not in message  # a load call's
            and "\nINVITE " in message
            and "Authorization" not in message
        ):
            self.sent.append(time.perf_counter())
            self.changed.set()
        elif message.startswith("recv ") and "SIP/2.0 200" in message and " INVITE" in message:
            if "<sip:l" in message.split("\nTo:", 1)[-1].split("\n", 1)[0]:
                self.load_answered += 1
                self.changed.set()


async def measure(alerts: int, load: int) -> list[float]:
    testbed_module = find_testbed()
    testbed = await asyncio.to_thread(
        testbed_module.start, bots=[testbed_module.BotSpec("busy", "busy")]
    )
    clock = InviteClock()
    wire = logging.getLogger("voipalert.sip.wire")
    wire.setLevel(logging.DEBUG)
    wire.propagate = False  # timed here, not printed (printing would be the load)
    wire.addHandler(clock)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if not load:
                return await _run(testbed, Path(tmp), alerts, clock, load, None)
            sip = _free_udp_port_block(4)
            async with phones(Path(tmp), port=sip, ring_ms=200) as far:
                return await _run(testbed, Path(tmp), alerts, clock, load, far)
    finally:
        wire.removeHandler(clock)
        await asyncio.to_thread(testbed.stop)


def _free_udp_port_block(size: int) -> int:
    """The first of ``size`` consecutive free UDP ports on loopback (SIPp's phones)."""
    for base in range(15090, 16000, size):
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + size):
                    s = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return base
    raise RuntimeError("no block of free UDP ports for SIPp")


async def _run(
    testbed: object,
    directory: Path,
    alerts: int,
    clock: InviteClock,
    load: int,
    far: Phones | None,
) -> list[float]:
    sip_port, rtp, http_port = testbed_ports()
    settings = Settings.model_validate({
        "sip": {"registrar": testbed.registrar, "username": "voipalert",  # type: ignore[attr-defined]
                "password": testbed.users["voipalert"], "local_port": sip_port},  # type: ignore[attr-defined]
        "media": {"rtp_port_min": rtp, "rtp_port_max": rtp + 99 + 4 * load},
        "http": {"port": http_port},
        "database": {"path": directory / "bench.db", "synchronous": "FULL"},
        "tts": {"cache_dir": directory / "cache"},
        "engine": {"idle_poll_seconds": 5.0, "max_concurrent_calls": load + 4},
        # A load call repeats the message until the run is over.
        "call": {"repetitions": 10, "pause_seconds": 5},
    })  # fmt: skip
    text = ROTA.format(uri=testbed.uri("busy"))  # type: ignore[attr-defined]
    if far is not None:
        people = "".join(LOAD_PEOPLE.format(n=n, at=far.silent) for n in range(load))
        members = ", ".join(f"l{n:04d}" for n in range(load))
        text = text.replace("teams:\n", f"teams:\n  - name: load\n    members: [{members}]\n")
        text = text.replace("people:\n", "people:\n" + people.lstrip("\n"), 1)
    rota = parse_rota(text)
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
            if load:
                await _start_load(http, http_port, clock, load)
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


async def _start_load(http: aiohttp.ClientSession, port: int, clock: InviteClock, n: int) -> None:
    body = {"summary": "Load test: stay on the line", "kind": "mass", "team": "load",
            "dedup_key": "load"}  # fmt: skip
    async with http.post(f"http://127.0.0.1:{port}/api/v1/alerts", json=body) as r:
        assert r.status == 202, await r.text()
    async with asyncio.timeout(30 + n / 5):
        while clock.load_answered < n:
            clock.changed.clear()
            await clock.changed.wait()
    print(f"{n} load calls answered and talking")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("alerts", nargs="?", type=int, default=30)
    parser.add_argument("--load", type=int, default=0, metavar="N")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    latencies = asyncio.run(measure(args.alerts, args.load))
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"trigger to INVITE on the wire, {len(ms)} alerts, {args.load} calls in progress, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"  median {statistics.median(ms):.1f} ms   p90 {ms[int(0.9 * (len(ms) - 1))]:.1f} ms"
          f"   p99 {ms[int(0.99 * (len(ms) - 1))]:.1f} ms"
          f"   min {ms[0]:.1f} ms   max {ms[-1]:.1f} ms")  # fmt: skip
    print("  (includes the HTTP request, the SQLite commit with synchronous=FULL, the engine's")
    print("   wake-up, planning, the committed call intent, and the INVITE's serialization)")


if __name__ == "__main__":
    main()
