"""The engine in a process of its own, for ``test_engine_crash`` to SIGKILL and restart.

    python -m tests.engine_crash_child DB DIALS SCRIPT_JSON MAX_CALLS

A test notifier (no SIP) stands in for the phone: before it "dials" it appends the attempt
key to DIALS, an append-only file written with O_APPEND straight to the kernel (so a
SIGKILL loses nothing), then follows SCRIPT_JSON: for each person a list of outcomes
("acknowledged", "no_answer", "busy", ...) or "hold" (the call never ends).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from voipalert.clock import SystemClock
from voipalert.domain.alert import AttemptOutcome
from voipalert.engine import Engine, EngineConfig
from voipalert.notify import Notification, NotifyResult, StopRequest
from voipalert.store import Store


class RecordingScriptedNotifier:
    def __init__(self, dials: Path, script: dict[str, list[str]]) -> None:
        self._dials = dials
        self._script = script

    async def notify(self, notification: Notification, stop: StopRequest) -> NotifyResult:
        line = json.dumps({"key": notification.attempt_key, "person": notification.person})
        fd = os.open(self._dials, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        steps = self._script.get(notification.person, [])
        step = steps.pop(0) if steps else "no_answer"
        if step == "hold":
            await asyncio.Event().wait()
        return NotifyResult(AttemptOutcome(step), digit="1" if step == "acknowledged" else None)


async def main(database: str, dials: str, script: str, max_calls: str) -> None:
    clock = SystemClock()
    store = await Store.open(database, clock)
    notifier = RecordingScriptedNotifier(Path(dials), json.loads(script))
    config = EngineConfig(max_concurrent_calls=int(max_calls), idle_poll_seconds=0.5)
    try:
        await Engine(store, notifier, clock, config).run()
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
