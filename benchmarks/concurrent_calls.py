"""Simultaneous calls from one process against the SIP testbed, with clean audio.

    python -m benchmarks.concurrent_calls [N ...] [--runs R]   (default: 16 24 32, 5 runs)
    python -m benchmarks.concurrent_calls --sipp 50 100 200 --runs 1 [--rate 20]
        [--analysis-workers K]

With ``--sipp`` the far end is SIPp (benchmarks/sipp_far_end.py) instead of baresip bots:
phones that answer, talk back and never press a key; the wire is audited, nothing is heard.

For each N, R times: a testbed with N answering bots (baresip, voicemail mode), one ``Phone``
in this process placing N calls at once with the real call script (greeting, message, menu,
said once; prompts from the warm cache), and these figures (docs/realtime.md):

* the strict audio measures: on the wire, every 20 ms slot of what the call plays on answer
  (greeting, message and menu, about 15 s) sent byte-exact, in order and on time (an
  AF_PACKET capture, so this needs root);
  as heard, the greeting in each bot's recording aligned once, every voiced slot in place;
* the event loop: the longest stall (heartbeat lateness) and its cause, from the loop watch;
* sender lateness p50/p99 and the slots the pacer skipped; this process's CPU share, and
  with ``--analysis-workers K`` (the received audio analysed in K worker processes,
  ``[media] analysis_workers``, docs/rx-workers.md) the workers' CPU share, all together.

The bots run on the same 2 cores, so past some N they, not voipalert, are what saturates:
a stall of kind "preempted" is the machine giving our core to a bot.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
from numpy.typing import NDArray

from benchmarks.loop_profile import LoopProfile
from benchmarks.sipp_far_end import phones
from tests.rtp_capture import RtpCaptureProcess
from tests.slot_audit import audit_heard, audit_stream
from voipalert.app.demo import find_testbed, testbed_ports
from voipalert.app.heap import settle_heap
from voipalert.app.loop_watch import LoopWatch, Stall, StallKind
from voipalert.calls import PROMPT_GAP_SECONDS, MediaConfig, Phone
from voipalert.callscript import GREETING, MENU, MESSAGE, ScriptConfig
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rx_pool import AnalysisPool
from voipalert.notify.voice import SpokenPrompts, warm_phrases
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri
from voipalert.tts.config import TtsConfig
from voipalert.tts.speech import Speech

SUMMARY = "Disk full on SRV-DB-01"
FIRST_PLAY = "greeting, message and menu"

# The bots answer as mailboxes do (and beep): the audited prompts are the answer's, so the
# call must not switch to leaving a voicemail when it hears the beep.
_SCRIPT = ScriptConfig(repetitions=1, pause_seconds=1.0, leave_voicemail=False)
# New calls a second, as serve's [sip] max_calls_per_second (default 20); --rate sets it.
CALL_RATE = [20.0]
# --profile: time every loop iteration and callback (benchmarks/loop_profile.py).
PROFILE = [False]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _workers_cpu(pool: AnalysisPool | None) -> float:
    """CPU seconds of the pool's worker processes so far (utime + stime, /proc)."""
    if pool is None:
        return 0.0
    total = 0
    for pid in pool.pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    n: int
    answered: int = 0
    wire_clean: int = 0  # calls whose greeting and message were clean on the wire
    heard_clean: int = 0  # bots whose recording holds the whole greeting in place
    bad_slots: int = 0  # wire: skipped + wrong + out of order + late, all calls
    bad_kinds: dict[str, int] = field(default_factory=dict)  # the same, by kind
    capture_drops: int = 0  # packets the capture itself lost: the wire figures are unsure
    heard: bool = True  # False with SIPp, which records nothing
    stalls: list[Stall] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    skipped: int = 0
    cpu: float = 0.0
    workers_cpu: float = 0.0
    profile: list[str] = field(default_factory=list)

    @property
    def longest(self) -> Stall | None:
        return max(self.stalls, key=lambda s: s.lag, default=None)


async def run_sipp(
    n: int,
    speech: Speech,
    prompts: dict[str, NDArray[np.int16]],
    directory: Path,
    pool: AnalysisPool | None,
) -> Run:
    """N calls to SIPp phones that answer, talk back (G.711 from a pcap) and never press a
    key (benchmarks/sipp_far_end.py): no registrar, calls go straight to SIPp. SIPp records
    nothing, so only the wire is audited; it decodes nothing either, so it leaves the
    cores to us (docs/capacity.md)."""
    result = Run(n, heard=False)
    async with phones(directory, port=5190, ring_ms=1000) as far:
        sip_port, rtp, _ = testbed_ports()
        rtp_max = rtp + 2 * n + 10
        config = UAConfig(user="voipalert", domain="127.0.0.1", local_host="127.0.0.1",
                          local_port=sip_port, max_calls_per_second=CALL_RATE[0])  # fmt: skip
        pacer = RtpPacer(asyncio.get_running_loop(), on_lateness=result.lateness.append)
        phone = Phone(
            config, ("127.0.0.1", sip_port), MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp_max),
            script=_SCRIPT, pacer=pacer,
            rng=random.Random(n),
        )  # fmt: skip
        phone.analysis = pool
        await phone.start(register=False)
        settle_heap()
        watch = LoopWatch(0.02, result.stalls.append, period=0.005)
        host, port = far.silent.split(":")

        async def one(i: int) -> str:
            spoken = SpokenPrompts(speech, "en", {"summary": SUMMARY})
            try:
                target = SipUri(user=f"load{i:04d}", host=host, port=int(port))
                report = await phone.call(target, spoken, ring_timeout=20)
            finally:
                await spoken.close()
            return report.outcome.value

        profile = LoopProfile() if PROFILE[0] else None
        with RtpCaptureProcess(range(rtp, rtp_max + 1)) as capture:
            watch.start()
            if profile is not None:
                profile.install(asyncio.get_running_loop())
            cpu, workers, wall = _cpu(), _workers_cpu(pool), time.perf_counter()
            try:
                outcomes = await asyncio.gather(*(one(i) for i in range(n)))
            finally:
                if profile is not None:
                    profile.close()
                    result.profile = profile.lines()
            elapsed = time.perf_counter() - wall
            result.cpu = (_cpu() - cpu) / elapsed
            result.workers_cpu = (_workers_cpu(pool) - workers) / elapsed
            await watch.close()
        await phone.stop()
    result.answered = outcomes.count("answered_no_ack")
    result.skipped = pacer.skipped_slots
    _audit_wire(result, capture, prompts[FIRST_PLAY])
    return result


def _audit_wire(result: Run, capture: RtpCaptureProcess, first_play: NDArray[np.int16]) -> None:
    result.capture_drops = capture.drops
    kinds = dict.fromkeys(("skipped", "wrong", "out of order", "late", "not found"), 0)
    for stream in capture.streams().values():
        audit = audit_stream(stream, first_play)
        result.wire_clean += audit.clean
        result.bad_slots += audit.bad if audit.found else audit.slots
        kinds["skipped"] += audit.skipped
        kinds["wrong"] += audit.wrong
        kinds["out of order"] += audit.out_of_order
        kinds["late"] += audit.late
        kinds["not found"] += 0 if audit.found else audit.slots
    result.bad_kinds = {kind: count for kind, count in kinds.items() if count}


async def run(
    n: int, speech: Speech, prompts: dict[str, NDArray[np.int16]], pool: AnalysisPool | None
) -> Run:
    tb_module = find_testbed()
    bots = [tb_module.BotSpec(f"load{i:02d}", "voicemail") for i in range(1, n + 1)]
    testbed = await asyncio.to_thread(tb_module.start, bots=bots, timeout=60)
    result = Run(n)
    try:
        sip_port, rtp, _ = testbed_ports()
        rtp_max = rtp + 2 * n + 10
        config = UAConfig(
            user="voipalert", domain=testbed.host, local_host="127.0.0.1", local_port=sip_port,
            password=testbed.users["voipalert"],
            registrar=SipUri(host=testbed.host, port=testbed.port),
            max_calls_per_second=CALL_RATE[0],
        )  # fmt: skip
        pacer = RtpPacer(asyncio.get_running_loop(), on_lateness=result.lateness.append)
        phone = Phone(
            config, ("127.0.0.1", sip_port), MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp_max),
            script=_SCRIPT, pacer=pacer,
            rng=random.Random(n),
        )  # fmt: skip
        phone.analysis = pool
        await phone.start()
        await phone.wait_registered(10)
        settle_heap()  # as serve does before it says ready (docs/realtime.md §4)
        watch = LoopWatch(0.02, result.stalls.append, period=0.005)

        async def one(bot: str) -> str:
            spoken = SpokenPrompts(speech, "en", {"summary": SUMMARY})
            try:
                target = SipUri(user=bot, host=testbed.host, port=testbed.port)
                report = await phone.call(target, spoken, ring_timeout=20)
            finally:
                await spoken.close()
            return report.outcome.value

        with RtpCaptureProcess(range(rtp, rtp_max + 1)) as capture:
            watch.start()
            cpu, workers, wall = _cpu(), _workers_cpu(pool), time.perf_counter()
            outcomes = await asyncio.gather(*(one(b.name) for b in bots))
            elapsed = time.perf_counter() - wall
            result.cpu = (_cpu() - cpu) / elapsed
            result.workers_cpu = (_workers_cpu(pool) - workers) / elapsed
            await watch.close()
        await phone.stop()
        result.answered = outcomes.count("answered_no_ack")
        result.skipped = pacer.skipped_slots
        _audit_wire(result, capture, prompts[FIRST_PLAY])
        result.heard_clean = sum(_heard_clean(testbed, b.name, prompts[GREETING]) for b in bots)
        return result
    finally:
        await asyncio.to_thread(testbed.stop)


def _heard_clean(testbed: Any, bot: str, greeting: NDArray[np.int16]) -> bool:
    recordings = testbed.recordings(bot)
    if not recordings:
        return False
    heard, _ = soundfile.read(recordings[-1], dtype="int16")
    return audit_heard(heard, greeting).clean


def _row(r: Run) -> str:
    p50 = 1000 * statistics.median(r.lateness) if r.lateness else float("nan")
    p99 = 1000 * float(np.percentile(r.lateness, 99)) if r.lateness else float("nan")
    longest = r.longest
    stall = "none over 20 ms" if longest is None else f"{longest.lag * 1000:.0f} ms {longest.kind}"
    ours = max((s.ours for s in r.stalls if s.kind is not StallKind.PREEMPTED), default=0.0)
    heard = f"{r.heard_clean:>3}/{r.n:<3}" if r.heard else "    n/a"
    row = (
        f"{r.n:>4} {r.answered:>4}  {r.wire_clean:>3}/{r.n:<3} {r.bad_slots:>5}  "
        f"{heard}  {stall:>22}  {ours * 1000:>5.0f}  "
        f"{p50:>5.2f} / {p99:<6.2f} {r.skipped:>6}  {r.cpu:>4.0%}  {r.workers_cpu:>4.0%}"
    )
    if r.bad_kinds:
        row += "\n        bad slots: " + ", ".join(f"{n} {k}" for k, n in r.bad_kinds.items())
    if r.capture_drops:
        row += (
            f"\n        the capture dropped {r.capture_drops} packets: "
            "slots it missed read as skipped, the wire figures are not reliable"
        )
    return row


HEADER = (
    "   N  ans  wire ok  bad    heard ok  longest stall (cause)   ours ms  "
    "late p50/p99 ms  skipped  CPU  workers"
)


async def main_async(sizes: list[int], runs: int, sipp: bool, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        speech = await asyncio.to_thread(Speech.open, TtsConfig(cache_dir=Path(tmp)))
        try:
            await warm_phrases(speech, "en", "1", "0")  # as serve does at start
            spoken = SpokenPrompts(speech, "en", {"summary": SUMMARY})
            prompts = {key: await spoken(key) for key in (GREETING, MESSAGE, *MENU)}
            await spoken.close()
            # What the call plays on answer, in one piece: greeting, message, menu, each
            # followed by the gap (calls.Call._pcm).
            gap = np.zeros(int(PROMPT_GAP_SECONDS * 8000), dtype=np.int16)
            prompts[FIRST_PLAY] = np.concatenate(
                [part for key in (GREETING, MESSAGE, *MENU) for part in (prompts[key], gap)]
            )
            far = "SIPp phones (heard: not recorded)" if sipp else "the testbed"
            where = f"in {workers} worker processes" if workers else "on the loop"
            print(f"concurrent calls against {far}, {os.cpu_count()} cores, load average "
                  f"{os.getloadavg()[0]:.2f} before, {CALL_RATE[0]:g} calls a second, "
                  f"analysis {where}")  # fmt: skip
            print(HEADER)
            summary: dict[int, list[Run]] = {}
            pool = AnalysisPool(workers) if workers else None
            if pool is not None:
                await pool.start()
            try:
                for n in sizes:
                    for _ in range(runs):
                        r = await (run_sipp(n, speech, prompts, Path(tmp), pool) if sipp
                                   else run(n, speech, prompts, pool))  # fmt: skip
                        summary.setdefault(n, []).append(r)
                        print(_row(r), f"(load {os.getloadavg()[0]:.1f})", flush=True)
                        for stall in [s for s in r.stalls if s.kind is not StallKind.PREEMPTED][:3]:
                            print("        ours:", stall.describe())
                        for line in r.profile:
                            print("        " + line)
            finally:
                if pool is not None:
                    await pool.close()
            _print_summary(summary)
        finally:
            await speech.aclose()


def _print_summary(summary: dict[int, list[Run]]) -> None:
    print("\nover the runs of each N: calls clean on the wire and as heard, longest stall")
    for n, rs in summary.items():
        wire = sum(r.wire_clean for r in rs)
        heard = sum(r.heard_clean for r in rs)
        longest = max((s for r in rs for s in r.stalls), key=lambda s: s.lag, default=None)
        ours = max(
            (s.ours for r in rs for s in r.stalls if s.kind is not StallKind.PREEMPTED),
            default=0.0,
        )
        worst = "none" if longest is None else f"{longest.lag * 1000:.0f} ms ({longest.kind})"
        heard_text = f"heard {heard}/{n * len(rs)}" if rs[0].heard else "heard not measured"
        drops = sum(r.capture_drops for r in rs)
        print(
            f"{n:>4}: wire {wire}/{n * len(rs)}, {heard_text}, "
            + (f"capture drops {drops}, " if drops else "")
            + f"longest stall {worst}, longest of our own {ours * 1000:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.concurrent_calls")
    parser.add_argument("sizes", nargs="*", type=int, default=[16, 24, 32])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--sipp", action="store_true", help="call SIPp phones instead of testbed bots"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0,
        help="calls started a second, as [sip] max_calls_per_second (0: all at once)",
    )  # fmt: skip
    parser.add_argument(
        "--analysis-workers", type=int, default=1,
        help="analyse the received audio in this many worker processes, as [media] "
        "analysis_workers (default 1; 0: on the loop)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="time every loop iteration and callback, print the slow iterations (SIPp only)",
    )  # fmt: skip
    args = parser.parse_args()
    CALL_RATE[0] = args.rate
    PROFILE[0] = args.profile
    if max(args.sizes) > 48 and not args.sipp:
        raise SystemExit("at most 48 (the load accounts in sip-testbed/users.txt)")
    asyncio.run(main_async(args.sizes, args.runs, args.sipp, args.analysis_workers))


if __name__ == "__main__":
    main()
