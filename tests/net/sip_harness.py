"""A real user agent on a real socket, for tests against the SIP testbed."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from testbed import Testbed

from voipalert.net.sip_transport import SipEndpoint
from voipalert.sip.agent import UserAgent
from voipalert.sip.config import Transport, UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.events import CallEnded, CallId, RegistrationState, SipEvent
from voipalert.sip.sdp import new_local_media
from voipalert.sip.uri import SipUri


def free_port(kind: int = socket.SOCK_DGRAM, even: bool = False) -> int:
    while True:
        with socket.socket(socket.AF_INET, kind) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not even or port % 2 == 0:
            return port


class _Sink(asyncio.DatagramProtocol):
    """Stands in for the RTP socket: receives the bot's audio so no ICMP goes back."""

    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.packets += 1


@dataclass
class Harness:
    agent: UserAgent
    endpoint: SipEndpoint
    testbed: Testbed
    events: list[SipEvent] = field(default_factory=list)
    wire: list[tuple[str, bytes, Address]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    rtp_sinks: list[_Sink] = field(default_factory=list)
    _rtp_transports: list[asyncio.DatagramTransport] = field(default_factory=list)

    async def wait_for(self, predicate: Callable[[SipEvent], bool], seconds: float) -> SipEvent:
        async with asyncio.timeout(seconds):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self.changed.clear()
                await self.changed.wait()

    async def call(self, user: str, ring_timeout: float = 30.0) -> CallId:
        port = free_port(even=True)
        loop = asyncio.get_running_loop()
        sink = _Sink()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: sink, local_addr=("127.0.0.1", port)
        )
        self.rtp_sinks.append(sink)
        self._rtp_transports.append(transport)
        media = new_local_media("127.0.0.1", port, rng=random.Random())
        target = SipUri(user=user, host=self.testbed.host, port=self.testbed.port)
        result = self.endpoint.act(
            lambda now: self.agent.invite(target, media, now, ring_timeout=ring_timeout)
        )
        assert isinstance(result, str)
        return CallId(result)

    async def ended(self, call_id: CallId, seconds: float) -> CallEnded:
        event = await self.wait_for(
            lambda e: isinstance(e, CallEnded) and e.call_id == call_id, seconds
        )
        assert isinstance(event, CallEnded)
        return event

    def sent_lines(self) -> list[str]:
        return [data.split(b"\r\n", 1)[0].decode() for d, data, _ in self.wire if d == "send"]

    def received_lines(self) -> list[str]:
        return [data.split(b"\r\n", 1)[0].decode() for d, data, _ in self.wire if d == "recv"]


@asynccontextmanager
async def user_agent(
    testbed: Testbed,
    transport: Transport = "udp",
    *,
    user: str = "voipalert",
    password: str | None = None,
    register_expires: int = 600,
    trust_testbed: bool = True,
    registrar: SipUri | None = None,
    keepalive_seconds: float = 0.0,
) -> AsyncIterator[Harness]:
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    port = free_port(kind)
    config = UAConfig(
        user=user,
        domain=testbed.host,
        local_host="127.0.0.1",
        local_port=port,
        transport=transport,
        password=password if password is not None else testbed.users[user],
        registrar=registrar or SipUri(host=testbed.host, port=testbed.port),
        register_expires=register_expires,
        keepalive_seconds=keepalive_seconds,
        trusted_hosts=frozenset({testbed.host}) if trust_testbed else None,
    )
    agent = UserAgent(config, rng=random.Random())
    harness: Harness | None = None

    def on_event(event: SipEvent) -> None:
        assert harness is not None
        harness.events.append(event)
        harness.changed.set()

    def trace(direction: str, data: bytes, peer: Address) -> None:
        assert harness is not None
        harness.wire.append((direction, data, peer))

    endpoint = SipEndpoint(agent, ("127.0.0.1", port), on_event, trace)
    harness = Harness(agent, endpoint, testbed)
    await endpoint.start()
    try:
        yield harness
    finally:
        await _unregister(harness)
        await endpoint.close()
        for rtp in harness._rtp_transports:
            rtp.close()


# The states in which the registrar may hold a binding of ours.
_BOUND = (RegistrationState.REGISTERED, RegistrationState.REGISTERING)


async def _unregister(harness: Harness) -> None:
    """Un-REGISTER as a stopping serve does, and wait (5 s at most) for the answer: the
    testbed is shared, and a binding left behind is a test's failure (tests/conftest.py,
    ``testbed``)."""
    status = harness.agent.registration
    if status is None or status.state not in _BOUND:
        return
    harness.endpoint.act(harness.agent.unregister)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while (now := harness.agent.registration) is not None and now.state not in (
                RegistrationState.UNREGISTERED,
                RegistrationState.FAILING,
            ):
                harness.changed.clear()
                await harness.changed.wait()
