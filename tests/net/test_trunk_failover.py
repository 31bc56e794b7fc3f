"""Trunk failover within one attempt (voipalert/trunks.py, docs/sip-failover.md), against
two real Kamailio instances of the testbed (one per trunk, a bot registered behind each),
and against a hostile trunk on loopback that answers every INVITE with 503.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray
from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.net.sip_harness import free_port
from voipalert.calls import MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.domain.alert import AttemptOutcome
from voipalert.sip.config import UAConfig
from voipalert.sip.message import Request, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.timers import TimerConfig
from voipalert.sip.uri import SipUri
from voipalert.trunks import Trunk, Trunks, readdress

TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.int16)
# Short SIP timers: a trunk that says nothing costs 64*T1 = 1.6 s, not 32 s.
FAST = TimerConfig(t1=0.025, t2=0.2, t4=0.5)


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return TONE


def _phone(config: UAConfig) -> Phone:
    rtp = free_port(even=True)
    return Phone(
        config, ("127.0.0.1", config.local_port),
        MediaConfig("127.0.0.1", "127.0.0.1", rtp, rtp + 40),
        script=ScriptConfig(repetitions=2, pause_seconds=0.5), rng=random.Random(11),
    )  # fmt: skip


def _registered(tb: Testbed) -> UAConfig:
    return UAConfig(
        user="voipalert", domain=tb.host, local_host="127.0.0.1", local_port=free_port(),
        password=tb.users["voipalert"], registrar=SipUri(host=tb.host, port=tb.port),
        timers=FAST,
    )  # fmt: skip


@pytest.fixture
async def two_trunks(
    testbed_factory: TestbedFactory,
) -> AsyncIterator[tuple[Trunks, Testbed, Testbed]]:
    bots = [BotSpec("ack", "dtmf", "1", 1.0), BotSpec("busy", "busy")]
    first, second = testbed_factory(bots), testbed_factory(bots)
    trunks = Trunks(
        [Trunk("pbx-a", _phone(_registered(first))), Trunk("pbx-b", _phone(_registered(second)))],
        cooldown_seconds=60.0,
    )
    for trunk in trunks.trunks:
        await trunk.phone.start()
        status = await trunk.phone.wait_registered(10)
        assert status is not None and status.state.value == "registered"
    try:
        yield trunks, first, second
    finally:
        for trunk in trunks.trunks:
            await trunk.phone.stop(seconds=1.0)


def target(tb: Testbed, bot: str) -> SipUri:
    return SipUri(user=bot, host=tb.host, port=tb.port)


def incoming(tb: Testbed, bot: str) -> int:
    """The calls that reached ``bot`` (distinct INVITEs in its SIP trace)."""
    lines = tb.sip_trace(bot).splitlines()
    return len({ln for ln in lines if ln.lower().startswith("call-id:")} & _invite_call_ids(lines))


def _invite_call_ids(lines: list[str]) -> set[str]:
    ids, in_invite = set(), False
    for line in lines:
        if line.startswith(("INVITE sip:", "SIP/2.0 ", "ACK ", "BYE ", "CANCEL ")):
            in_invite = line.startswith("INVITE sip:")
        elif in_invite and line.lower().startswith("call-id:"):
            ids.add(line)
    return ids


@pytest.mark.testbed
async def test_busy_is_final_and_with_the_first_trunk_down_the_call_goes_through_the_second(
    two_trunks: tuple[Trunks, Testbed, Testbed],
) -> None:
    trunks, first, second = two_trunks
    # Attempt 1: trunk A carries it and the callee is busy. A 486 is about the person:
    # trunk B must not ring them again.
    report = await asyncio.wait_for(
        trunks.call(target(first, "busy"), prompts, ring_timeout=10), 20
    )
    assert report.outcome is AttemptOutcome.BUSY and report.sip_status == 486
    assert report.trunk == "pbx-a" and report.failed_trunks == ()
    assert incoming(first, "busy") == 1 and incoming(second, "busy") == 0
    # Between the attempts of the escalation the first PBX goes away. The next attempt
    # tries it first (nothing told us yet), gets a transport error and, within the same
    # attempt, places the call through trunk B, where the person's key acknowledges.
    assert first.crash_kamailio() > 0
    steps: list[str] = []
    report = await asyncio.wait_for(
        trunks.call(target(first, "ack"), prompts, ring_timeout=10, progress=steps.append), 30
    )
    assert report.outcome is AttemptOutcome.ACKNOWLEDGED, report
    assert report.trunk == "pbx-b"
    assert len(report.failed_trunks) == 1 and report.failed_trunks[0].startswith("pbx-a: ")
    assert steps.index("via trunk pbx-a") < steps.index("via trunk pbx-b")
    assert incoming(second, "ack") == 1
    now = asyncio.get_running_loop().time()
    statuses = {s.name: s for s in trunks.statuses(now)}
    assert statuses["pbx-a"].state.value == "failing" and statuses["pbx-a"].failovers == 1
    assert statuses["pbx-a"].last_error.startswith("call: ")
    assert statuses["pbx-b"].state.value == "registered"
    # The next attempt starts on the second trunk: the first one cools down.
    assert trunks.board.order(now) == ["pbx-b", "pbx-a"]


# ------------------------------------------------------------------ a hostile trunk


class _Refuser(asyncio.DatagramProtocol):
    """A "trunk" that answers every INVITE with 503 and Retry-After (RFC 3261 §21.5.4)."""

    def __init__(self) -> None:
        self.invites: list[float] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        if not isinstance(message, Request) or message.method != "INVITE":
            return  # the ACK to our 503
        self.invites.append(asyncio.get_running_loop().time())
        answer = response_to(
            message, 503, "Unavailable " + "x" * 400, headers=[("Retry-After", "120")],
            to_tag="refuser",
        )  # fmt: skip
        assert self.transport is not None
        self.transport.sendto(answer.serialize(), addr)


async def _refuser() -> tuple[_Refuser, int, Callable[[], None]]:
    loop = asyncio.get_running_loop()
    port = free_port()
    transport, protocol = await loop.create_datagram_endpoint(
        _Refuser, local_addr=("127.0.0.1", port)
    )
    return protocol, port, transport.close


def _direct(proxy_port: int) -> UAConfig:
    """An IP-authenticated trunk: no registration, every INVITE through its proxy."""
    return UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=free_port(),
        outbound_proxy=SipUri(host="127.0.0.1", port=proxy_port), timers=FAST,
    )  # fmt: skip


async def test_trunks_answering_503_cost_one_invite_each_per_attempt() -> None:
    (one, port_one, close_one), (two, port_two, close_two) = await _refuser(), await _refuser()
    trunks = Trunks(
        [Trunk("a", _phone(_direct(port_one)), register=False),
         Trunk("b", _phone(_direct(port_two)), register=False)],
        cooldown_seconds=10.0,
    )  # fmt: skip
    try:
        for trunk in trunks.trunks:
            await trunk.phone.start(register=False)
        callee = SipUri(user="someone", host="127.0.0.1", port=port_one)
        for attempt in range(1, 4):
            report = await asyncio.wait_for(trunks.call(callee, prompts, ring_timeout=5), 10)
            assert report.sip_status == 503 and not report.answered, report
            assert report.retry_after == 120
            assert report.trunk is None and len(report.failed_trunks) == 2
            # Bounded: each trunk gets one INVITE per attempt, never a retry storm.
            assert (len(one.invites), len(two.invites)) == (attempt, attempt)
        now = asyncio.get_running_loop().time()
        statuses = trunks.statuses(now)
        # Retry-After: 120 outlasts the configured 10 s cool-down (RFC 3261 §21.5.4).
        assert trunks.board.cooling_down("a", now + 100)
        assert not trunks.board.cooling_down("a", now + 121)
        assert [s.state.value for s in statuses] == ["failing", "failing"]
        # The last trunk of an attempt has no next one to fail over to; both cool down, "a"
        # since earlier, so "a" stays first.
        assert [s.failovers for s in statuses] == [3, 0]
        # The trunk's own reason phrase is cut short before /readyz and the detail.
        assert statuses[1].last_error.startswith("call: 503 Unavailable xxx")
        assert len(statuses[1].last_error) <= len("call: ") + 120
        assert all(len(f) <= len("a: ") + 120 for f in report.failed_trunks)
    finally:
        for trunk in trunks.trunks:
            await trunk.phone.stop(seconds=0.5)
        close_one()
        close_two()


async def test_targets_at_the_first_trunks_domain_are_readdressed() -> None:
    first = Trunk("a", _phone(_direct(5070)), register=False)
    a_registrar = UAConfig(
        user="u", domain="127.0.0.1", local_host="127.0.0.1", local_port=free_port(),
        registrar=SipUri(host="127.0.0.1", port=5080),
    )  # fmt: skip
    second = Trunk("b", _phone(a_registrar))
    # "a" has no registrar: its home is its domain, any port.
    extension = SipUri(user="1001", host="127.0.0.1")
    assert readdress(extension, first, second) == SipUri(user="1001", host="127.0.0.1", port=5080)
    number = SipUri(user="+4930123", host="127.0.0.1", params=(("user", "phone"),))
    assert readdress(number, first, second).params == (("user", "phone"),)
    elsewhere = SipUri(user="bob", host="pbx.example.org")
    assert readdress(elsewhere, first, second) == elsewhere  # sent as written
    assert readdress(extension, first, first) == extension
