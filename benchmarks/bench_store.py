"""Store and engine throughput on a real SQLite file.

    python -m benchmarks.bench_store [N] [--tick-only]

Prints: alerts stored per second through ``create_or_join_alert`` (each one its own
committed transaction, synchronous=FULL and NORMAL), and how long one engine pass takes to
re-plan N open alerts that are all waiting (the cost of level-triggering).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from voipalert.app.heap import settle_heap
from voipalert.app.loop_watch import LoopWatch, Stall
from voipalert.clock import FakeClock
from voipalert.domain.alert import AttemptOutcome, NewAlert
from voipalert.engine import Engine, EngineConfig
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store, StoreConfig

ROOT = Path(__file__).resolve().parent.parent


class _RingsForever:
    """Every call rings until asked to stop: alerts stay mid-escalation, the steady state."""

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        stopped = asyncio.Event()
        stop.subscribe(lambda _: stopped.set())
        await stopped.wait()
        return NotifyResult(AttemptOutcome.CANCELLED)


async def _insert_rate(directory: Path, n: int, synchronous: str) -> float:
    config = StoreConfig(synchronous="FULL" if synchronous == "FULL" else "NORMAL")
    store = await Store.open(directory / f"insert-{synchronous}.db", FakeClock(), config)
    await store.replace_rota(parse_rota((ROOT / "deploy" / "rota.example.yaml").read_text()))
    started = time.perf_counter()
    for i in range(n):
        await store.create_or_join_alert(NewAlert(f"disk {i} full", dedup_key=f"k{i}"))
    elapsed = time.perf_counter() - started
    await store.close()
    return n / elapsed


async def _wait_ticks(engine: Engine, target: int) -> None:
    for _ in range(600_000):
        if engine.ticks >= target:
            return
        await asyncio.sleep(0.001)
    raise RuntimeError("the engine stopped ticking")


async def _tick_cost(directory: Path, n: int) -> tuple[float, float, Stall | None]:
    """(first pass: plan and commit n intents; later pass: re-plan n waiting alerts, s;
    the longest the loop was held during the later passes, with its cause and place)."""
    clock = FakeClock(datetime(2026, 3, 2, 10, tzinfo=UTC))
    store = await Store.open(directory / "tick.db", clock)
    await store.replace_rota(parse_rota((ROOT / "deploy" / "rota.example.yaml").read_text()))
    for i in range(n):
        await store.create_or_join_alert(NewAlert(f"alert {i}"))
    config = EngineConfig(idle_poll_seconds=3600, tick_timeout_seconds=3600, slow_tick_seconds=3600)
    engine = Engine(store, _RingsForever(), clock, config)
    started = time.perf_counter()
    task = asyncio.create_task(engine.run())
    await _wait_ticks(engine, 1)
    first = time.perf_counter() - started
    settle_heap()  # as serve does before calls begin (docs/realtime.md §4)
    passes = 5
    started = time.perf_counter()
    stalls: list[Stall] = []
    watch = LoopWatch(0.02, stalls.append)
    watch.start()
    for _ in range(passes):
        target = engine.ticks + 1
        engine.wake()
        await _wait_ticks(engine, target)
    steady = (time.perf_counter() - started) / passes
    await watch.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()
    return first, steady, max(stalls, key=lambda s: s.lag, default=None)


async def main(n: int, *, inserts: bool) -> None:
    print(f"cpu_count={os.cpu_count()} python={sys.version.split()[0]} load={os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for mode in ("FULL", "NORMAL") if inserts else ():
            rate = await _insert_rate(directory, n, mode)
            print(f"create_or_join_alert synchronous={mode}: {rate:,.0f} alerts/s (n={n})")
        first, steady, held = await _tick_cost(directory, n)
        print(f"engine first pass, {n} new alerts (plan + commit each intent): {first:.2f} s")
        print(f"engine pass re-planning {n} alerts mid-escalation: {steady * 1000:.0f} ms")
        print(
            "longest loop stall during those passes: "
            + (held.describe() if held is not None else "none over 20 ms")
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 2000, inserts="--tick-only" not in sys.argv))
