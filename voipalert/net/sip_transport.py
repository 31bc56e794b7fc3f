"""The asyncio side of the SIP user agent: sockets and one timer.

Modelled on aioquic's ``asyncio/protocol.py``: after every input (datagram, stream bytes,
timer, transport error, command) the endpoint drains the agent's events to ``on_event``,
sends what the agent wants sent, and re-arms a single ``loop.call_at`` at the agent's next
deadline. The agent never sees a socket and the endpoint never interprets SIP.

* DNS (RFC 3263): the agent sends only to IP addresses. A request for a host name waits
  in the agent, which asks for the name in ``lookups_to_do()``; the endpoint looks it up
  in a task (``SipResolver``, asynchronous, never ``getaddrinfo`` or a name handed to
  ``sendto``/``create_connection``) and hands the ordered addresses back with
  ``resolved()``. Failover between them is the agent's (a transaction per address).
* UDP: one socket, bound to ``bind``; we send from the port we listen on (symmetric
  signalling, so ``rport`` works). ICMP errors surface in ``error_received``: they are
  reported to the agent as a transport failure of the address they came back for (a
  dead destination must fail fast, not after Timer B/F); the agent knows which hop,
  named or not, that address belongs to.
* TCP: a listener on ``bind`` (Kamailio opens a *new* connection to our Contact, as
  measured against the testbed) and one outbound connection per destination, framed by
  ``StreamFramer``. A broken connection fails the transactions on it (RFC 3261 §18).
* Inbound connections are bounded (``ConnectionLimits``), because each one holds a file
  descriptor and anyone who can reach the port can open them: a connection that carried
  no complete SIP message for ``idle_timeout`` is closed (a slow or silent peer, CRLF
  keep-alives alone do not count); one peer host holds at most ``per_peer`` connections
  and everybody together ``total``, where ``total`` stays well under RLIMIT_NOFILE (read,
  and the soft limit raised to the hard one, at start). At a cap the stalest connection
  of that peer (or of all) is dropped for the new one: a connection that never carried a
  message goes first, so a flood of idle sockets cannot lock the PBX out.
* TLS: the connections we open (certificate checked, ``client_tls_context``) and, when
  given a server context (``tls_server``, ``server_tls_context``: ``[sip] tls_listen``), a
  TLS listener on ``bind`` for the PBX's requests to our ``;transport=tls`` Contact, under
  the same limits as TCP; a handshake must finish within
  ``limits.tls_handshake_timeout`` (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import resource
import socket
import ssl
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from voipalert.net.sip_dns import SipResolver
from voipalert.sip.agent import Outbound, UserAgent
from voipalert.sip.dialog import Address
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import SipEvent
from voipalert.sip.framing import PONG, KeepAlive, StreamFramer, is_keepalive
from voipalert.sip.locate import Hop, is_ip
from voipalert.sip.message import Request, Response

_T = TypeVar("_T")
log = logging.getLogger("voipalert.sip")
CONNECT_TIMEOUT_SECONDS: Final = 5.0
CLOSE_GRACE_SECONDS: Final = 1.0
"""How long close() lets a TLS peer answer our close_notify (RFC 8446 §6.1) before the
connection is aborted. asyncio would otherwise wait up to 30 s in the background, and a
loop that stops meanwhile leaves the socket open."""
# File descriptors kept out of the connection budget: the database, RTP sockets (two per
# call), the HTTP server's connections, log files, the event loop's own.
FD_RESERVE: Final = 256


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """Bounds on inbound SIP TCP connections (see the module docstring)."""

    idle_timeout: float = 60.0
    """Seconds an inbound connection may go without a complete SIP message."""
    per_peer: int = 32
    total: int = 1000
    """Upper bound; at start it is lowered to half the descriptors RLIMIT_NOFILE leaves."""
    tls_handshake_timeout: float = 10.0
    """Seconds an inbound TLS connection may take to finish its handshake."""


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (once per process is enough; a
    second call changes nothing) and return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %s: %s", soft, hard, exc)
            return soft
        log.info("open-file limit (RLIMIT_NOFILE) raised from %d to %s", soft, _show(hard))
        soft = hard
    return soft


def connection_budget(limits: ConnectionLimits, nofile: int) -> int:
    """How many inbound connections fit well under ``nofile`` descriptors."""
    if nofile == resource.RLIM_INFINITY:
        return limits.total
    return max(8, min(limits.total, (nofile - FD_RESERVE) // 2))


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


EventHandler = Callable[[SipEvent], None]
WireTrace = Callable[[str, bytes, Address], None]
wire_log = logging.getLogger("voipalert.sip.wire")


def log_wire(direction: str, data: bytes, peer: Address) -> None:
    """The default trace: every message at DEBUG on ``voipalert.sip.wire``. Credentials
    are never logged: digest responses are masked."""
    if wire_log.isEnabledFor(logging.DEBUG):
        text = data.decode("utf-8", "replace")
        lines = [
            line.split(":", 1)[0] + ": (credentials masked)"
            if line.lower().startswith(("authorization:", "proxy-authorization:"))
            else line
            for line in text.split("\r\n")
        ]
        wire_log.debug("%s %s:%s\n%s", direction, peer[0], peer[1], "\n".join(lines))


class SipEndpoint:
    """Drives one ``UserAgent`` over UDP or TCP on the running loop."""

    def __init__(
        self, agent: UserAgent, bind: Address, on_event: EventHandler,
        trace: WireTrace = log_wire, tls: ssl.SSLContext | None = None,
        limits: ConnectionLimits | None = None, resolver: SipResolver | None = None,
        tls_server: ssl.SSLContext | None = None,
    ) -> None:  # fmt: skip
        self.agent = agent
        # The resolver's family follows the socket's: AAAA records for an IPv6 bind.
        self.resolver = resolver if resolver is not None else SipResolver(ipv6=":" in bind[0])
        self._lookups: dict[Hop, asyncio.Task[None]] = {}
        self._dns_rng = random.SystemRandom()
        self._trace = trace
        self._tls = tls
        self.tls_server = tls_server
        """The TLS listener's context; set before ``start`` (``[sip] tls_listen``)."""
        if agent.config.transport == "tls" and tls is None:
            raise ValueError("transport tls needs an SSL context (see client_tls_context)")
        self._bind = bind
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._streams: dict[Address, _StreamProtocol] = {}
        self._connecting: dict[Address, asyncio.Task[None]] = {}
        self._queued: dict[Address, list[bytes]] = {}
        self._last_destination: Address | None = None
        self._closed = False
        self.limits = limits if limits is not None else ConnectionLimits()
        self.max_inbound = self.limits.total
        self._inbound: dict[_StreamProtocol, None] = {}  # insertion order: oldest first
        self._inbound_by_host: Counter[str] = Counter()
        self._sweeper: asyncio.TimerHandle | None = None
        self._evicted_logged_at: float | None = None
        self.stats: Counter[str] = Counter()

    @property
    def transport_name(self) -> str:
        return self.agent.config.transport

    async def start(self) -> None:
        """Bind the listening socket; raises OSError (e.g. port taken) with the address."""
        host, port = self._bind
        if self.transport_name == "udp":
            self._udp_sock = _udp_socket(host, port)
            self._udp, _ = await self._loop.create_datagram_endpoint(
                lambda: _DatagramProtocol(self), sock=self._udp_sock
            )
        elif self.transport_name == "tls":
            # Without a certificate of ours the PBX reaches us over the connection we
            # registered on (Asterisk does this; RFC 5626 flows).
            if self.tls_server is not None:
                await self._listen(host, port, self.tls_server)
        else:
            await self._listen(host, port, None)

    async def _listen(self, host: str, port: int, tls: ssl.SSLContext | None) -> None:
        nofile = raise_nofile_limit()
        self.max_inbound = connection_budget(self.limits, nofile)
        log.info(
            "SIP %s: open-file limit %s, at most %d inbound connections (%d per peer), "
            "closed after %.0f s without a message",
            "TLS" if tls else "TCP", _show(nofile), self.max_inbound, self.limits.per_peer,
            self.limits.idle_timeout,
        )  # fmt: skip
        # The limits count a connection once its handshake is done (asyncio calls
        # connection_made then); a peer that stalls the handshake is dropped after
        # limits.tls_handshake_timeout.
        self._server = await self._loop.create_server(
            lambda: _StreamProtocol(self, None), host, port, ssl=tls,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout if tls else None,
        )  # fmt: skip
        self._arm_sweeper()

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = [*self._connecting.values(), *self._lookups.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _close_streams(list(self._streams.values()))
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    def act(self, command: Callable[[float], _T]) -> _T:
        """Run a command on the agent at the current time, then send/arm/dispatch."""
        result = command(self._loop.time())
        self.process()
        return result

    # ------------------------------------------------------------ the aioquic loop

    def process(self) -> None:
        while (event := self.agent.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("SIP event handler failed for %s", type(event).__name__)
        for outbound in self.agent.messages_to_send():
            self._send(outbound)
        for hop in self.agent.lookups_to_do():
            if hop not in self._lookups and not self._closed:
                self._lookups[hop] = self._loop.create_task(self._lookup(hop))
        self._arm_timer()

    async def _lookup(self, hop: Hop) -> None:
        try:
            targets, ttl = await self.resolver.resolve(hop, self._dns_rng)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the lookup must not leave requests waiting forever
            log.exception("DNS lookup for %s failed", hop)
            targets, ttl = [], 0.0
        finally:
            self._lookups.pop(hop, None)
        if not self._closed:
            self.agent.resolved(hop, targets, ttl, self._loop.time())
            self.process()

    def _arm_timer(self) -> None:
        deadline = self.agent.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        # Timers fire early or late; hand the agent at least the deadline
        # (docs/architecture.md §6).
        now = max(self._timer_at or 0.0, self._loop.time())
        self._timer = self._timer_at = None
        self.agent.handle_timer(now)
        self.process()

    def received(self, data: bytes, source: Address) -> None:
        if is_keepalive(data):
            return
        self._trace("recv", data, source)
        self.agent.receive(data, source, self._loop.time())
        self.process()

    def received_message(self, message: Request | Response, source: Address) -> None:
        self._trace("recv", message.serialize(), source)
        self.agent.receive_message(message, source, self._loop.time())
        self.process()

    def pong(self, source: Address) -> None:
        self.agent.pong_received(source, self._loop.time())
        self.process()

    def failed(self, destination: Address) -> None:
        self.agent.transport_failed(destination, self._loop.time())
        self.process()

    # ------------------------------------------------------------ sending

    def _send(self, outbound: Outbound) -> None:
        destination = outbound.destination
        if not is_ip(destination[0]):
            # The agent resolves names before sending; a name here is a bug. It must not
            # reach sendto/create_connection, which would resolve it on the loop.
            self.stats["unresolved_destination"] += 1
            log.error("SIP: refusing to send to unresolved host %s", destination[0])
            self._loop.call_soon(self.failed, destination)
            return
        self._trace("send", outbound.data, destination)
        if self._udp is not None:
            self._last_destination = destination
            self._udp.sendto(outbound.data, destination)
            return
        stream = self._streams.get(destination)
        if stream is not None:
            stream.write(outbound.data)
            return
        self._connect_and_send(destination, outbound.data, outbound.server_name)

    def _connect_and_send(self, key: Address, data: bytes, server_name: str | None) -> None:
        # Messages for a connection being opened wait for it, in order.
        self._queued.setdefault(key, []).append(data)
        if key not in self._connecting:
            self._connecting[key] = self._loop.create_task(self._connect(key, server_name))

    async def _connect(self, key: Address, server_name: str | None) -> None:
        destination = key
        # TLS checks the certificate against the name the address was found for
        # (RFC 5922 §4: the SIP domain), or the IP literal when there was no name.
        tls_name = (server_name or key[0]) if self._tls else None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                _, protocol = await self._loop.create_connection(
                    lambda: _StreamProtocol(self, key), destination[0], destination[1],
                    ssl=self._tls, server_hostname=tls_name,
                )  # fmt: skip
        except (OSError, TimeoutError) as exc:
            log.warning("SIP connection to %s:%s failed: %s", *destination, exc)
            self._queued.pop(key, None)
            self._connecting.pop(key, None)
            if not self._closed:
                self.failed(key)
            return
        self._connecting.pop(key, None)
        for data in self._queued.pop(key, []):
            protocol.write(data)

    def stream_made(self, key: Address, stream: _StreamProtocol) -> None:
        if not stream.outbound:
            self._admit_stream(key[0], stream)
        self._streams[key] = stream

    def stream_lost(self, key: Address, stream: _StreamProtocol, outbound: bool) -> None:
        if self._streams.get(key) is stream:
            del self._streams[key]
        if stream in self._inbound:
            del self._inbound[stream]
            self._inbound_by_host[key[0]] -= 1
            if self._inbound_by_host[key[0]] <= 0:
                del self._inbound_by_host[key[0]]
        if outbound and not self._closed:
            self.failed(key)

    # ------------------------------------------------------------ connection limits

    @property
    def inbound_connections(self) -> int:
        return len(self._inbound)

    def _admit_stream(self, host: str, stream: _StreamProtocol) -> None:
        """Make room for a new inbound connection: the stalest one of the same peer if it
        is at its cap, else the stalest of all if the total is reached."""
        self.stats["tcp_accepted"] += 1
        if self._inbound_by_host[host] >= self.limits.per_peer:
            self._evict([s for s in self._inbound if s.host == host])
        elif len(self._inbound) >= self.max_inbound:
            self._evict(list(self._inbound))
        self._inbound[stream] = None
        self._inbound_by_host[host] += 1

    def _evict(self, candidates: list[_StreamProtocol]) -> None:
        # Never carried a message first (oldest first), then the longest without one.
        victim = min(candidates, key=lambda s: (s.last_message_at is not None, s.last_active))
        self.stats["tcp_evicted"] += 1
        self._forget_inbound(victim)
        now = self._loop.time()
        if self._evicted_logged_at is None or now - self._evicted_logged_at >= 60.0:
            self._evicted_logged_at = now
            log.warning(
                "SIP TCP connection limit reached (%d total, %d per peer): dropped the "
                "stalest connection from %s:%s (%d dropped so far)",
                self.max_inbound, self.limits.per_peer, *victim.key, self.stats["tcp_evicted"],
            )  # fmt: skip

    def _forget_inbound(self, stream: _StreamProtocol) -> None:
        # abort(), not close(): the descriptor is released now, not after a flush.
        self.stream_lost(stream.key, stream, outbound=False)
        stream.abort()

    def _arm_sweeper(self) -> None:
        interval = max(0.05, min(self.limits.idle_timeout / 4, 5.0))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        if self._closed:
            return
        deadline = self._loop.time() - self.limits.idle_timeout
        idle = [s for s in self._inbound if s.last_active <= deadline]
        for stream in idle:
            self.stats["tcp_idle_closed"] += 1
            self._forget_inbound(stream)
        if idle:
            log.debug("closed %d idle inbound SIP connections", len(idle))
        self._arm_sweeper()

    def datagram_error(self, exc: Exception) -> None:
        """An ICMP error came back. Linux keeps, with IP_RECVERR, the destination each one
        was for in the socket's error queue: fail exactly those. Elsewhere (or if the queue
        cannot be read) it belongs to the destination we last sent to."""
        if self._closed:
            return
        failed = _drain_error_queue(self._udp_sock) if self._udp_sock is not None else []
        log.debug("SIP UDP error %s for %s", exc, failed or self._last_destination)
        if not failed and self._last_destination is not None:
            failed = [self._last_destination]
        for host, port in failed:
            self.failed((_canonical_ip(host), port))


def _canonical_ip(host: str) -> str:
    """The spelling the agent uses for an address (``locate.hop_of``: ipaddress's)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


# Linux reports ICMP errors (port unreachable...) on an *unconnected* UDP socket only with
# IP_RECVERR (ip(7)); Python's socket module has no name for it. Without it a dead
# destination costs a full Timer B/F (32 s) instead of failing at once.
_IP_RECVERR: Final = 11
_IPV6_RECVERR: Final = 25


# Room for a burst of SIP datagrams while the event loop is busy: 200 calls hanging up
# together get 200 answers to their BYEs at once, and the default 208 KiB (about 100 small
# datagrams on loopback, counting the kernel's per-packet overhead) dropped 117 of them
# (docs/capacity.md §3). The kernel caps it at net.core.rmem_max.
SIP_UDP_RECEIVE_BUFFER_BYTES: Final = 4 * 1024 * 1024


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SIP_UDP_RECEIVE_BUFFER_BYTES)
        if sys.platform == "linux":
            level, option = (
                (socket.IPPROTO_IPV6, _IPV6_RECVERR)
                if family == socket.AF_INET6
                else (socket.IPPROTO_IP, _IP_RECVERR)
            )
            sock.setsockopt(level, option, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


_MSG_ERRQUEUE: Final = 0x2000


def _drain_error_queue(sock: socket.socket) -> list[Address]:
    """The destinations of the ICMP errors queued on ``sock`` (Linux, IP_RECVERR)."""
    if sys.platform != "linux":
        return []
    found: list[Address] = []
    for _ in range(64):  # bounded: the queue holds what arrived, not a stream
        try:
            _, _, _, address = sock.recvmsg(1, 512, _MSG_ERRQUEUE)
        except OSError:  # BlockingIOError once the queue is empty
            break
        if isinstance(address, tuple) and len(address) >= 2:
            found.append((str(address[0]), int(address[1])))
    return found


# What is read from the SIP socket in one turn of the loop beyond the datagram asyncio
# hands over: at most this many datagrams, within this much of the loop's time (handling a
# 200 OK opens a call's media: 64 of them in one turn held the loop 110 ms), and the
# longest datagram UDP carries.
SIP_READS_PER_TURN: Final = 64
SIP_READ_BUDGET_SECONDS: Final = 0.005
_SIP_DATAGRAM_BYTES: Final = 65536


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        endpoint = self._endpoint
        loop = endpoint._loop
        until = loop.time() + SIP_READ_BUDGET_SECONDS
        endpoint.received(data, (str(addr[0]), int(str(addr[1]))))
        # asyncio reads one datagram per socket per turn of the loop. With hundreds of
        # calls' audio a turn takes tens of milliseconds, so 200 answers to 200 BYEs sent
        # together took longer to read than the hang-up's grace: the calls ended without
        # their final answer, though none was lost (docs/capacity.md §5). What is queued
        # is read now, within a bound of datagrams and of time.
        sock = endpoint._udp_sock
        for _ in range(SIP_READS_PER_TURN - 1):
            if sock is None or endpoint._closed or loop.time() >= until:
                return
            try:
                data, addr = sock.recvfrom(_SIP_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                endpoint.datagram_error(exc)  # an ICMP error, as error_received is told
                continue
            endpoint.received(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self._endpoint.datagram_error(exc)


async def _close_streams(streams: list[_StreamProtocol]) -> None:
    """Close every connection and return once each socket is released: a TLS peer that
    does not answer our close_notify within CLOSE_GRACE_SECONDS is aborted."""
    for stream in streams:
        stream.close()
    lost = [stream.lost for stream in streams]
    if not lost:
        return
    await asyncio.wait(lost, timeout=CLOSE_GRACE_SECONDS)
    stalled = [stream for stream in streams if not stream.lost.done()]
    for stream in stalled:
        stream.abort()
    if stalled:  # abort() releases the socket at the next loop iteration
        await asyncio.wait([stream.lost for stream in stalled], timeout=CLOSE_GRACE_SECONDS)


class _StreamProtocol(asyncio.Protocol):
    """One TCP connection: bytes → StreamFramer → agent. ``key`` is the destination we
    connected to (outbound) or, for accepted connections, the peer's address."""

    def __init__(self, endpoint: SipEndpoint, key: Address | None) -> None:
        self._endpoint = endpoint
        self._outbound = key is not None
        self._key: Address = key if key is not None else ("", 0)
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self.last_active = endpoint._loop.time()
        """When the connection opened or last carried a complete SIP message."""
        self.last_message_at: float | None = None
        self.lost: asyncio.Future[None] = endpoint._loop.create_future()
        """Done once the connection is gone and its socket released."""

    @property
    def outbound(self) -> bool:
        return self._outbound

    @property
    def key(self) -> Address:
        return self._key

    @property
    def host(self) -> str:
        return self._key[0]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._outbound:
            peer = transport.get_extra_info("peername")
            self._key = (str(peer[0]), int(peer[1]))
        self._endpoint.stream_made(self._key, self)

    def data_received(self, data: bytes) -> None:
        self._framer.feed(data)
        while True:
            try:
                event = self._framer.next_event()
            except RemoteProtocolError as exc:
                if self._framer.broken:
                    log.warning("closing SIP connection %s: %s", self._key, exc)
                    self.close()
                    return
                continue  # one bad message; the framer resynchronised on its length
            if event is None:
                return
            if isinstance(event, KeepAlive):
                if event.ping:
                    self.write(PONG)  # RFC 5626 §3.5.1
                else:
                    self._endpoint.pong(self._key)  # the answer to our keep-alive ping
                continue
            self.last_active = self.last_message_at = self._endpoint._loop.time()
            self._endpoint.received_message(event, self._key)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._endpoint.stream_lost(self._key, self, self._outbound)

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


def server_tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The TLS listener's context: our certificate chain and key, TLS 1.2 or newer, no
    client certificate asked for (the PBX is checked like any peer: docs/security.md)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


def client_tls_context(ca_file: Path | None, verify: bool = True) -> ssl.SSLContext:
    """TLS for SIP (RFC 3261 §26.3.1): the system CA store or a
    private CA bundle (self-hosted PBXs), certificate and host name checked, TLS 1.2 or
    newer. ``verify=False`` is for a lab only and is logged as such."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        log.warning("SIP TLS certificate verification is OFF: use this in a lab only")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
