"""Where an engine pass's time goes on a node of several (docs/multi-node.md, "A pass under
load"): one node on a throw-away PostgreSQL holding ALERTS alerts of ten people (calls of
1.5 s that end unanswered, steps of 6 s, repeated), while WRITERS other connections take
the database's write lock for 20 ms in a loop, as busy nodes do. Prints the passes' time
and their split (snapshot, planning, writes) from ``Engine.last_tick``.

    python -m benchmarks.engine_pass [ALERTS] [WRITERS] [BUDGET_SECONDS] [SECONDS]

BUDGET_SECONDS large (1000) gives the passes as they were before the pass budget.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import asyncpg

from benchmarks.nodes import start_postgres, stop_postgres
from voipalert.clock import SystemClock
from voipalert.domain.alert import AttemptOutcome, NewAlert
from voipalert.domain.rota import PolicyName
from voipalert.engine import Engine, EngineConfig, TickStats
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store
from voipalert.store.pg import WRITE_LOCK

PEOPLE = 10
ROTA = (
    "people:\n"
    + "".join(f"  - {{name: p{n}, contacts: [{{extension: '2{n:02d}'}}]}}\n" for n in range(PEOPLE))
    + "policies:\n"
    + "".join(
        f"  - name: pol{n}\n    repeat: 60\n    repeat_delay: 1\n    steps:\n"
        f"      - {{targets: [{{person: p{n}}}], timeout: 6, ring_timeout: 5}}\n"
        for n in range(PEOPLE)
    )
)


class _Unanswered:
    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        await asyncio.sleep(1.5)
        return NotifyResult(AttemptOutcome.BUSY, 486, "Busy Here", None, 1.5)


class _Timed(Engine):
    """The engine, recording each pass's duration and split."""

    passes: list[tuple[float, TickStats]]

    async def tick(self) -> datetime | None:
        started = self._clock.monotonic()
        due = await super().tick()
        self.passes.append((self._clock.monotonic() - started, self.last_tick))
        return due


async def _writer(url: str, stop: asyncio.Event) -> int:
    conn = await asyncpg.connect(url)
    done = 0
    try:
        while not stop.is_set():
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
                await conn.execute("SELECT pg_sleep(0.02)")
            done += 1
    finally:
        await conn.close()
    return done


async def measure(url: str, alerts: int, writers: int, budget: float, seconds: float) -> None:
    clock = SystemClock()
    store = await Store.open(url, clock)
    await store.replace_rota(parse_rota(ROTA))
    config = EngineConfig(
        max_concurrent_calls=10, idle_poll_seconds=1.0, pass_budget_seconds=budget
    )
    engine = _Timed(store, _Unanswered(), clock, config)
    engine.passes = []
    node = await store.join_cluster(3.0, engine.wake)
    assert node is not None
    for n in range(alerts):
        await store.create_or_join_alert(NewAlert(f"disk {n}", policy=PolicyName(f"pol{n % 10}")))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(engine.run()), asyncio.create_task(node.run())]
    others = [asyncio.create_task(_writer(url, stop)) for _ in range(writers)]
    await asyncio.sleep(seconds)
    stop.set()
    taken = sum([await task for task in others])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await store.close()
    steady = engine.passes[1:] or engine.passes
    print(f"load={os.getloadavg()} alerts={alerts} writers={writers} ({taken} lock holds) "
          f"budget={budget} s passes={len(engine.passes)}")  # fmt: skip
    for name, values in (
        ("pass", [d for d, _ in steady]),
        ("snapshot", [s.snapshot_seconds for _, s in steady]),
        ("planning", [s.plan_seconds for _, s in steady]),
        ("writes", [s.write_seconds for _, s in steady]),
    ):
        print(f"{name:9} s: median {statistics.median(values):.3f} max {max(values):.3f}")
    each = [s.write_seconds / s.writes for _, s in steady if s.writes]
    if each:
        print(f"one write s: median {statistics.median(each):.3f}")
    print(f"alerts planned a pass: median {statistics.median(s.planned for _, s in steady)}, "
          f"passes cut at the budget: {sum(s.cut for _, s in steady)}")  # fmt: skip


def main() -> None:
    args = [float(a) for a in sys.argv[1:]]
    alerts, writers, budget, seconds = (*args, *[150, 2, 2.0, 25.0][len(args) :])[:4]
    with tempfile.TemporaryDirectory() as tmp:
        url, data = start_postgres(Path(tmp))
        try:
            asyncio.run(measure(url, int(alerts), int(writers), budget, seconds))
        finally:
            stop_postgres(data)


if __name__ == "__main__":
    main()
