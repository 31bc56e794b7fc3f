"""Retransmission over real UDP sockets with injected loss (docs/architecture.md §12, aioquic's
``sendto_with_loss`` idea), and Timer B / Timer F when nothing ever answers.

The peer is a small registrar/proxy stub on 127.0.0.1 built with the project's own message
layer: it drops the datagrams a test tells it to, answers the rest, and timestamps every
request it receives. T1 is shortened (50 ms) so the 64*T1 timers take 3.2 s, not 32 s.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import cast

from tests.net.sip_harness import free_port
from voipalert.net.sip_transport import SipEndpoint
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import UAConfig
from voipalert.sip.events import (
    CallEnded,
    CallOutcome,
    RegistrationChanged,
    RegistrationState,
    SipEvent,
)
from voipalert.sip.message import Request, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.sdp import new_local_media
from voipalert.sip.timers import TimerConfig
from voipalert.sip.uri import SipUri

T1 = 0.05


class LossyPeer(asyncio.DatagramProtocol):
    """Answers REGISTER with 200; drops the first ``drop`` requests of each transaction."""

    def __init__(self, drop: int, answer: bool = True) -> None:
        self.drop = drop
        self.answer = answer
        self.received: list[tuple[float, str, str]] = []  # (time, method, branch)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_message(data)
        if not isinstance(message, Request):
            return
        branch = message.via.branch or ""
        now = asyncio.get_running_loop().time()
        self.received.append((now, message.method, branch))
        seen = sum(1 for _, _, b in self.received if b == branch)
        if seen <= self.drop or not self.answer or self.transport is None:
            return  # lost on the way
        contact = message.headers.get("Contact") or ""
        reply = response_to(message, 200, headers=[("Contact", contact)], to_tag="stub")
        self.transport.sendto(reply.serialize(), addr)


@asynccontextmanager
async def peer_and_agent(peer: LossyPeer) -> AsyncIterator[tuple[SipEndpoint, list[SipEvent]]]:
    loop = asyncio.get_running_loop()
    port = free_port()
    transport, _ = await loop.create_datagram_endpoint(lambda: peer, local_addr=("127.0.0.1", port))
    config = UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=free_port(),
        registrar=SipUri(host="127.0.0.1", port=port), timers=TimerConfig(t1=T1, t2=4 * T1),
    )  # fmt: skip
    events: list[SipEvent] = []
    endpoint = SipEndpoint(UserAgent(config, rng=random.Random()), ("127.0.0.1", config.local_port),
                           events.append)  # fmt: skip
    await endpoint.start()
    try:
        yield endpoint, events
    finally:
        await endpoint.close()
        transport.close()


async def wait_for(
    events: list[SipEvent], test: Callable[[SipEvent], bool], seconds: float
) -> SipEvent:
    async with asyncio.timeout(seconds):
        while True:
            found = [e for e in events if test(e)]
            if found:
                return found[0]
            await asyncio.sleep(0.01)


def settled(event: SipEvent) -> bool:
    return isinstance(event, RegistrationChanged) and event.status.state in (
        RegistrationState.REGISTERED, RegistrationState.FAILING,
    )  # fmt: skip


async def test_lost_register_is_retransmitted_until_it_gets_through() -> None:
    peer = LossyPeer(drop=3)
    async with peer_and_agent(peer) as (endpoint, events):
        endpoint.act(endpoint.agent.register)
        event = await wait_for(events, settled, 5)
        assert isinstance(event, RegistrationChanged)
        assert event.status.state is RegistrationState.REGISTERED
    times = [t for t, method, _ in peer.received if method == "REGISTER"]
    assert len(times) == 4  # the original and three retransmissions, one branch
    assert len({b for _, _, b in peer.received}) == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Timer E: T1, 2 T1, 4 T1 (capped at T2 = 4 T1), measured on real sockets.
    for gap, expected in zip(gaps, (T1, 2 * T1, 4 * T1), strict=True):
        assert expected * 0.8 <= gap <= expected + 0.1, gaps


async def test_timer_f_ends_a_register_nobody_answers() -> None:
    peer = LossyPeer(drop=0, answer=False)
    async with peer_and_agent(peer) as (endpoint, events):
        started = asyncio.get_running_loop().time()
        endpoint.act(endpoint.agent.register)
        event = await wait_for(events, settled, 10)
        elapsed = asyncio.get_running_loop().time() - started
    assert isinstance(event, RegistrationChanged)
    assert event.status.state is RegistrationState.FAILING
    assert event.status.last_status == 408
    assert 64 * T1 * 0.9 <= elapsed <= 64 * T1 + 1.0
    assert len(peer.received) >= 8  # E backs off to T2 = 4 T1: about 10 sends in 64 T1


async def test_timer_b_makes_an_unanswered_invite_unreachable() -> None:
    peer = LossyPeer(drop=0, answer=False)
    async with peer_and_agent(peer) as (endpoint, events):
        registrar = endpoint.agent.config.registrar
        assert registrar is not None
        target = SipUri(user="alice", host="127.0.0.1", port=registrar.port)
        media = new_local_media("127.0.0.1", 40000, rng=random.Random())
        endpoint.act(lambda now: endpoint.agent.invite(target, media, now, ring_timeout=60))
        event = await wait_for(events, lambda e: isinstance(e, CallEnded), 10)
    assert isinstance(event, CallEnded)
    assert event.outcome is CallOutcome.UNREACHABLE and event.status == 408
    invites = [t for t, method, _ in peer.received if method == "INVITE"]
    # Timer A doubles without a cap: sends at 0, 1, 3, 7, 15, 31 T1 before B at 64 T1.
    assert len(invites) == 7


async def test_a_closed_port_fails_the_transaction_at_once() -> None:
    # Nothing listens: the ICMP port-unreachable reaches error_received and the
    # transaction fails with a transport error instead of waiting for Timer F.
    port = free_port()
    config = UAConfig(
        user="voipalert", domain="127.0.0.1", local_host="127.0.0.1", local_port=free_port(),
        registrar=SipUri(host="127.0.0.1", port=port),
    )  # fmt: skip
    events: list[SipEvent] = []
    endpoint = SipEndpoint(UserAgent(config, rng=random.Random()), ("127.0.0.1", config.local_port),
                           events.append)  # fmt: skip
    await endpoint.start()
    try:
        endpoint.act(endpoint.agent.register)
        event = await wait_for(events, settled, 3)
    finally:
        await endpoint.close()
    assert isinstance(event, RegistrationChanged)
    assert event.status.state is RegistrationState.FAILING
    assert event.status.last_status == 503


async def test_an_icmp_error_fails_only_the_destination_it_was_for() -> None:
    # An INVITE to a closed port, then a REGISTER to a live but silent registrar: the error
    # queue says which destination bounced, so only the call fails (no "last destination"
    # guessing that would wrongly fail the REGISTER sent after it).
    peer = LossyPeer(drop=0, answer=False)
    async with peer_and_agent(peer) as (endpoint, events):
        dead = SipUri(user="alice", host="127.0.0.1", port=free_port())
        media = new_local_media("127.0.0.1", 40000, rng=random.Random())
        endpoint.act(lambda now: endpoint.agent.invite(dead, media, now, ring_timeout=60))
        endpoint.act(endpoint.agent.register)
        ended = await wait_for(events, lambda e: isinstance(e, CallEnded), 3)
        await asyncio.sleep(0.5)
        status = endpoint.agent.registration
    assert isinstance(ended, CallEnded)
    assert ended.outcome is CallOutcome.UNREACHABLE and ended.status == 503
    assert status is not None and status.state is RegistrationState.REGISTERING
