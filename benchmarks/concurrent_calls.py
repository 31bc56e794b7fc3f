"""Simultaneous calls from one process against the SIP testbed, with clean audio.

    python -m benchmarks.concurrent_calls [N ...]      (default: 4 8 16 24)

For each N: a testbed with N answering bots (baresip, voicemail mode), one ``Phone`` in this
process placing N calls at once with the real call script (greeting, message, menu, said
once; prompts from the warm cache), and these figures:

* sender lateness p50/p99 (how late each 20 ms packet left against its deadline) and the
  slots skipped, from the RTP pacer;
* this process's CPU while the calls were up (user + system seconds per wall second);
* audio as the callees heard it: each bot's recording is searched for every voiced 200 ms
  window of the greeting (normalised cross-correlation); "clean" means the median window
  scores above 0.95, as G.711 alone allows.

The bots run on the same 2 cores, so past some N they, not voipalert, are what saturates;
the CPU column shows whose limit it is.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from tests.audio_match import window_correlations
from voipalert.app.demo import find_testbed, testbed_ports
from voipalert.app.loop_watch import LoopWatch, Stall
from voipalert.calls import MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.notify.voice import SpokenPrompts, warm_phrases
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri
from voipalert.tts.config import TtsConfig
from voipalert.tts.speech import Speech


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(n: int, speech: Speech) -> dict[str, Any]:
    tb_module = find_testbed()
    bots = [tb_module.BotSpec(f"load{i:02d}", "voicemail") for i in range(1, n + 1)]
    testbed = await asyncio.to_thread(tb_module.start, bots=bots, timeout=60)
    lateness: list[float] = []
    try:
        sip_port, rtp, _ = testbed_ports()
        config = UAConfig(
            user="voipalert", domain=testbed.host, local_host="127.0.0.1", local_port=sip_port,
            password=testbed.users["voipalert"],
            registrar=SipUri(host=testbed.host, port=testbed.port),
        )  # fmt: skip
        pacer = RtpPacer(asyncio.get_running_loop(), on_lateness=lateness.append)
        phone = Phone(
            config, ("127.0.0.1", sip_port),
            MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp + 2 * n + 10),
            script=ScriptConfig(repetitions=1, pause_seconds=1.0), pacer=pacer,
            rng=random.Random(n),
        )  # fmt: skip
        await phone.start()
        await phone.wait_registered(10)
        stalls: list[Stall] = []
        watch = LoopWatch(0.02, stalls.append, period=0.005)
        watch.start()
        cpu, wall = _cpu(), time.perf_counter()

        async def one(bot: str) -> str:
            prompts = SpokenPrompts(speech, "en", {"summary": "Disk full on SRV-DB-01"})
            try:
                target = SipUri(user=bot, host=testbed.host, port=testbed.port)
                report = await phone.call(target, prompts, ring_timeout=20)
            finally:
                await prompts.close()
            return report.outcome.value

        outcomes = await asyncio.gather(*(one(b.name) for b in bots))
        cpu_share = (_cpu() - cpu) / (time.perf_counter() - wall)
        await watch.close()
        for stall in stalls:
            print("   ", stall.describe())
        await phone.stop()
        scores = [_clean_score(testbed, b.name, speech) for b in bots]
        return {
            "n": n,
            "answered": outcomes.count("answered_no_ack"),
            "p50_ms": 1000 * statistics.median(lateness) if lateness else float("nan"),
            "p99_ms": 1000 * float(np.percentile(lateness, 99)) if lateness else float("nan"),
            "skipped": pacer.skipped_slots,
            "cpu": cpu_share,
            "clean": sum(s > 0.95 for s in scores),
            "worst": min(scores) if scores else float("nan"),
        }
    finally:
        await asyncio.to_thread(testbed.stop)


_GREETING: np.ndarray[Any, np.dtype[np.int16]] | None = None


def _clean_score(testbed: Any, bot: str, speech: Speech) -> float:
    recordings = testbed.recordings(bot)
    if not recordings or _GREETING is None:
        return 0.0
    heard, _ = soundfile.read(recordings[-1], dtype="int16")
    scores = window_correlations(heard, _GREETING)
    return float(np.median(scores)) if scores else 0.0


async def main_async(sizes: list[int]) -> None:
    global _GREETING
    with tempfile.TemporaryDirectory() as tmp:
        speech = await asyncio.to_thread(Speech.open, TtsConfig(cache_dir=Path(tmp)))
        try:
            greeting = await speech.phrase("greeting", language="en")
            _GREETING = np.asarray(greeting.pcm)
            await warm_phrases(speech, "en", "1", "0")  # as serve does at start
            print(f"concurrent calls against the testbed, {os.cpu_count()} cores")
            print("   N  answered  lateness p50/p99 ms  skipped  our CPU  clean audio (worst)")
            for n in sizes:
                r = await run(n, speech)
                print(f"{r['n']:>4}  {r['answered']:>8}  {r['p50_ms']:>8.2f} / {r['p99_ms']:<7.2f}"
                      f"  {r['skipped']:>7}  {r['cpu']:>6.0%}  {r['clean']:>3}/{r['n']} "
                      f"({r['worst']:.3f})")  # fmt: skip
        finally:
            await speech.aclose()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [4, 8, 16, 24]
    if max(sizes) > 48:
        raise SystemExit("at most 48 (the load accounts in sip-testbed/users.txt)")
    asyncio.run(main_async(sizes))


if __name__ == "__main__":
    main()
