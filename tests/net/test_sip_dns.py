"""RFC 3263 over a real DNS server: dnsmasq on loopback serves NAPTR, SRV and A records,
``SipResolver`` finds the SIP servers through them, and a REGISTER to a name whose first
SRV target is dead reaches the second. No name ever reaches a blocking resolver: the
tests make ``getaddrinfo`` fail and record every ``sendto``/``create_connection``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.query
import dns.rdatatype
import pytest
from testbed import Testbed

from tests.net.sip_harness import free_port
from tests.requires import need_program
from voipalert.net import sip_dns
from voipalert.net.sip_dns import DnsConfig, SipResolver
from voipalert.net.sip_transport import SipEndpoint
from voipalert.sip.agent import Outbound, UserAgent
from voipalert.sip.config import Transport, UAConfig
from voipalert.sip.dialog import Address
from voipalert.sip.events import (
    CallEnded,
    CallOutcome,
    RegistrationChanged,
    RegistrationState,
    SipEvent,
)
from voipalert.sip.framing import StreamFramer
from voipalert.sip.locate import Hop
from voipalert.sip.message import Request, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.sdp import new_local_media
from voipalert.sip.uri import SipUri

RS = RegistrationState
DEAD_HOST, LIVE_HOST = "127.0.0.2", "127.0.0.3"


@dataclass
class Dnsmasq:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def servers(self) -> tuple[Address, ...]:
        return (("127.0.0.1", self.port),)


def start_dnsmasq(records: Sequence[str]) -> Dnsmasq:
    """dnsmasq on 127.0.0.1 and an unprivileged port, answering only ``records``."""
    program = need_program("dnsmasq", "sip-testbed/install-deps.sh --tests")
    port = free_port()
    user = ["--user=root"] if os.geteuid() == 0 else []  # dnsmasq-base has no own user
    process = subprocess.Popen(
        [program, "--no-daemon", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
         f"--port={port}", "--listen-address=127.0.0.1", "--bind-interfaces",
         "--pid-file=", "--log-facility=-", "--local-ttl=60", *user, *records],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    query = dns.message.make_query("ready.invalid", dns.rdatatype.A)
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(f"dnsmasq exited ({process.returncode}): {stderr}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            break
        except (OSError, dns.exception.Timeout):
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("dnsmasq did not answer within 10 s")
            time.sleep(0.05)  # noqa: TID251  # start-up wait, never on a running loop
    return Dnsmasq(port, process)


def stop(dnsmasq: Dnsmasq) -> None:
    if dnsmasq.process.poll() is None:
        os.killpg(dnsmasq.process.pid, 15)  # its own process group (start_new_session)
        dnsmasq.process.wait(timeout=10)
    if dnsmasq.process.stderr is not None:
        dnsmasq.process.stderr.close()


@pytest.fixture
def zone() -> Iterator[Dnsmasq]:
    # sip.test: NAPTR for UDP and TCP pointing at pool names that only the NAPTR knows;
    # the pool's first SRV target (priority 10) is dead, the second (priority 20) lives.
    # plain.test: no NAPTR, standard SRV names. a.test: an A record only.
    records = [
        "--naptr-record=sip.test,10,10,S,SIP+D2U,,_sip._udp.pool.sip.test",
        "--naptr-record=sip.test,10,20,S,SIP+D2T,,_sip._tcp.pool.sip.test",
        "--naptr-record=sip.test,20,10,S,SIPS+D2T,,_sips._tcp.pool.sip.test",
        f"--srv-host=_sip._udp.pool.sip.test,dead.sip.test,{DEAD_PORT},10,10",
        f"--srv-host=_sip._udp.pool.sip.test,live.sip.test,{LIVE_PORT},20,10",
        f"--srv-host=_sip._tcp.pool.sip.test,dead.sip.test,{DEAD_PORT},10,10",
        f"--srv-host=_sip._tcp.pool.sip.test,live.sip.test,{LIVE_PORT},20,10",
        f"--host-record=dead.sip.test,{DEAD_HOST}",
        f"--host-record=live.sip.test,{LIVE_HOST}",
        "--srv-host=_sip._udp.plain.test,live.sip.test,5080,1,1",
        "--host-record=a.test,127.0.0.4",
        "--local=/test/",  # authoritative for .test: NXDOMAIN for the rest, not REFUSED
    ]
    server = start_dnsmasq(records)
    try:
        yield server
    finally:
        stop(server)


DEAD_PORT = free_port()  # nothing listens there: ICMP port unreachable / connection refused
LIVE_PORT = free_port(socket.SOCK_STREAM)


async def test_resolver_follows_naptr_srv_and_a(zone: Dnsmasq) -> None:
    resolver = SipResolver(DnsConfig(servers=zone.servers))
    rng = random.Random(1)
    targets, ttl = await resolver.resolve(Hop("sip.test", None, "udp"), rng)
    assert targets == [(DEAD_HOST, DEAD_PORT), (LIVE_HOST, LIVE_PORT)]
    assert 0 < ttl <= 60
    tcp, _ = await resolver.resolve(Hop("sip.test", None, "tcp"), rng)
    assert tcp == [(DEAD_HOST, DEAD_PORT), (LIVE_HOST, LIVE_PORT)]
    # No NAPTR: the standard SRV name. An explicit port: the A record only. Nothing: [].
    plain, _ = await resolver.resolve(Hop("plain.test", None, "udp"), rng)
    assert plain == [(LIVE_HOST, 5080)]
    a_only, _ = await resolver.resolve(Hop("a.test", None, "udp"), rng)
    assert a_only == [("127.0.0.4", 5060)]
    explicit, _ = await resolver.resolve(Hop("live.sip.test", 5099, "udp"), rng)
    assert explicit == [(LIVE_HOST, 5099)]
    missing, _ = await resolver.resolve(Hop("missing.test", None, "tls"), rng)
    assert missing == []
    # A second lookup is answered from the cache (TTL 60 s): the server is gone.
    stop(zone)
    again, _ = await resolver.resolve(Hop("sip.test", None, "udp"), rng)
    assert again == targets


async def test_a_dead_name_server_fails_the_lookup_in_bounded_time() -> None:
    silent = free_port()  # nobody answers there
    resolver = SipResolver(DnsConfig(servers=(("127.0.0.1", silent),), timeout=0.2, lifetime=0.4))
    started = time.monotonic()
    targets, _ = await resolver.resolve(Hop("sip.test", None, "udp"), random.Random(1))
    assert targets == [] and time.monotonic() - started < 5


# ---------------------------------------------------------------- failover, end to end


class _Registrar(asyncio.DatagramProtocol):
    """Answers every REGISTER with 200 (binding granted for 600 s)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests: list[Request] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(_answer(data, self.requests), addr)


def _answer(data: bytes, log: list[Request]) -> bytes:
    request = parse_message(data)
    assert isinstance(request, Request)
    log.append(request)
    contact = request.headers.get("Contact") or ""
    return response_to(request, 200, headers=(("Contact", contact),), to_tag="reg").serialize()


@asynccontextmanager
async def registrar(transport: Transport) -> AsyncIterator[list[Request]]:
    loop = asyncio.get_running_loop()
    if transport == "udp":
        protocol = _Registrar()
        udp, _ = await loop.create_datagram_endpoint(
            lambda: protocol, local_addr=(LIVE_HOST, LIVE_PORT)
        )
        try:
            yield protocol.requests
        finally:
            udp.close()
        return
    requests: list[Request] = []
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        framer = StreamFramer()
        while data := await reader.read(65536):
            framer.feed(data)
            while (message := framer.next_event()) is not None:
                if isinstance(message, Request):
                    writer.write(_answer(message.serialize(), requests))

    server = await asyncio.start_server(serve, LIVE_HOST, LIVE_PORT)
    try:
        yield requests
    finally:
        server.close()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await server.wait_closed()


@dataclass
class Wire:
    """Every destination handed to the socket layer, and the events of the agent."""

    destinations: list[Any] = field(default_factory=list)
    events: list[SipEvent] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: SipEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def call_ended(self, call_id: str, seconds: float) -> CallEnded:
        async with asyncio.timeout(seconds):
            while True:
                for event in self.events:
                    if isinstance(event, CallEnded) and event.call_id == call_id:
                        return event
                self.changed.clear()
                await self.changed.wait()

    async def registration(self, seconds: float) -> RegistrationChanged:
        async with asyncio.timeout(seconds):
            while True:
                for event in self.events:
                    if isinstance(event, RegistrationChanged) and event.status.state in (
                        RS.REGISTERED, RS.FAILING,
                    ):  # fmt: skip
                        return event
                self.changed.clear()
                await self.changed.wait()


def no_blocking_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"blocking name resolution: getaddrinfo{args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "gethostbyname", refuse)


def record_connections(monkeypatch: pytest.MonkeyPatch, wire: Wire) -> None:
    loop = asyncio.get_running_loop()
    original = loop.create_connection

    async def create_connection(factory: Any, host: Any = None, port: Any = None, **kw: Any) -> Any:
        wire.destinations.append((host, port))
        return await original(factory, host, port, **kw)

    monkeypatch.setattr(loop, "create_connection", create_connection)


def record_sendto(monkeypatch: pytest.MonkeyPatch, endpoint: SipEndpoint, wire: Wire) -> None:
    udp = endpoint._udp
    assert udp is not None
    original = udp.sendto

    def sendto(data: bytes, addr: Any = None) -> None:
        wire.destinations.append(addr)
        original(data, addr)

    monkeypatch.setattr(udp, "sendto", sendto)


def assert_only_ips(destinations: list[Any]) -> None:
    assert destinations
    for host, _ in destinations:
        ipaddress.ip_address(host)  # a name here would have been resolved blockingly


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_register_fails_over_from_a_dead_srv_target_to_the_live_one(
    zone: Dnsmasq, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = Wire()
    config = UAConfig(
        user="voipalert", domain="sip.test", local_host="127.0.0.1",
        local_port=free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM),
        transport=transport, registrar=SipUri(host="sip.test"),
    )  # fmt: skip
    agent = UserAgent(config, rng=random.Random(3))
    resolver = SipResolver(DnsConfig(servers=zone.servers))
    endpoint = SipEndpoint(
        agent, ("127.0.0.1", config.local_port), wire.on_event, resolver=resolver
    )
    await endpoint.start()
    no_blocking_resolver(monkeypatch)
    if transport == "udp":
        record_sendto(monkeypatch, endpoint, wire)
    else:
        record_connections(monkeypatch, wire)
    try:
        async with registrar(transport) as requests:
            started = time.monotonic()
            endpoint.act(agent.register)
            event = await wire.registration(10)
            assert event.status.state is RS.REGISTERED, event.status
            # Failed over at once (ICMP unreachable / connection refused), not after
            # Timer F's 32 s.
            assert time.monotonic() - started < 5
            assert len(requests) == 1 and requests[0].method == "REGISTER"
            assert agent.stats["dns_failover"] == 1
    finally:
        await endpoint.close()
    assert wire.destinations[0] == (DEAD_HOST, DEAD_PORT)
    assert (LIVE_HOST, LIVE_PORT) in wire.destinations
    assert_only_ips(wire.destinations)


async def test_register_and_call_through_the_testbed_by_name(
    testbed: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kamailio, found through NAPTR and SRV, behind a dead first target."""
    records = [
        "--naptr-record=pbx.test,10,10,S,SIP+D2U,,_sip._udp.kamailio.pbx.test",
        f"--srv-host=_sip._udp.kamailio.pbx.test,dead.pbx.test,{DEAD_PORT},10,0",
        f"--srv-host=_sip._udp.kamailio.pbx.test,kamailio.pbx.test,{testbed.port},20,0",
        f"--host-record=dead.pbx.test,{DEAD_HOST}",
        f"--host-record=kamailio.pbx.test,{testbed.host}",
    ]
    server = await asyncio.to_thread(start_dnsmasq, records)  # its start-up wait blocks
    wire = Wire()
    config = UAConfig(
        user="voipalert", domain=testbed.host, local_host="127.0.0.1", local_port=free_port(),
        password=testbed.users["voipalert"], registrar=SipUri(host="pbx.test"),
        register_expires=60,
    )  # fmt: skip
    agent = UserAgent(config, rng=random.Random())
    resolver = SipResolver(DnsConfig(servers=server.servers))
    endpoint = SipEndpoint(
        agent, ("127.0.0.1", config.local_port), wire.on_event, resolver=resolver
    )
    try:
        await endpoint.start()
        no_blocking_resolver(monkeypatch)
        record_sendto(monkeypatch, endpoint, wire)
        endpoint.act(agent.register)
        event = await wire.registration(10)
        assert event.status.state is RS.REGISTERED, event.status
        assert wire.destinations[0] == (DEAD_HOST, DEAD_PORT)
        assert (testbed.host, testbed.port) in wire.destinations
        # A call through the same name: the INVITE, its 407 retry and the ACK of the 486
        # go straight to the address that worked (the answer is cached, the dead one is
        # not tried again).
        before = len(wire.destinations)
        media = new_local_media("127.0.0.1", free_port(even=True), rng=random.Random())
        target = SipUri(user="busy", host="pbx.test")
        call_id = endpoint.act(lambda now: agent.invite(target, media, now, ring_timeout=10))
        ended = await wire.call_ended(str(call_id), 10)
        assert ended.outcome is CallOutcome.BUSY and ended.status == 486, ended
        assert set(wire.destinations[before:]) == {(testbed.host, testbed.port)}
        assert_only_ips(wire.destinations)
        endpoint.act(agent.unregister)
        await asyncio.sleep(0.2)
    finally:
        await endpoint.close()
        stop(server)


async def test_names_in_the_hosts_file_need_no_dns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.5 pbx.lan pbx\n")
    monkeypatch.setattr(sip_dns, "HOSTS_FILE", hosts)
    # The system configuration, but with a name server nobody answers on: a question
    # sent would cost the whole lifetime and come back empty.
    resolver = SipResolver(DnsConfig(timeout=0.2, lifetime=0.2))
    resolver_ready = await resolver._get_resolver()
    resolver_ready.nameservers = ["127.0.0.1"]
    resolver_ready.port = free_port()
    started = time.monotonic()
    targets, _ = await resolver.resolve(Hop("pbx.lan", None, "udp"), random.Random(1))
    assert targets == [("127.0.0.5", 5060)]
    tls, _ = await resolver.resolve(Hop("pbx", 5081, "tls"), random.Random(1))
    assert tls == [("127.0.0.5", 5081)]
    assert time.monotonic() - started < 0.2  # answered from the file, no query sent


async def test_the_endpoint_never_hands_a_name_to_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wire = Wire()
    config = UAConfig(
        user="voipalert", domain="192.0.2.1", local_host="127.0.0.1", local_port=free_port()
    )
    endpoint = SipEndpoint(
        UserAgent(config, rng=random.Random(1)), ("127.0.0.1", config.local_port), wire.on_event
    )
    await endpoint.start()
    no_blocking_resolver(monkeypatch)
    record_sendto(monkeypatch, endpoint, wire)
    try:
        endpoint._send(Outbound(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("pbx.example.com", 5060), "udp"))
        await asyncio.sleep(0)
        assert wire.destinations == []
        assert endpoint.stats["unresolved_destination"] == 1
    finally:
        await endpoint.close()
