"""``voipalert demo``: the whole chain on one machine, for a newcomer.

It starts the SIP testbed (Kamailio and two baresip phones: alice answers but never presses a
key, like a voicemail box; bob answers and presses 1), runs ``serve`` in this process with a
two-person rota in a temporary directory, fires a sample Prometheus Alertmanager alert
through the real webhook, and prints the timeline as it happens: the alert received, alice
called and answering without a key, the escalation to bob, his key, the acknowledgement.
It also prints the web console's address and a one-time log-in; with ``--stay`` the
console keeps serving after the acknowledgement, to look at the alert's timeline.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import aiohttp

from voipalert.app.serve import Running, serve
from voipalert.clock import SystemClock
from voipalert.console.passwords import hash_password
from voipalert.errors import VoipAlertError
from voipalert.rotafile.parse import parse_rota
from voipalert.settings import Settings
from voipalert.store import Scope, Store
from voipalert.store.users import Role, UserTables

DEMO_TIMEOUT_SECONDS: Final = 180.0
DEMO_USER: Final = "demo"
DEMO_ROTA: Final = """
version: 1
people:
  - name: alice
    language: en
    contacts:
      - sip: {alice}
  - name: bob
    language: en
    contacts:
      - sip: {bob}
teams:
  - name: ops
    members: [alice, bob]
policies:
  - name: demo
    repeat: 0
    steps:
      - targets: [{{person: alice}}]
        timeout: 2m
        ring_timeout: 20s
      - targets: [{{person: bob}}]
        timeout: 2m
        ring_timeout: 20s
routes:
  - name: everything
    default: true
    policy: demo
    team: ops
"""


class DemoError(VoipAlertError):
    pass


def find_testbed() -> ModuleType:
    """The repository's ``sip-testbed/testbed.py`` next to the package (a clone with an
    editable install), else in the working directory when it is a clone of the repository
    (a regular install run from the clone). The package's own copy comes first: code in
    whatever directory the command happens to run from is not executed when it is there."""
    here = Path(__file__).resolve()
    for directory in (here.parents[2] / "sip-testbed", Path.cwd() / "sip-testbed"):
        script = directory / "testbed.py"
        if script.is_file():
            if str(directory) not in sys.path:
                sys.path.insert(0, str(directory))
            spec = importlib.util.spec_from_file_location("testbed", script)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules["testbed"] = module
            spec.loader.exec_module(module)
            return module
    raise DemoError(
        "the demo needs the SIP testbed of the voipalert repository (sip-testbed/): "
        "run it from a clone of the repository"
    )


async def run_demo(
    settings: Settings, out: Callable[[str], None] = print, *, stay: bool = False
) -> int:
    testbed_module = find_testbed()
    missing = testbed_module.missing_programs()
    if missing:
        raise DemoError(
            f"the demo needs {', '.join(missing)}; install them with: "
            "sudo bash sip-testbed/install-deps.sh"
        )
    spec = testbed_module.BotSpec
    bots = [spec("alice", "voicemail"), spec("bob", "dtmf", "1", 4.0)]
    testbed = await asyncio.to_thread(testbed_module.start, bots=bots)
    try:
        with tempfile.TemporaryDirectory(prefix="voipalert-demo-") as tmp:
            return await _demo(settings, testbed, Path(tmp), out, stay)
    finally:
        await asyncio.to_thread(testbed.stop)


async def _demo(
    settings: Settings, testbed: Any, directory: Path, out: Callable[[str], None], stay: bool
) -> int:
    out(f"SIP testbed: Kamailio on {testbed.registrar} with two phones:")
    out(f"  alice {testbed.uri('alice')}  answers, never presses a key (a voicemail box)")
    out(f"  bob   {testbed.uri('bob')}  answers and presses 1 after 4 seconds")
    demo_settings = _settings(settings, testbed, directory)
    token, password = await _prepare(demo_settings, testbed)
    ready: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.ensure_future(serve(demo_settings, ready.set_result, stop))
    try:
        async with asyncio.timeout(60):
            await asyncio.wait([ready, server], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
        if server.done():
            return server.result()
        running = ready.result()
        out(f"voipalert: HTTP API on 127.0.0.1:{running.http_port}, SIP registration "
            f"{running.registration}")  # fmt: skip
        console = f"http://127.0.0.1:{running.http_port}/"
        out(f"web console: {console}  log in as {DEMO_USER!r} with the one-time password "
            f"{password} (valid for this demo's database only)")  # fmt: skip
        timeline = _Timeline(out, testbed)
        async with asyncio.timeout(DEMO_TIMEOUT_SECONDS):
            acked = await _fire_and_follow(running.http_port, token, timeline)
        if stay:
            out(f"the web console stays up at {console} (the alert's timeline: "
                f"{console}alerts/1); Ctrl-C stops the demo")  # fmt: skip
            await server  # serve ends on SIGINT / SIGTERM
        return 0 if acked else 1
    finally:
        stop.set()
        await server


def _settings(settings: Settings, testbed: Any, directory: Path) -> Settings:
    ports = testbed_ports()
    data = settings.model_dump(mode="python")
    data["sip"] |= {
        "registrar": testbed.registrar, "username": "voipalert", "domain": testbed.host,
        "password": testbed.users["voipalert"], "local_port": ports[0], "transport": "udp",
        "local_host": "127.0.0.1", "advertised_host": None, "outbound_proxy": None,
    }  # fmt: skip
    data["media"] |= {"rtp_port_min": ports[1], "rtp_port_max": ports[1] + 99}
    data["http"] |= {"host": "127.0.0.1", "port": ports[2]}
    data["smtp"] |= {"enabled": False}
    data["database"] |= {"path": directory / "demo.db"}
    data["call"] |= {"repetitions": 1, "pause_seconds": 2.0}
    data["engine"] |= {"idle_poll_seconds": 1.0}
    return Settings.model_validate(data)


def testbed_ports() -> tuple[int, int, int]:
    import socket

    def free(kind: int) -> int:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    rtp = free(socket.SOCK_DGRAM) & ~1
    return free(socket.SOCK_DGRAM), rtp, free(socket.SOCK_STREAM)


async def _prepare(settings: Settings, testbed: Any) -> tuple[str, str]:
    """The rota, an API token for the demo's own requests, and a console user with a fresh
    random password (the database lives in a temporary directory: the password dies with
    the demo)."""
    rota = parse_rota(DEMO_ROTA.format(alice=testbed.uri("alice"), bob=testbed.uri("bob")))
    password = secrets.token_urlsafe(12)
    hashed = await asyncio.to_thread(hash_password, password)
    async with await Store.open(settings.database.location, SystemClock()) as store:
        await store.replace_rota(rota, actor="demo")
        _, secret = await store.create_api_token("demo", frozenset({Scope.ADMIN}))
        await UserTables(store, SystemClock()).add_user(DEMO_USER, Role.ADMIN, hashed, "demo")
    return secret, password


class _Timeline:
    def __init__(self, out: Callable[[str], None], testbed: Any) -> None:
        self._out = out
        self._testbed = testbed
        self._start = asyncio.get_running_loop().time()
        self._seen: set[tuple[object, ...]] = set()
        self._bot_events = {"alice": 0, "bob": 0}

    def say(self, key: tuple[object, ...], text: str) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        elapsed = asyncio.get_running_loop().time() - self._start
        self._out(f"[{elapsed:6.1f} s] {text}")

    def phone(self, bot: str) -> None:
        """What ``bot``'s phone saw since the last look (from its own event log)."""
        labels = {
            "CALL_ESTABLISHED": "answers; voipalert speaks the alert and the menu",
            "CALL_CLOSED": "call ended",
        }
        events = self._testbed.events(bot)
        for index in range(self._bot_events[bot], len(events)):
            kind = events[index].get("type")
            if kind in labels:
                self.say((bot, index), f"{bot}: {labels[kind]}")
        self._bot_events[bot] = len(events)


async def _fire_and_follow(port: int, token: str, timeline: _Timeline) -> bool:
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{url}/api/v1/hooks/alertmanager", json=_sample_alert()) as response:
            body = await response.json()
            if response.status != 202:
                raise DemoError(f"the webhook answered {response.status}: {body}")
        alert_id = body["results"][0]["id"]
        timeline.say(("alert",), f"alert #{alert_id} received over the Alertmanager webhook: "
                                 '"Disk full on SRV-DB-01" (critical)')  # fmt: skip
        while True:
            async with http.get(f"{url}/api/v1/alerts/{alert_id}") as response:
                alert = await response.json()
            _report(timeline, alert)
            if alert["status"] != "triggered":
                return bool(alert["status"] == "acknowledged")
            await asyncio.sleep(0.2)


def _report(timeline: _Timeline, alert: dict[str, Any]) -> None:
    for attempt in sorted(alert["attempts"], key=lambda a: a["id"]):
        person, key = attempt["person"], attempt["id"]
        timeline.say((key, "call"), f"calling {person} ({attempt['contact']['address']})")
        outcome = attempt["outcome"]
        if not outcome:
            timeline.phone(person)
        if outcome == "answered_no_ack":
            timeline.say((key, "end"), f"{person}: no key pressed: answered is not "
                                       "acknowledged, escalating")  # fmt: skip
        elif outcome == "acknowledged":
            timeline.say((key, "end"), f"{person} pressed {attempt['digit']}")
        elif outcome:
            timeline.say((key, "end"), f"{person}: {outcome.replace('_', ' ')}")
        if outcome:
            timeline.phone(person)
    if alert["status"] == "acknowledged":
        timeline.say(("ack",), f"acknowledged by {alert['acknowledged_by']}; the chain stops")
    elif alert["status"] != "triggered":
        timeline.say(("end",), f"alert {alert['status'].replace('_', ' ')}")


def _sample_alert() -> dict[str, Any]:
    labels = {"alertname": "DiskFull", "instance": "srv-db-01", "severity": "critical"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "Disk full on SRV-DB-01"},
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.invalid/graph",
        "fingerprint": "d3m0a1e7f00d0001",
    }
    return {
        "version": "4", "groupKey": '{}:{alertname="DiskFull"}', "truncatedAlerts": 0,
        "status": "firing", "receiver": "voipalert", "groupLabels": {"alertname": "DiskFull"},
        "commonLabels": labels, "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager.invalid", "alerts": [alert],
    }  # fmt: skip
