"""SIGKILL the engine process in the middle of an escalation, start it again on the same
database file, and check the escalation goes on with no attempt dialled twice and nothing
lost. The child's test notifier logs every dial to an append-only file (see
``engine_crash_child``), which is what the dials are counted from."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.stores import opened_store
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertKind, AlertStatus, AttemptState, NewAlert
from voipalert.domain.rota import PolicyName, TeamName
from voipalert.store import Store

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.02

ROTA = """
people:
  - {name: alice, contacts: [{extension: "201"}, {number: "+33612345678"}]}
  - {name: bob, contacts: [{extension: "202"}]}
  - {name: carol, contacts: [{extension: "203"}]}
  - {name: dave, contacts: [{extension: "204"}]}
teams:
  - {name: ops, members: [alice, bob, carol, dave]}
schedules:
  - name: primary
    time_zone: Europe/Paris
    layers:
      - {name: main, members: [alice], shift_length: 1, shift_unit: days,
         start: 2020-01-01, handoff: "09:00"}
policies:
  - name: default
    steps:
      - {targets: [{schedule: primary}], timeout: 1h}
      - {targets: [{person: bob}], timeout: 1h}
      - {targets: [{person: carol}], timeout: 1h}
"""

pytestmark = pytest.mark.slow


class Child:
    def __init__(self, database: Path, dials: Path) -> None:
        self.database, self.dials = database, dials
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, script: dict[str, list[str]], max_calls: int = 4) -> None:
        env = os.environ | {"PYTHONPATH": str(ROOT)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.engine_crash_child",
            str(self.database),
            str(self.dials),
            json.dumps(script),
            str(max_calls),
            cwd=ROOT,
            env=env,
        )

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    def dialled(self) -> list[str]:
        if not self.dials.exists():
            return []
        return [json.loads(line)["key"] for line in self.dials.read_text().splitlines()]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, seconds: float = 30.0
) -> None:
    for _ in range(int(seconds / POLL_SECONDS)):
        if await check():
            return
        await asyncio.sleep(POLL_SECONDS)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with opened_store(tmp_path / "voipalert.db", SystemClock(), ROTA) as opened:
        yield opened


async def test_sigkill_mid_escalation_then_restart(store: Store, tmp_path: Path) -> None:
    child = Child(tmp_path / "voipalert.db", tmp_path / "dials.jsonl")
    alert, _ = await store.create_or_join_alert(
        NewAlert("core switch down", policy=PolicyName("default"))
    )
    try:
        # Run 1: alice's first contact does not answer, her second rings until the kill.
        await child.start({"alice": ["no_answer", "hold"]})

        async def two_dials() -> bool:
            return len(child.dialled()) == 2

        await eventually(two_dials, "alice dialled twice")
        await child.kill()
        first_run = child.dialled()
        assert first_run == [f"{alert.id}/0/0/alice/1", f"{alert.id}/0/0/alice/2"]

        # Run 2: alice's interrupted contact is retried under a new key, then bob, then carol.
        await child.start({"alice": ["no_answer"], "bob": ["busy"], "carol": ["acknowledged"]})

        async def acked() -> bool:
            fresh = await store.get_alert(alert.id)
            return fresh is not None and fresh.status is AlertStatus.ACKNOWLEDGED

        await eventually(acked, "carol acknowledges")
    finally:
        await child.stop()
    dials = child.dialled()
    assert len(dials) == len(set(dials)), f"an attempt was dialled twice: {dials}"
    assert dials == [
        *first_run,
        f"{alert.id}/0/0/alice/3",
        f"{alert.id}/0/1/bob/1",
        f"{alert.id}/0/2/carol/1",
    ]
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    rows = [(str(a.key), a.state, a.outcome and a.outcome.value) for a in detail.attempts]
    assert rows == [
        (dials[0], AttemptState.DONE, "no_answer"),
        (dials[1], AttemptState.INTERRUPTED, None),
        (dials[2], AttemptState.DONE, "no_answer"),
        (dials[3], AttemptState.DONE, "busy"),
        (dials[4], AttemptState.DONE, "acknowledged"),
    ]
    assert detail.attempts[2].contact_index == detail.attempts[1].contact_index == 1
    assert detail.alert.acked_by == "carol"
    actions = [e.action for e in await store.audit_trail(alert.id)]
    assert actions.count("attempt.interrupted") == 1


async def test_sigkill_during_a_capped_mass_alert(store: Store, tmp_path: Path) -> None:
    child = Child(tmp_path / "voipalert.db", tmp_path / "dials.jsonl")
    alert, _ = await store.create_or_join_alert(
        NewAlert("evacuate", kind=AlertKind.MASS, team=TeamName("ops"))
    )
    everyone = ("alice", "bob", "carol", "dave")
    try:
        # Run 1: two calls at a time; both ring until the kill, two more wait their turn.
        await child.start({p: ["hold"] for p in everyone}, max_calls=2)

        async def two_in_flight() -> bool:
            detail = await store.get_alert_with_attempts(alert.id)
            states = [a.state for a in detail.attempts] if detail else []
            return len(child.dialled()) == 2 and states.count(AttemptState.PENDING) == 2

        await eventually(two_in_flight, "two calls in flight, two pending")
        await child.kill()
        first_run = child.dialled()

        await child.start({p: ["acknowledged"] for p in everyone}, max_calls=2)

        async def all_done() -> bool:
            detail = await store.get_alert_with_attempts(alert.id)
            acked = {a.key.person for a in detail.attempts if a.outcome} if detail else set()
            return acked == set(everyone)

        await eventually(all_done, "everyone reached")
    finally:
        await child.stop()
    dials = child.dialled()
    assert len(dials) == len(set(dials)) == 6, dials
    detail = await store.get_alert_with_attempts(alert.id)
    assert detail is not None
    by_key = {str(a.key): a for a in detail.attempts}
    assert set(by_key) == set(dials), "every intent was dialled exactly once, none lost"
    for key in first_run:  # the two cut off mid-call: interrupted, then called again
        assert by_key[key].state is AttemptState.INTERRUPTED
        cut_off = by_key[key].key.person
        assert by_key[f"{alert.id}/0/0/{cut_off}/2"].state is AttemptState.DONE
    pending_before = [p for p in everyone if f"{alert.id}/0/0/{p}/1" not in first_run]
    for person in pending_before:  # committed but never dialled: dialled under their own key
        assert by_key[f"{alert.id}/0/0/{person}/1"].state is AttemptState.DONE
