"""Races around one call, against the real service and the testbed: two of {API ack, API
resolve, Alertmanager "resolved", the callee hanging up, the ring timeout, a key press}
land at once, at a phase of the call (before the answer, at the answer, during the prompt,
during the menu, at a key press), at random offsets from a seed printed on failure.
SIGTERM joins the pairs in its own test (it ends the process).

After every round the invariants of docs/call-lifecycle.md are checked:

* the HTTP API answered within 1 s the whole time (a probe asks every 100 ms);
* every attempt has exactly one terminal outcome, with a coherent ``answered_at`` (within
  half a second of the moment the phone answered), SIP status and end;
* our RTP to the phone stopped within 100 ms of the recorded end (packets are captured on
  the loopback interface with kernel timestamps);
* an ack or resolve accepted by the API is never followed by another call for that alert;
* the final status follows from the events (a resolve resolves, an API ack acknowledges);

and after all rounds, the process holds exactly the descriptors it held before them.

The default run draws one phase per pair (15 rounds) plus the ack-then-resolve case that
once lost an acknowledgement; ``-m soak`` runs every combination many times
(``VOIPALERT_SOAK_ROUNDS``, default 300). ``VOIPALERT_RACE_SEED`` replays a seed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
from testbed import BotSpec, Testbed, TestbedError

from tests.conftest import TestbedFactory
from tests.e2e.race_tools import HttpProbe, RtpSniffer, open_fds, parse_time, probing
from tests.e2e.server import Server, running_server
from tests.net.sip_harness import free_port
from tests.requires import need_root
from voipalert.ingest.convert import group_dedup_key

pytestmark = pytest.mark.testbed

EVENTS: Final = ("api_ack", "api_resolve", "am_resolved", "far_bye", "ring_timeout", "key_press")
PHASES: Final = ("before_answer", "at_answer", "mid_prompt", "menu", "at_key")
RING_SECONDS: Final = 5  # the rota's minimum
LANES: Final = 4  # rounds that run at once, one controllable phone each
ROUND_SECONDS: Final = 45.0
HTTP_SLOWEST_SECONDS: Final = 1.0
RTP_END_TOLERANCE_SECONDS: Final = 0.1
RTP_GAP_TOLERANCE_SECONDS: Final = 1.0
ANSWER_TOLERANCE_SECONDS: Final = 0.5
TERMINAL: Final = {"done", "cancelled", "interrupted"}


@dataclass(frozen=True, slots=True)
class Combo:
    first: str
    second: str
    phase: str

    def __str__(self) -> str:
        return f"{self.first}+{self.second}@{self.phase}"


def combos() -> Iterator[Combo]:
    for first, second in itertools.combinations(EVENTS, 2):
        for phase in PHASES:
            if phase == "before_answer" and "key_press" in (first, second):
                continue  # no key before the answer
            if phase != "before_answer" and "ring_timeout" in (first, second):
                continue  # the ring timeout ends only an unanswered call
            yield Combo(first, second, phase)


def draw(rng: random.Random) -> list[Combo]:
    """One phase per pair, at random, and the named regression case."""
    by_pair: dict[tuple[str, str], list[Combo]] = {}
    for combo in combos():
        by_pair.setdefault((combo.first, combo.second), []).append(combo)
    chosen = [rng.choice(options) for options in by_pair.values()]
    return [Combo("api_ack", "api_resolve", "mid_prompt"), *chosen]


def rota(testbed: Testbed, lanes: list[str]) -> str:
    people = "".join(
        f"  - name: {lane}-person\n    language: en\n    contacts:\n"
        f"      - sip: {testbed.uri(lane)}\n"
        for lane in lanes
    )
    nxt = testbed.uri("busy")  # the next step: rejects at once, and counts the calls
    people += f"  - name: next-person\n    language: en\n    contacts:\n      - sip: {nxt}\n"
    policies = "".join(
        f"  - name: page-{lane}\n    repeat: 0\n    steps:\n"
        f"      - targets: [{{person: {lane}-person}}]\n        timeout: 60s\n"
        f"        ring_timeout: {RING_SECONDS}s\n"
        "      - targets: [{person: next-person}]\n        timeout: 60s\n"
        "        ring_timeout: 5s\n"
        for lane in lanes
    )
    members = ", ".join([*(f"{lane}-person" for lane in lanes), "next-person"])
    return (
        f"version: 1\npeople:\n{people}teams:\n  - name: ops\n    members: [{members}]\n"
        f"policies:\n{policies}routes:\n  - name: all\n    default: true\n"
        f"    policy: page-{lanes[0]}\n    team: ops\n"
    )


def group_key(fingerprint: str) -> str:
    # One Alertmanager group per round: its alert is keyed by the group (the default).
    return f'{{}}:{{instance="{fingerprint}"}}'


def am_dedup_key(fingerprint: str) -> str:
    return group_dedup_key(group_key(fingerprint), {})


def alertmanager(status: str, fingerprint: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "DiskFull", "instance": fingerprint},
        "annotations": {"summary": "Disk full"},
        "startsAt": "2026-11-27T20:00:00Z",
        "endsAt": "2026-11-27T20:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    return {
        "version": "4", "groupKey": group_key(fingerprint), "truncatedAlerts": 0, "status": status,
        "receiver": "voipalert", "groupLabels": {}, "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"], "externalURL": "http://am.invalid",
        "alerts": [alert],
    }  # fmt: skip


@dataclass
class Round:
    combo: Combo
    lane: str
    seed: int
    alert_id: int = 0
    fingerprint: str = ""
    accepted_at: float | None = None  # wall clock when the phone answered
    key_at: float | None = None
    fired: dict[str, float] = field(default_factory=dict)  # event -> wall clock when done
    changed: set[str] = field(default_factory=set)  # API events that changed the alert
    api_stop_at: float | None = None  # an API ack/resolve accepted (its 200/202 received)
    notes: list[str] = field(default_factory=list)
    ends_before: int = 0  # "call to <lane> ended" lines in the service log before the round

    def where(self) -> str:
        return f"round {self.combo} on {self.lane} (seed {self.seed})"


class Matrix:
    """Runs rounds against one server and checks every invariant."""

    def __init__(self, server: Server, testbed: Testbed, sniffer: RtpSniffer) -> None:
        self.server = server
        self.testbed = testbed
        self.sniffer = sniffer

    async def play(self, combo: Combo, lane: str, seed: int) -> Round:
        rng = random.Random(seed)
        r = Round(combo, lane, seed, fingerprint=f"fp-{lane}-{seed}")
        since = len(self.testbed.events(lane))
        r.ends_before = self.call_ends(lane)
        status, body = await self.server.request(
            "POST", "/api/v1/alerts",
            {"summary": "Disk full on SRV-DB-01", "severity": "critical",
             "policy": f"page-{lane}", "dedup_key": am_dedup_key(r.fingerprint)},
        )  # fmt: skip
        assert status == 202, body
        r.alert_id = int(body["id"])
        incoming = await asyncio.to_thread(
            self.testbed.wait_event, lane, "CALL_INCOMING", since, 20
        )
        assert incoming is not None, f"{r.where()}: the phone never rang"
        t_ring = time.time()  # noqa: TID251  # wall clock, to compare with stored times
        await self._drive(r, rng, t_ring)
        await self._settle(r, since)
        return r

    async def _drive(self, r: Round, rng: random.Random, t_ring: float) -> None:
        phase, pair = r.combo.phase, (r.combo.first, r.combo.second)
        if phase == "before_answer":
            if "ring_timeout" in pair:
                t0 = t_ring + RING_SECONDS + rng.uniform(-0.4, 0.3)
            else:
                t0 = t_ring + rng.uniform(0.3, 1.5)
        else:
            await self._sleep_until(t_ring + rng.uniform(0.2, 0.8))
            await self._command(r, "accept")
            r.accepted_at = time.time()  # noqa: TID251
            base = r.accepted_at
            t0 = (
                base
                + {
                    "at_answer": rng.uniform(0.0, 0.15),
                    "mid_prompt": rng.uniform(1.0, 5.0),
                    "menu": rng.uniform(6.5, 9.5),
                    "at_key": rng.uniform(1.0, 8.0),
                }[phase]
            )
        if phase == "at_key":
            await self._sleep_until(t0)
            await self._fire(r, "key_press")
            r.key_at = r.fired.pop("key_press")
            t0 += rng.uniform(-0.2, 0.3)
        times = [t0, t0 + rng.uniform(0.0, 0.6)]
        rng.shuffle(times)
        await asyncio.gather(*(self._at(r, t, event) for t, event in zip(times, pair, strict=True)))

    async def _at(self, r: Round, when: float, event: str) -> None:
        await self._sleep_until(when)
        await self._fire(r, event)

    async def _fire(self, r: Round, event: str) -> None:
        try:
            await self._fire_event(r, event)
        except aiohttp.ClientConnectionError as exc:  # only once SIGTERM closed the API
            r.notes.append(f"http: {event}: {exc!r}")
        r.fired[event] = time.time()  # noqa: TID251

    async def _fire_event(self, r: Round, event: str) -> None:
        s = self.server
        if event == "api_ack":
            status, body = await s.request("POST", f"/api/v1/alerts/{r.alert_id}/ack")
            assert status in (200, 409), body  # 409: closed meanwhile (policy exhausted)
            if status == 200 and body["changed"]:
                r.changed.add(event)
                r.api_stop_at = r.api_stop_at or time.time()  # noqa: TID251
        elif event == "api_resolve":
            status, body = await s.request("POST", f"/api/v1/alerts/{r.alert_id}/resolve")
            assert status == 200, body
            r.changed.add(event)
            r.api_stop_at = r.api_stop_at or time.time()  # noqa: TID251
        elif event == "am_resolved":
            payload = alertmanager("resolved", r.fingerprint)
            status, body = await s.request("POST", "/api/v1/hooks/alertmanager", payload)
            assert status == 202, body
            if body["results"][0]["action"] != "resolved":
                r.notes.append(f"alertmanager: {body['results'][0]['action']}")
                return  # the alert had closed already (policy exhausted): nothing to resolve
            r.changed.add(event)
            r.api_stop_at = r.api_stop_at or time.time()  # noqa: TID251
        elif event == "far_bye":
            await self._command(r, "hangup")
        elif event == "key_press":
            await self._command(r, "sndcode", "1")

    async def _command(self, r: Round, command: str, params: str = "") -> None:
        try:
            await asyncio.to_thread(self.testbed.command, r.lane, command, params)
        except TestbedError as exc:  # no call any more to hang up or press a key in
            r.notes.append(f"{command}: {exc}")

    @staticmethod
    async def _sleep_until(when: float) -> None:
        await asyncio.sleep(max(0.0, when - time.time()))  # noqa: TID251

    def call_ends(self, lane: str) -> int:
        """Calls to the lane's person that the service has finished (its log says so once
        per call, after the result is stored)."""
        text = self.server.log.read_text(errors="replace")
        return text.count(f"call to {lane}-person ended")

    async def _settle(self, r: Round, since: int) -> None:
        """Until the alert has nothing live, every call to the lane has ended in the service
        and on the phone, and 1.5 s stay quiet."""
        async with asyncio.timeout(ROUND_SECONDS):
            quiet_since, last = time.monotonic(), None
            while True:
                alert = await self.server.alert(r.alert_id)
                shape = [(a["id"], a["state"]) for a in alert["attempts"]]
                live = any(a["state"] in ("pending", "in_flight") for a in alert["attempts"])
                dialled = sum(
                    1 for a in alert["attempts"]
                    if a["person"] == f"{r.lane}-person" and a["started_at"] is not None
                )  # fmt: skip
                ended = self.call_ends(r.lane) - r.ends_before >= dialled
                if shape != last or live or not ended:
                    quiet_since, last = time.monotonic(), shape
                elif time.monotonic() - quiet_since > 1.5 and self._phone_idle(r.lane, since):
                    return
                await asyncio.sleep(0.25)

    def _phone_idle(self, lane: str, since: int) -> bool:
        events = [e.get("type") for e in self.testbed.events(lane)[since:]]
        return events.count("CALL_CLOSED") >= events.count("CALL_INCOMING")

    # ------------------------------------------------------------ invariants

    async def check(self, r: Round) -> None:
        alert = await self.server.alert(r.alert_id)
        where = f"{r.where()}: {alert['status']}, attempts {alert['attempts']}, notes {r.notes}"
        assert not [n for n in r.notes if n.startswith("http:")], where
        attempts = sorted(alert["attempts"], key=lambda a: a["id"])
        assert attempts, where
        for attempt in attempts:
            assert attempt["state"] in TERMINAL, where
            if attempt["state"] != "interrupted":
                assert attempt["outcome"] is not None, where
            started, ended = parse_time(attempt["started_at"]), parse_time(attempt["ended_at"])
            assert ended is not None, where
            if started is not None:
                assert ended >= started, where
        first = attempts[0]
        assert first["person"] == f"{r.lane}-person", where
        self._check_answer(r, first, where)
        self._check_rtp(r, first, where)
        if r.api_stop_at is not None:
            later = [a for a in attempts if (parse_time(a["started_at"]) or 0) > r.api_stop_at]
            assert not later, f"called again after the API stopped the alert: {where}"
        if {"api_resolve", "am_resolved"} & r.changed:
            assert alert["status"] == "resolved", where
        elif "api_ack" in r.changed:
            assert alert["status"] == "acknowledged", where

    def _check_answer(self, r: Round, first: dict[str, Any], where: str) -> None:
        answered = parse_time(first["answered_at"])
        if r.accepted_at is None:
            assert answered is None, f"answered_at without an answer: {where}"
            return
        if answered is None:
            # The stop crossed the phone's 200 (CANCEL and 200 in flight together): only
            # possible when a stop was fired right at the answer.
            stops = [t for e, t in r.fired.items() if e != "key_press"]
            assert stops and min(stops) - r.accepted_at < 0.5, f"answer not recorded: {where}"
            return
        assert abs(answered - r.accepted_at) < ANSWER_TOLERANCE_SECONDS, where
        assert first["sip_status"] == 200, where

    def _check_rtp(self, r: Round, first: dict[str, Any], where: str) -> None:
        bot = self.testbed.bots[r.lane]
        # baresip takes an even RTP port (RFC 3550 §11): below an odd first port of its range.
        dports = range(bot.rtp_ports[0] - 1, bot.rtp_ports[1] + 2)
        started = parse_time(first["started_at"]) or 0.0
        last = self.sniffer.last_to(dports, started)
        ended = parse_time(first["ended_at"])
        assert ended is not None, where
        if parse_time(first["answered_at"]) is None:
            return
        flows = self.sniffer.flows(started)
        if last is None:
            # The callee hung up (or a stop came) in the same instant as the answer: the
            # call may end before its first packet's slot. Anything later must have audio.
            stops = [t for e, t in r.fired.items() if e != "key_press"]
            accepted = r.accepted_at
            assert accepted is not None and stops and min(stops) - accepted < 0.1, (
                f"no RTP to {bot.rtp_ports} for an answered call: {flows} {where}"
            )
            return
        late = last - ended
        assert late <= RTP_END_TOLERANCE_SECONDS, f"RTP went on {late:.3f} s after the end: {where}"
        assert late >= -RTP_END_TOLERANCE_SECONDS - 0.05, (
            f"end recorded {-late:.3f} s late: {where}"
        )


def seed_from_env() -> int:
    raw = os.environ.get("VOIPALERT_RACE_SEED")
    return int(raw) if raw else random.SystemRandom().randrange(2**32)


def lanes_for(n: int) -> list[str]:
    """Controllable phones (answer, key and hang-up on command): the testbed's load
    accounts, in manual-answer mode."""
    return [f"load{i + 1:02d}" for i in range(n)]


def bots(lanes: list[str]) -> list[BotSpec]:
    return [*(BotSpec(lane, "noanswer") for lane in lanes), BotSpec("busy", "busy")]


async def run_matrix(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path, plan: list[Combo], seed: int
) -> None:
    lanes = lanes_for(LANES)
    tb = testbed_factory(bots(lanes))
    rtp = free_port(even=True)
    settings = {"media__rtp_port_min": str(rtp), "media__rtp_port_max": str(rtp + 99)}
    print(f"race matrix: seed {seed}, {len(plan)} rounds")
    with RtpSniffer(range(rtp, rtp + 100)) as sniffer:
        async with running_server(tb, rota(tb, lanes), tmp_path, cache, **settings) as server:
            matrix = Matrix(server, tb, sniffer)
            assert server.process is not None
            pid = server.process.pid
            async with probing(server.url, server.token) as probe:
                # Warm up (prompts rendered, pools started), then take the baseline.
                await matrix.check(
                    await matrix.play(Combo("far_bye", "api_ack", "mid_prompt"), lanes[0], seed)
                )
                await probe.pause()
                await asyncio.sleep(1.0)
                baseline = open_fds(pid)
                probe.resume()
                queue: asyncio.Queue[tuple[int, Combo]] = asyncio.Queue()
                for i, combo in enumerate(plan):
                    queue.put_nowait((i, combo))

                async def lane_worker(lane: str) -> None:
                    while not queue.empty():
                        i, combo = queue.get_nowait()
                        played = await matrix.play(combo, lane, seed + i + 1)
                        await matrix.check(played)

                try:
                    async with asyncio.TaskGroup() as group:
                        for lane in lanes:
                            group.create_task(lane_worker(lane))
                except* AssertionError as failures:
                    raise failures.exceptions[0] from None
                _assert_http(probe, seed)
            await _assert_fds_back(pid, baseline, seed)
            log = server.log.read_text(errors="replace")
            for bad in ("Traceback", "Bad file descriptor", "Task exception was never retrieved"):
                assert bad not in log, f"seed {seed}: {bad!r} in the service log"


def _assert_http(probe: HttpProbe, seed: int) -> None:
    assert probe.answered > 20, f"seed {seed}: the probe barely ran"
    assert not probe.failures, f"seed {seed}: {probe.failures[:5]}"
    slowest = f"seed {seed}: slowest {probe.slowest:.2f} s ({probe.slowest_path})"
    assert probe.slowest < HTTP_SLOWEST_SECONDS, slowest


async def _assert_fds_back(pid: int, baseline: list[str], seed: int) -> None:
    for _ in range(40):  # connections of the last requests may take a moment to close
        now = open_fds(pid)
        if now == baseline:
            return
        await asyncio.sleep(0.25)
    extra = sorted(set(now) - set(baseline))
    missing = sorted(set(baseline) - set(now))
    raise AssertionError(f"seed {seed}: descriptors changed: +{extra} -{missing}")


def _need_root() -> None:
    need_root("the race tests capture RTP on loopback (AF_PACKET)")


async def test_race_matrix(testbed_factory: TestbedFactory, tmp_path: Path, cache: Path) -> None:
    _need_root()
    seed = seed_from_env()
    await run_matrix(testbed_factory, tmp_path, cache, draw(random.Random(seed)), seed)


@pytest.mark.soak
async def test_race_matrix_soak(
    testbed_factory: TestbedFactory, tmp_path: Path, cache: Path
) -> None:
    _need_root()
    seed = seed_from_env()
    rounds = int(os.environ.get("VOIPALERT_SOAK_ROUNDS", "300"))
    every = list(combos())
    plan = [every[i % len(every)] for i in range(rounds)]
    random.Random(seed).shuffle(plan)
    await run_matrix(testbed_factory, tmp_path, cache, plan, seed)


# ------------------------------------------------------------------ SIGTERM


SIGTERM_PARTNERS: Final = ("api_ack", "api_resolve", "am_resolved", "far_bye", "key_press")


async def test_sigterm_races(testbed_factory: TestbedFactory, tmp_path: Path, cache: Path) -> None:
    """SIGTERM while three calls are up: one whose key was pressed a second before (it must
    stay acknowledged, and nobody is called again after the restart), one with another
    event right at the SIGTERM, one still ringing with another event at the SIGTERM."""
    _need_root()
    seed = seed_from_env()
    rng = random.Random(seed)
    lanes = lanes_for(3)
    tb = testbed_factory(bots(lanes))
    rtp = free_port(even=True)
    settings = {"media__rtp_port_min": str(rtp), "media__rtp_port_max": str(rtp + 99)}
    partner = rng.choice(SIGTERM_PARTNERS)
    ringing_partner = rng.choice([e for e in SIGTERM_PARTNERS if e != "key_press"])
    print(f"SIGTERM races: seed {seed}, answered+{partner}, ringing+{ringing_partner}")
    with RtpSniffer(range(rtp, rtp + 100)) as sniffer:
        async with running_server(tb, rota(tb, lanes), tmp_path, cache, **settings) as server:
            matrix = Matrix(server, tb, sniffer)
            rounds = [
                Round(Combo("key_press", "sigterm", "mid_prompt"), lanes[0], seed),
                Round(Combo(partner, "sigterm", "mid_prompt"), lanes[1], seed),
                Round(Combo(ringing_partner, "sigterm", "before_answer"), lanes[2], seed),
            ]
            since = {r.lane: len(tb.events(r.lane)) for r in rounds}
            for r in rounds:
                r.fingerprint = f"fp-{r.lane}-{seed}"
                status, body = await server.request(
                    "POST", "/api/v1/alerts",
                    {"summary": "Disk full", "policy": f"page-{r.lane}",
                     "dedup_key": am_dedup_key(r.fingerprint)},
                )  # fmt: skip
                assert status == 202, body
                r.alert_id = int(body["id"])
            for r in rounds:
                assert await asyncio.to_thread(
                    tb.wait_event, r.lane, "CALL_INCOMING", since[r.lane], 20
                ), r.where()
            for r in rounds[:2]:
                await matrix._command(r, "accept")
                r.accepted_at = time.time()  # noqa: TID251
            sigterm_at = time.time() + rng.uniform(2.5, 4.0)  # noqa: TID251
            await matrix._sleep_until(sigterm_at - 1.0)
            await matrix._fire(rounds[0], "key_press")  # a second before the SIGTERM
            offsets = [rng.uniform(-0.3, 0.3) for _ in range(2)]
            await asyncio.gather(
                matrix._at(rounds[1], sigterm_at + offsets[0], partner),
                matrix._at(rounds[2], sigterm_at + offsets[1], ringing_partner),
                _sigterm_at(server, sigterm_at),
            )
            await server.start()  # the same database: what was stored, and what comes next
            await asyncio.sleep(RING_SECONDS + 3)
            acked = await server.alert(rounds[0].alert_id)
            where = f"seed {seed}: {acked}"
            assert acked["status"] == "acknowledged", where
            assert acked["acknowledged_via"] == "call", where
            assert len(acked["attempts"]) == 1, f"called again after the key: {where}"
            for r in rounds:
                alert = await server.alert(r.alert_id)
                first = min(alert["attempts"], key=lambda a: a["id"])
                text = f"seed {seed}, {r.combo}: {alert}"
                assert first["state"] in TERMINAL, text
                matrix._check_rtp(r, first, text)
                if r.api_stop_at is not None:
                    assert all(
                        (parse_time(a["started_at"]) or 0) <= r.api_stop_at
                        for a in alert["attempts"]
                    ), f"called after the API stopped it: {text}"


async def _sigterm_at(server: Server, when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))  # noqa: TID251
    code = await asyncio.to_thread(server.stop, signal.SIGTERM, 30)
    assert code == 0, server.log.read_text()[-3000:]
