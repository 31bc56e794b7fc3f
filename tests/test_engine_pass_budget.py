"""A pass over the held alerts is bounded (engine.PASS_BUDGET_SECONDS, docs/multi-node.md,
"A pass under load"): once its budget is spent the rest waits for the next pass, which
starts at once, and the alerts never planned go first. The store is real (SQLite); each
commit of an intent costs one second of the fake clock, as a write waiting for a busy
database's write lock does."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path
from typing import Any

from tests.scripted_notifier import Hold, ScriptedNotifier
from tests.test_engine import ROTA, START
from voipalert.clock import FakeClock
from voipalert.domain.alert import Alert, Attempt, NewAlert
from voipalert.domain.policy import PlaceCall
from voipalert.engine import Engine, EngineConfig
from voipalert.rotafile.parse import parse_rota
from voipalert.store import Store


class SlowWrites:
    """The real store, with one second of the fake clock per intent, and a log of the
    passes (``snapshot``) and of the alerts whose intent was committed, in order."""

    def __init__(self, store: Store, clock: FakeClock) -> None:
        self._store = store
        self._clock = clock
        self.events: list[str | int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def engine_snapshot(self) -> list[tuple[Alert, list[Attempt]]]:
        self.events.append("snapshot")
        return await self._store.engine_snapshot()

    async def record_intent(self, call: PlaceCall) -> Attempt | None:
        self._clock.advance(1.0)
        self.events.append(call.key.alert)
        return await self._store.record_intent(call)


async def test_a_pass_stops_at_its_budget_and_the_next_goes_on(tmp_path: Path) -> None:
    clock = FakeClock(START)
    store = await Store.open(tmp_path / "v.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    ids = [(await store.create_or_join_alert(NewAlert(f"disk {n}")))[0].id for n in range(5)]
    slow = SlowWrites(store, clock)
    notifier = ScriptedNotifier()
    notifier.script = {"alice": [Hold() for _ in ids]}
    # No idle poll and nobody wakes it: only the cut pass's own wake-up can go on.
    config = EngineConfig(idle_poll_seconds=3600, max_concurrent_calls=5, pass_budget_seconds=2.5)
    engine = Engine(slow, notifier, clock, config)
    task = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(10):
            while len(notifier.calls) < len(ids):  # noqa: ASYNC110 - the calls are the event
                await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await store.close()
    # Three intents (three seconds) and the budget is spent: the pass stops, the next one
    # snapshots again and does the two alerts it had not reached, before the others.
    assert slow.events[:7] == ["snapshot", *ids[:3], "snapshot", *ids[3:]]
    assert sorted(n.alert_id for n in notifier.calls) == ids
