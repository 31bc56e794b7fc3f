"""Call-in against the testbed: a baresip phone dials voipalert's extension through
Kamailio, is recognised by its caller ID (or its PIN), hears its open alert and presses a
key (RFC 4733 from baresip). The ack goes through the store like an API ack: the engine's
outbound call to the same person for that alert, still ringing, is cancelled, and the
alert is acknowledged once.

The prompts are tones, not a voice (as in tests/net/test_call_lifecycle.py): what is under
test is the signalling, the keys and the store; the speech engine has its own tests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from testbed import Testbed

from tests.net.sip_harness import free_port
from tests.scripted_notifier import Hold, ScriptedNotifier
from voipalert.callin_menu import MenuConfig
from voipalert.calls import MediaConfig, Phone
from voipalert.clock import SystemClock
from voipalert.domain.alert import AlertStatus, NewAlert
from voipalert.engine import Engine, EngineConfig
from voipalert.notify.callin import CallinConfig, CallinService
from voipalert.rotafile.parse import parse_rota
from voipalert.sip.config import UAConfig
from voipalert.sip.uri import SipUri
from voipalert.store import Store
from voipalert.tts.prompt import Prompt
from voipalert.tts.voices import VoiceId

pytestmark = pytest.mark.testbed

ROTA = """
people:
  - {name: alice, contacts: [{sip: "sip:caller@127.0.0.1"}]}
policies:
  - name: default
    steps: [{targets: [{person: alice}], timeout: 600}]
routes:
  - {name: rest, default: true, policy: default}
"""
ALICE = "caller"  # the session testbed's phone that dials on command: alice's phone
STRANGER = "busy"  # another bot, whose number is nobody's in the rota
TONE = (3000 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)).astype(np.int16)


class TonePhrases:
    """Half a second of tone per phrase."""

    def __init__(self) -> None:
        self.said: list[str] = []

    async def phrase(self, key: str, *, language: str, **fields: object) -> Prompt:
        self.said.append(key if key != "message" else f"message:{fields.get('summary')}")
        return Prompt(TONE.copy(), key, VoiceId("tone"), key)


@dataclass
class Rig:
    tb: Testbed
    phone: Phone
    store: Store
    engine: Engine
    notifier: ScriptedNotifier
    phrases: TonePhrases


@pytest.fixture
async def rig(testbed: Testbed, tmp_path: Path) -> AsyncIterator[Rig]:
    tb = testbed
    clock = SystemClock()
    store = await Store.open(tmp_path / "voipalert.db", clock)
    await store.replace_rota(parse_rota(ROTA))
    # The engine's calls to alice ring until they are asked to stop.
    notifier = ScriptedNotifier({"alice": [Hold() for _ in range(5)]})
    engine = Engine(store, notifier, clock, EngineConfig(idle_poll_seconds=1.0))
    engine_task = asyncio.create_task(engine.run())
    sip_port, rtp = free_port(), free_port(even=True)
    config = UAConfig(
        user="voipalert", domain=tb.host, local_host="127.0.0.1", local_port=sip_port,
        password=tb.users["voipalert"], registrar=SipUri(host=tb.host, port=tb.port),
        trusted_hosts=frozenset({"127.0.0.1"}), max_incoming_calls=2,
    )  # fmt: skip
    phone = Phone(
        config, ("127.0.0.1", sip_port), MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp + 20),
        rng=random.Random(7),
    )  # fmt: skip
    await phone.start()
    await phone.wait_registered(10)
    try:
        yield Rig(tb, phone, store, engine, notifier, TonePhrases())
    finally:
        await phone.stop()
        engine_task.cancel()
        with suppress(asyncio.CancelledError):
            await engine_task
        await store.close()


def attach(rig: Rig, *, pin_required: bool, max_failures_per_hour: int = 10) -> CallinService:
    menu = MenuConfig(pause_seconds=3.0, digit_timeout_seconds=3.0, max_call_seconds=60.0)
    config = CallinConfig(
        pin_required=pin_required, max_failures_per_hour=max_failures_per_hour, menu=menu
    )
    service = CallinService(rig.store, rig.phrases, SystemClock(), rig.engine.wake, config)
    service.attach(rig.phone)
    return service


async def until(check: Callable[[], object], seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check(), what


async def open_alert(rig: Rig, summary: str) -> int:
    """An alert the engine is calling alice for (held ringing)."""
    alert, _ = await rig.store.create_or_join_alert(NewAlert(summary, dedup_key=summary))
    rig.engine.wake()
    await until(lambda: any(n.alert_id == alert.id for n in rig.notifier.calls), 10,
                "the engine calls alice")  # fmt: skip
    return alert.id


async def keys(rig: Rig, text: str) -> None:
    for key in text:
        rig.tb.command(ALICE, "sndcode", key)
        await asyncio.sleep(0.4)  # one RFC 4733 event ends before the next starts


async def status(rig: Rig, alert_id: int) -> AlertStatus:
    alert = await rig.store.get_alert(alert_id)
    assert alert is not None
    return alert.status


async def test_known_caller_acknowledges_and_the_outbound_call_is_cancelled(rig: Rig) -> None:
    service = attach(rig, pin_required=False)
    alert_id = await open_alert(rig, "disk full on db1")
    since = rig.tb.dial(ALICE, "voipalert")
    assert await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_ESTABLISHED", since, 10)
    await until(lambda: "message:disk full on db1" in rig.phrases.said, 10, "the alert is said")
    await keys(rig, "1")
    for _ in range(100):
        if await status(rig, alert_id) is AlertStatus.ACKNOWLEDGED:
            break
        await asyncio.sleep(0.1)
    alert = await rig.store.get_alert(alert_id)
    assert alert is not None
    assert (alert.status, alert.acked_by, alert.acked_via) == (
        AlertStatus.ACKNOWLEDGED, "alice", "call-in",
    )  # fmt: skip
    # The engine's call to alice for this alert, still ringing, is asked to stop: once.
    await until(lambda: rig.notifier.cancelled, 10, "the outbound call cancelled")
    assert [p for p, _ in rig.notifier.stops] == ["alice"]
    acks = [e for e in await rig.store.audit_trail(None) if e.action == "alert.acknowledged"]
    assert len(acks) == 1
    # "Acknowledged", "no more alerts", goodbye, and we hang up.
    assert await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_CLOSED", since, 15)
    await until(lambda: rig.phone.rtp_ports_in_use == 0, 10, "ports released")
    assert "acknowledged" in rig.phrases.said
    await service.aclose()


async def test_pin_wrong_then_right_then_resolve(rig: Rig) -> None:
    await rig.store.set_callin_pin("alice", "4711", may_resolve=True, actor="test")
    attach(rig, pin_required=True)
    alert_id = await open_alert(rig, "db down")
    since = rig.tb.dial(ALICE, "voipalert")
    assert await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_ESTABLISHED", since, 10)
    await until(lambda: "callin_enter_pin" in rig.phrases.said, 10, "the PIN is asked")
    await keys(rig, "9999#")
    await until(lambda: "callin_wrong_pin" in rig.phrases.said, 10, "a wrong PIN is said")
    await keys(rig, "4711#")
    await until(lambda: "message:db down" in rig.phrases.said, 10, "the alert is said")
    await keys(rig, "2")
    for _ in range(100):
        if await status(rig, alert_id) is AlertStatus.RESOLVED:
            break
        await asyncio.sleep(0.1)
    assert await status(rig, alert_id) is AlertStatus.RESOLVED
    since_hour = SystemClock().now_utc() - timedelta(hours=1)
    assert await rig.store.callin_failures_since("caller:caller@127.0.0.1", since_hour) == 1
    assert await rig.store.callin_failures_since("person:alice", since_hour) == 1
    assert await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_CLOSED", since, 15)

    # The hour's limit reached (here: 1): the next call is refused before it is answered.
    attach(rig, pin_required=True, max_failures_per_hour=1)
    again = rig.tb.dial(ALICE, "voipalert")
    closed = await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_CLOSED", again, 10)
    assert closed is not None and "603" in str(closed.get("param")), closed


async def test_unknown_caller_without_pins_is_told_and_hung_up_on(rig: Rig) -> None:
    attach(rig, pin_required=False)
    since = rig.tb.dial(STRANGER, "voipalert")
    assert await asyncio.to_thread(rig.tb.wait_event, STRANGER, "CALL_ESTABLISHED", since, 10)
    assert await asyncio.to_thread(rig.tb.wait_event, STRANGER, "CALL_CLOSED", since, 15)
    assert rig.phrases.said == ["callin_unknown", "goodbye"]
    await until(lambda: rig.phone.rtp_ports_in_use == 0, 10, "ports released")


async def test_call_in_off_still_refuses_486(rig: Rig) -> None:
    # Nobody attached: the phone refuses the call the agent would have offered it.
    since = rig.tb.dial(ALICE, "voipalert")
    closed = await asyncio.to_thread(rig.tb.wait_event, ALICE, "CALL_CLOSED", since, 10)
    assert closed is not None and "486" in str(closed.get("param")), closed
