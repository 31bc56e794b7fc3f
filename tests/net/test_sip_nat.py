"""NAT on loopback, against Kamailio (docs/sip.md §4.8): a port-rewriting UDP relay stands
where a NAT would, between the user agent and the registrar. Kamailio writes the relay's
port into our Via (RFC 3581 ``rport``); the agent moves its Contact there and Kamailio's
INVITEs for us come back through the "NAT". When the relay rebinds to a new port, the next
keep-alive OPTIONS notices and the registration follows at once. Over TCP the keep-alive
is a CRLFCRLF ping that Kamailio answers with a CRLF pong (RFC 5626 §4.4.1)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from testbed import BotSpec, Testbed

from tests.conftest import TestbedFactory
from tests.net.sip_harness import Harness, user_agent
from voipalert.sip.events import RegistrationChanged, RegistrationState, SipEvent
from voipalert.sip.message import Request, Response
from voipalert.sip.nat import PING
from voipalert.sip.parser import parse_message
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
RS = RegistrationState
Address = tuple[str, int]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, inside: bool) -> None:
        self.relay, self.inside = relay, inside

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = (str(addr[0]), int(str(addr[1])))
        if self.inside:
            self.relay.from_client(data, source)
        else:
            self.relay.from_outside(data, source)


@dataclass
class Relay:
    """A NAT in one object: what the client sends to ``inside`` leaves from ``outside``
    (another port) to the server; what the server sends to ``outside`` goes back to the
    client. ``rebind`` moves the outside to a new port, as a NAT does when a binding dies."""

    server: Address
    client: Address | None = None
    inside: asyncio.DatagramTransport | None = None
    outside: asyncio.DatagramTransport | None = None
    public_port: int = 0
    log: list[tuple[str, Request | Response, int]] = field(default_factory=list)
    """(``out`` or ``in``, message, the outside port it passed through)."""

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self.inside, _ = await loop.create_datagram_endpoint(
            lambda: _Side(self, True), local_addr=(HOST, 0)
        )
        await self.rebind()
        return int(self.inside.get_extra_info("sockname")[1])

    async def rebind(self) -> int:
        if self.outside is not None:
            self.outside.close()
        self.outside, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: _Side(self, False), local_addr=(HOST, 0)
        )
        self.public_port = int(self.outside.get_extra_info("sockname")[1])
        return self.public_port

    def close(self) -> None:
        for transport in (self.inside, self.outside):
            if transport is not None:
                transport.close()

    def from_client(self, data: bytes, source: Address) -> None:
        self.client = source
        self._note("out", data)
        assert self.outside is not None
        self.outside.sendto(data, self.server)

    def from_outside(self, data: bytes, source: Address) -> None:
        if source != self.server or self.client is None or self.inside is None:
            return  # a NAT lets in only what comes from where the binding went
        self._note("in", data)
        self.inside.sendto(data, self.client)

    def _note(self, direction: str, data: bytes) -> None:
        if data.strip():
            self.log.append((direction, parse_message(data), self.public_port))

    def requests(self, method: str) -> list[tuple[Request, int]]:
        return [
            (m, port) for d, m, port in self.log
            if d == "out" and isinstance(m, Request) and m.method == method
        ]  # fmt: skip

    def responses(self, method: str, status: int) -> list[Response]:
        return [
            m for d, m, _ in self.log
            if d == "in" and isinstance(m, Response) and m.cseq.method == method
            and m.status == status
        ]  # fmt: skip


def registered(event: SipEvent) -> bool:
    return isinstance(event, RegistrationChanged) and event.status.state in (
        RS.REGISTERED,
        RS.FAILING,
    )


def unregistered(event: SipEvent) -> bool:
    return isinstance(event, RegistrationChanged) and event.status.state is RS.UNREGISTERED


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check(), f"no {what} within {seconds} s"


@asynccontextmanager
async def behind_nat(tb: Testbed, keepalive: float) -> AsyncIterator[tuple[Harness, Relay]]:
    relay = Relay((tb.host, tb.port))
    inside = await relay.start()
    try:
        async with user_agent(
            tb, registrar=SipUri(host=HOST, port=inside), keepalive_seconds=keepalive
        ) as ua:
            yield ua, relay
    finally:
        relay.close()


def contact_ports(request: Request | Response) -> list[tuple[int | None, int | None]]:
    out = []
    for contact in request.contacts:
        uri = contact.uri
        assert isinstance(uri, SipUri)
        out.append((uri.port, contact.expires))
    return out


async def test_contact_follows_rport_and_the_registration_follows_a_rebinding(
    testbed_factory: TestbedFactory,
) -> None:
    tb = testbed_factory([BotSpec("caller", "caller")])
    async with behind_nat(tb, keepalive=1.0) as (ua, relay):
        first_port = relay.public_port
        ua.endpoint.act(ua.agent.register)
        event = await ua.wait_for(registered, 10)
        assert isinstance(event, RegistrationChanged) and event.status.state is RS.REGISTERED

        # Kamailio's 401 carried rport=<the relay's port>: the authenticated REGISTER
        # already names the public address (our listening port is not reachable).
        registers = relay.requests("REGISTER")
        assert len(registers) == 2
        assert registers[0][0].contacts[0].uri != registers[1][0].contacts[0].uri
        assert contact_ports(registers[1][0]) == [(first_port, 600)]
        assert relay.responses("REGISTER", 200)
        assert ua.agent.config.public_port == first_port
        assert ua.agent.config.local_port != first_port

        # Keep-alives on the wire: an OPTIONS to the registrar every second, answered.
        await until(lambda: len(relay.requests("OPTIONS")) >= 2, 5, "two keep-alives")
        options = relay.requests("OPTIONS")[0][0]
        assert str(options.uri) == str(registers[0][0].uri)  # the registrar, via the NAT
        await until(
            lambda: any(
                d == "in" and isinstance(m, Response) and m.cseq.method == "OPTIONS"
                for d, m, _ in relay.log
            ),
            5, "an answer to a keep-alive",
        )  # fmt: skip

        # The NAT rebinds: the next keep-alive leaves from a new port, Kamailio's answer
        # shows it, and the agent registers the new Contact, dropping the old one.
        second_port = await relay.rebind()
        await until(
            # Within 5 s of the first move the agent defers (a NAT that moves every packet
            # must not cause a REGISTER storm); a later keep-alive catches up.
            lambda: any(port == second_port for _, port in relay.requests("REGISTER")), 10,
            "a REGISTER through the new binding",
        )  # fmt: skip
        rebound = next(r for r, port in relay.requests("REGISTER") if port == second_port)
        assert contact_ports(rebound) == [(second_port, 600), (first_port, 0)]
        await until(
            lambda: any(
                contact_ports(r) == [(second_port, 600)] for r in relay.responses("REGISTER", 200)
            ),
            5, "the registrar's 200 listing only the new binding",
        )  # fmt: skip
        assert ua.agent.config.public_port == second_port
        assert ua.agent.stats["contact_rewritten"] == 2
        status = ua.agent.registration
        assert status is not None and status.state is RS.REGISTERED

        # Kamailio now reaches us through the NAT: a call to our AoR arrives (and is
        # refused: the engine takes no calls).
        since = tb.dial("caller", "voipalert")
        closed = await asyncio.to_thread(tb.wait_event, "caller", "CALL_CLOSED", since, 10)
        assert closed is not None and "486" in str(closed.get("param")), closed
        assert ua.agent.stats["unsolicited_invite"] >= 1

        ua.endpoint.act(ua.agent.unregister)
        await ua.wait_for(unregistered, 10)


async def test_tcp_keepalive_is_a_crlf_ping_answered_by_kamailio(testbed: Testbed) -> None:
    async with user_agent(testbed, "tcp", keepalive_seconds=1.0) as ua:
        ua.endpoint.act(ua.agent.register)
        event = await ua.wait_for(registered, 10)
        assert isinstance(event, RegistrationChanged) and event.status.state is RS.REGISTERED
        await until(lambda: ua.agent.stats["keepalive_pong"] >= 2, 6, "two pongs")
        pings = [peer for d, data, peer in ua.wire if d == "send" and data == PING]
        assert len(pings) >= 2 and pings[0] == (testbed.host, testbed.port)
        assert ua.agent.stats["keepalive_no_pong"] == 0
        assert ua.agent.stats["contact_rewritten"] == 0  # TCP keeps the listening Contact
        # Leave no binding behind: the session's Kamailio allows one contact per user.
        ua.endpoint.act(ua.agent.unregister)
        await ua.wait_for(unregistered, 10)
