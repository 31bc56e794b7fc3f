"""A mass alert at scale, against SIPp phones (docs/capacity.md).

    python -m benchmarks.mass_alert --people N --channels C [--ring-ms 2000] [--key-ms 4000]
        [--shares 70,10,10,10] [--ring-timeout 8] [--no-cancel]

Starts the SIPp phones of ``benchmarks.sipp_far_end`` and ``voipalert serve`` as a
subprocess (no registrar: calls go straight to SIPp) with ``[engine] max_concurrent_calls =
C``, a rota of N people in one team (each person's one contact is a SIPp phone that
acknowledges, answers without a key, never answers, or is busy, in the given percentages),
posts one mass alert to that team and follows every attempt through ``GET
/api/v1/alerts/{id}`` until every person has an outcome. Prints:

* time to reach everyone (the alert's creation to the last attempt's end) against the bound
  ``people x mean call time / C`` (call time: the slot taken to the call's end);
* outcomes per person, and the checks: every person recorded, nobody called twice;
* the prompt renders during the alert (the ``voipalert_tts_syntheses`` counter of
  ``/metrics``: one per language and message, not one per call);
* the order of dialling against the team's order (fairness);
* serve's CPU seconds and peak memory, per call;
* unless ``--no-cancel``: a second mass alert, resolved once C calls are in progress:
  how long until every live call is gone, and whether anything was dialled after.

Every wait is bounded; SIPp and serve are stopped by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.sipp_far_end import Phones, phones
from voipalert.clock import SystemClock

CLOCK = SystemClock()
REPO = Path(__file__).resolve().parents[1]
KINDS = ("acks", "silent", "unanswered", "busy")
POLL_SECONDS = 2.0


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kinds_for(people: int, shares: list[int]) -> list[str]:
    """Each person's kind of phone, spread evenly through the team (the share of each kind
    is the same in every stretch of the call order, so a slow tail is not all no-answers)."""
    total = sum(shares)
    out: list[str] = []
    given = [0] * len(shares)
    for n in range(people):
        # The kind furthest behind its share so far goes next.
        lag = [(n + 1) * s / total - g for s, g in zip(shares, given, strict=True)]
        k = max(range(len(shares)), key=lambda i: lag[i])
        given[k] += 1
        out.append(KINDS[k])
    return out


def rota_yaml(people: list[str], at: Phones) -> str:
    address = {"acks": at.acks, "silent": at.silent, "unanswered": at.unanswered,
               "busy": at.busy}  # fmt: skip
    lines = ["version: 1", "people:"]
    for n, kind in enumerate(people):
        lines += [f"  - name: p{n:05d}", "    language: en", "    contacts:",
                  f'      - sip: "sip:p{n:05d}@{address[kind]}"']  # fmt: skip
    members = ", ".join(f"p{n:05d}" for n in range(len(people)))
    lines += [
        "teams:", "  - name: everyone", f"    members: [{members}]",
        "policies:", "  - name: page", "    repeat: 0", "    steps:",
        "      - targets: [{person: p00000}]", "        timeout: 60s",
        "routes:", "  - name: all", "    default: true", "    policy: page", "    team: everyone",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


@dataclass
class Serve:
    directory: Path
    env: dict[str, str]
    url: str
    token: str = ""
    process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "voipalert", *args], env=self.env, cwd=self.directory,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    def spawn(self) -> subprocess.Popen[bytes]:
        with (self.directory / "serve.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "voipalert", "serve"], env=self.env, cwd=self.directory,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def start(self) -> None:
        self.process = self.spawn()
        for _ in range(1200):  # 120 s: the first start renders the fixed phrases
            if self.process.poll() is not None:
                raise SystemExit(f"serve exited; see {self.directory / 'serve.log'}")
            try:
                async with aiohttp.ClientSession() as http, http.get(f"{self.url}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("serve did not become healthy in 120 s")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def usage(self) -> tuple[float, int]:
        """serve's CPU seconds so far (user + system) and its peak resident memory, bytes."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        peak = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM"))
        return cpu, peak * 1024


class Api:
    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def call(self, method: str, path: str, body: object = None) -> Any:
        async with self.http.request(method, self.url + path, json=body) as r:
            if r.status >= 300:
                raise SystemExit(f"{method} {path}: {r.status} {await r.text()}")
            return await r.json()

    async def syntheses(self) -> int:
        async with self.http.get(self.url + "/metrics") as r:
            text = await r.text()
        for line in text.splitlines():
            if line.startswith("voipalert_tts_syntheses_total "):
                return int(float(line.split()[1]))
        raise SystemExit("/metrics has no voipalert_tts_syntheses_total")


def when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


async def follow(api: Api, alert_id: int, people: int, limit: float) -> dict[str, Any]:
    """The alert once every person has an outcome and no attempt is live (bounded)."""
    deadline = time.monotonic() + limit
    live_seen = 0
    while True:
        alert: dict[str, Any] = await api.call("GET", f"/api/v1/alerts/{alert_id}")
        attempts = alert["attempts"]
        live = sum(1 for a in attempts if a["state"] in ("pending", "in_flight"))
        dialling = sum(1 for a in attempts if a["state"] == "in_flight")
        live_seen = max(live_seen, dialling)
        finished = {a["person"] for a in attempts if a["state"] not in ("pending", "in_flight")}
        if len(finished) >= people and live == 0:
            alert["max_in_flight_seen"] = live_seen
            return alert
        if time.monotonic() > deadline:
            raise SystemExit(f"not finished in {limit:.0f} s: {len(finished)}/{people} done")
        await asyncio.sleep(POLL_SECONDS)


def report(alert: dict[str, Any], kinds: list[str], channels: int) -> None:
    attempts = alert["attempts"]
    created = when(alert["created_at"])
    assert created is not None
    per_person = Counter(a["person"] for a in attempts)
    ends = [when(a["ended_at"]) for a in attempts]
    last_end = max(e for e in ends if e is not None)
    durations = [
        (e - s).total_seconds()
        for a in attempts
        if (s := when(a["started_at"])) is not None and (e := when(a["ended_at"])) is not None
    ]
    mean_call = statistics.fmean(durations)
    bound = len(kinds) * mean_call / channels
    took = (last_end - created).total_seconds()
    print(f"  time to reach everyone {took:.1f} s; bound (people x mean call {mean_call:.2f} s"
          f" / C) {bound:.1f} s; ratio {took / bound:.3f}")  # fmt: skip
    seen = alert["max_in_flight_seen"]
    print(f"  most calls in progress seen by the poll: {seen} (C = {channels})")
    outcomes = Counter(a["outcome"] or a["state"] for a in attempts)
    print(f"  outcomes: {dict(sorted(outcomes.items()))}")
    expected = Counter(kinds)
    print(f"  phones: {dict(sorted(expected.items()))}")
    mismatched = 0
    want = {"acks": "acknowledged", "silent": "answered_no_ack", "unanswered": "no_answer",
            "busy": "busy"}  # fmt: skip
    by_person = {a["person"]: a for a in attempts}
    for n, kind in enumerate(kinds):
        got = by_person.get(f"p{n:05d}")
        if got is None or got["outcome"] != want[kind]:
            mismatched += 1
    missing = len(kinds) - len(per_person)
    twice = sum(1 for c in per_person.values() if c > 1)
    print(f"  every person recorded: {missing == 0} (missing {missing}); called twice: {twice};"
          f" outcome not the phone's kind: {mismatched}")  # fmt: skip
    # Fairness: the order calls took a line against the team's order.
    started = sorted(
        (s, int(a["person"][1:])) for a in attempts if (s := when(a["started_at"])) is not None
    )
    displacement = [abs(rank - index) for rank, (_, index) in enumerate(started)]
    print(f"  dialling order vs team order: max displacement {max(displacement)}, "
          f"mean {statistics.fmean(displacement):.1f} places")  # fmt: skip


async def cancel_phase(api: Api, people: int, channels: int, log: Path) -> None:
    posted = await api.call("POST", "/api/v1/alerts", {
        "summary": "Drill over, stand down", "kind": "mass", "team": "everyone",
        "dedup_key": "mass-cancel",
    })  # fmt: skip
    alert_id = posted["alert_id"] if "alert_id" in posted else posted["id"]
    in_flight = 0
    for _ in range(300):  # 30 s at most for the lines to fill
        alert = await api.call("GET", f"/api/v1/alerts/{alert_id}")
        in_flight = sum(1 for a in alert["attempts"] if a["state"] == "in_flight")
        if in_flight >= min(channels, people):
            break
        await asyncio.sleep(0.1)
    resolved_at = CLOCK.now_utc().timestamp()
    await api.call("POST", f"/api/v1/alerts/{alert_id}/resolve")
    gone = None
    for _ in range(300):  # 30 s bound
        alert = await api.call("GET", f"/api/v1/alerts/{alert_id}")
        live = sum(1 for a in alert["attempts"] if a["state"] in ("pending", "in_flight"))
        if live == 0:
            gone = CLOCK.now_utc().timestamp() - resolved_at
            break
        await asyncio.sleep(0.05)
    # The API shows the attempts cancelled as soon as the resolve is committed; when each
    # call really ended (CANCEL answered, or BYE after the last phrase) is in serve's log.
    for _ in range(100):  # 10 s for the calls to end and the log to say so
        ended, dialled, resolved = calls_after_resolve(log, alert_id)
        if resolved is not None and len(ended) >= in_flight:
            break
        await asyncio.sleep(0.1)
    last = max(ended) - resolved if ended and resolved is not None else float("nan")
    print(
        f"cancellation: {in_flight} calls in progress at the resolve; no attempt live in the "
        f"API after {gone if gone is None else round(gone, 2)} s; {len(ended)} calls ended, "
        f"the last {last:.2f} s after the resolve (serve's log); dialled after: {dialled}"
    )
    print(f"  load average: {load_average()}")


def log_size(log: Path) -> int:
    return log.stat().st_size


def loop_stalls(log: Path, start: int) -> Counter[str]:
    """serve's loop-watch reports from byte ``start`` of its log on, by cause (busy and
    blocked are ours; preempted is the machine giving our core to another process)."""
    found: Counter[str] = Counter()
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    for line in text.splitlines():
        if "event loop stalled" in line and "(" in line:
            found[line.split("(", 1)[1].split(":", 1)[0]] += 1
    return found


def calls_after_resolve(log: Path, alert_id: int) -> tuple[list[float], int, float | None]:
    """From serve's log: when each call of the alert ended after its resolve, how many were
    dialled after it, and when the resolve was taken (the log's own clock)."""
    resolved: float | None = None
    ended: list[float] = []
    dialled = 0
    tag = f"[alert={alert_id} "
    for line in log.read_text(errors="replace").splitlines():
        if f"[alert={alert_id}]" in line and f"alert {alert_id} resolved" in line:
            resolved = datetime.fromisoformat(line[:23]).timestamp()
        elif resolved is not None and tag in line:
            at = datetime.fromisoformat(line[:23]).timestamp()
            if " ended: " in line:
                ended.append(at)
            elif "voipalert.engine" in line and "] calling " in line and at > resolved:
                dialled += 1
    return ended, dialled, resolved


async def run(args: argparse.Namespace) -> None:
    shares = [int(x) for x in args.shares.split(",")]
    kinds = kinds_for(args.people, shares)
    print(f"mass alert: {args.people} people, C = {args.channels}, {os.cpu_count()} cores, "
          f"ring {args.ring_ms} ms, key after {args.key_ms} ms, shares {args.shares} "
          f"(acks/silent/unanswered/busy), ring timeout {args.ring_timeout} s")  # fmt: skip
    print(f"  load average before: {load_average()}")
    directory = Path(tempfile.mkdtemp(prefix="mass-alert-"))
    try:
        async with phones(directory, port=args.sip_port, ring_ms=args.ring_ms,
                          key_ms=args.key_ms, trace=args.trace_sip) as at:  # fmt: skip
            serve = make_serve(directory, args)
            (directory / "rota.yaml").write_text(rota_yaml(kinds, at))
            imported = await asyncio.to_thread(serve.cli, "rota", "import", "rota.yaml")
            if imported.returncode:
                raise SystemExit(imported.stdout + imported.stderr)
            made = await asyncio.to_thread(
                serve.cli, "token", "create", "bench", "--scope", "admin", "--json"
            )
            serve.token = json.loads(made.stdout)["token"]
            await serve.start()
            try:
                await measure(serve, args, kinds)
            finally:
                serve.stop()
    finally:
        if args.keep:
            print(f"  serve's and SIPp's logs are in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def make_serve(directory: Path, args: argparse.Namespace) -> Serve:
    rtp = 20000 + (args.sip_port % 100) * 100
    http = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOIPALERT_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "VOIPALERT_SIP__LOCAL_PORT": str(free_port(socket.SOCK_DGRAM)),
        "VOIPALERT_MEDIA__RTP_PORT_MIN": str(rtp),
        "VOIPALERT_MEDIA__RTP_PORT_MAX": str(rtp + 4 * args.channels + 200),
        "VOIPALERT_HTTP__PORT": str(http),
        "VOIPALERT_DATABASE__PATH": str(directory / "voipalert.db"),
        "VOIPALERT_TTS__CACHE_DIR": str(args.tts_cache),
        "VOIPALERT_TTS__VOICES_DIR": str(REPO / "voices"),
        "VOIPALERT_ENGINE__MAX_CONCURRENT_CALLS": str(args.channels),
        "VOIPALERT_ENGINE__MASS_RING_TIMEOUT_SECONDS": str(args.ring_timeout),
        "VOIPALERT_CALL__REPETITIONS": "1",
        "VOIPALERT_CALL__PAUSE_SECONDS": "1",
    }
    return Serve(directory, env, f"http://127.0.0.1:{http}")


async def measure(serve: Serve, args: argparse.Namespace, kinds: list[str]) -> None:
    headers = {"Authorization": f"Bearer {serve.token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        api = Api(http, serve.url)
        renders_before = await api.syntheses()
        cpu_before, _ = serve.usage()
        building = int(CLOCK.now_utc().timestamp()) % 900 + 100
        log_start = log_size(serve.directory / "serve.log")
        posted = await api.call("POST", "/api/v1/alerts", {
            # A new message each run, so its render is counted (not found in the cache).
            "summary": f"Evacuate building {building} now by the north stairs", "kind": "mass",
            "team": "everyone", "dedup_key": "mass-1",
        })  # fmt: skip
        alert_id = posted["alert_id"] if "alert_id" in posted else posted["id"]
        # Bounded: five times a generous bound, plus a minute.
        per_call = args.ring_timeout + args.key_ms / 1000 + 20
        limit = 5 * args.people * per_call / args.channels + 60
        alert = await follow(api, alert_id, args.people, limit)
        cpu_after, peak = serve.usage()
        renders = await api.syntheses() - renders_before
        print(f"  load average after: {load_average()}")
        report(alert, kinds, args.channels)
        calls = len(alert["attempts"])
        print(f"  prompt renders during the alert: {renders} (one language, one message)")
        print(f"  serve CPU {cpu_after - cpu_before:.1f} s for {calls} calls "
              f"({1000 * (cpu_after - cpu_before) / calls:.0f} ms a call); "
              f"peak RSS {peak / 2**20:.0f} MiB")  # fmt: skip
        stalls = loop_stalls(serve.directory / "serve.log", log_start)
        print(f"  serve's event loop stalls over its threshold (loop watch, docs/realtime.md §2), "
              f"by cause: {dict(sorted(stalls.items())) or 'none'}")  # fmt: skip
        if not args.no_cancel:
            await cancel_phase(api, args.people, args.channels, serve.directory / "serve.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--channels", type=int, default=30)
    parser.add_argument("--ring-ms", type=int, default=2000)
    parser.add_argument("--key-ms", type=int, default=4000)
    parser.add_argument("--shares", default="70,10,10,10", help="acks,silent,unanswered,busy")
    parser.add_argument("--ring-timeout", type=int, default=8)
    parser.add_argument("--sip-port", type=int, default=5090)
    parser.add_argument("--no-cancel", action="store_true")
    parser.add_argument("--trace-sip", action="store_true", help="SIPp's -trace_msg")
    parser.add_argument("--keep", action="store_true", help="keep the logs and the database")
    parser.add_argument(
        "--tts-cache", type=Path, default=REPO / ".pytest_cache" / "d" / "bench-mass-tts"
    )
    args = parser.parse_args()
    if len(args.shares.split(",")) != len(KINDS):
        parser.error("--shares takes four percentages: acks,silent,unanswered,busy")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
