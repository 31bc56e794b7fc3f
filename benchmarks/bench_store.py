"""Store and engine throughput on a real SQLite file.

    python -m benchmarks.bench_store [N] [--tick-only] [--postgresql]
    python -m benchmarks.bench_store [N] --compare [--posters=K]

``--compare`` is benchmarks/store_scale.py: SQLite against PostgreSQL, one node against
three processes on one PostgreSQL, as ratios (N 10,000 by default there).

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

import asyncpg

from benchmarks.nodes import start_postgres, stop_postgres
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


class Backend:
    """Where each measurement's fresh database lives: SQLite files in a directory, or
    databases of a throw-away PostgreSQL 15 on 127.0.0.1 (started and stopped here)."""

    def __init__(self, directory: Path, url: str | None) -> None:
        self.directory = directory
        self.url = url

    @property
    def name(self) -> str:
        return "postgresql" if self.url else "sqlite"

    async def database(self, name: str) -> Path | str:
        if self.url is None:
            return self.directory / f"{name}.db"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def config(self, synchronous: str = "FULL") -> StoreConfig:
        return StoreConfig(
            synchronous="FULL" if synchronous == "FULL" else "NORMAL",
            secret_file=self.directory / "server.secret",
        )


async def _insert_rate(backend: Backend, n: int, synchronous: str) -> float:
    database = await backend.database(f"insert_{synchronous.lower()}")
    store = await Store.open(database, FakeClock(), backend.config(synchronous))
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


async def _tick_cost(backend: Backend, n: int) -> tuple[float, float, Stall | None]:
    """(first pass: plan and commit n intents; later pass: re-plan n waiting alerts, s;
    the longest the loop was held during the later passes, with its cause and place)."""
    clock = FakeClock(datetime(2026, 3, 2, 10, tzinfo=UTC))
    store = await Store.open(await backend.database("tick"), clock, backend.config())
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


async def main(n: int, *, inserts: bool, postgresql: bool) -> None:
    print(f"cpu_count={os.cpu_count()} python={sys.version.split()[0]} load={os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        server = start_postgres(directory) if postgresql else None
        try:
            await _measure(Backend(directory, server[0] if server else None), n, inserts)
        finally:
            if server is not None:
                stop_postgres(server[1])


async def _measure(backend: Backend, n: int, inserts: bool) -> None:
    print(f"backend: {backend.name}")
    # PostgreSQL commits durably (synchronous_commit on) whatever the SQLite setting says.
    for mode in (("FULL", "NORMAL") if backend.url is None else ("FULL",)) if inserts else ():
        rate = await _insert_rate(backend, n, mode)
        shown = f" synchronous={mode}" if backend.url is None else ""
        print(f"create_or_join_alert{shown}: {rate:,.0f} alerts/s (n={n})")
    first, steady, held = await _tick_cost(backend, n)
    print(f"engine first pass, {n} new alerts (plan + commit each intent): {first:.2f} s")
    print(f"engine pass re-planning {n} alerts mid-escalation: {steady * 1000:.0f} ms")
    print(
        "longest loop stall during those passes: "
        + (held.describe() if held is not None else "none over 20 ms")
    )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--compare" in sys.argv:
        from benchmarks.store_scale import compare

        posters = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--posters=")), 1)
        asyncio.run(compare(int(args[0]) if args else 10_000, posters))
        sys.exit()
    asyncio.run(
        main(
            int(args[0]) if args else 2000,
            inserts="--tick-only" not in sys.argv,
            postgresql="--postgresql" in sys.argv,
        )
    )
