"""The asyncio side of the SIP user agent: sockets and one timer (STYLE.md rule 1).

Modelled on aioquic's ``asyncio/protocol.py``: after every input (datagram, stream bytes,
timer, transport error, command) the endpoint drains the agent's events to ``on_event``,
sends what the agent wants sent, and re-arms a single ``loop.call_at`` at the agent's next
deadline. The agent never sees a socket and the endpoint never interprets SIP.

* UDP: one socket, bound to ``bind``; we send from the port we listen on (symmetric
  signalling, so ``rport`` works). ICMP errors surface in ``error_received``: they are
  reported to the agent as a transport failure of the destination we last sent to
  (STYLE.md pitfall 12).
* TCP: a listener on ``bind`` (Kamailio opens a *new* connection to our Contact, as
  TESTBED-NOTES measured) and one outbound connection per destination, framed by
  ``StreamFramer``. A broken connection fails the transactions on it (RFC 3261 §18).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from voipalert.sip.agent import Outbound, UserAgent
from voipalert.sip.dialog import Address
from voipalert.sip.errors import RemoteProtocolError
from voipalert.sip.events import SipEvent
from voipalert.sip.framing import PONG, KeepAlive, StreamFramer, is_keepalive
from voipalert.sip.message import Request, Response

log = logging.getLogger("voipalert.sip")
CONNECT_TIMEOUT_SECONDS: Final = 5.0
EventHandler = Callable[[SipEvent], None]
WireTrace = Callable[[str, bytes, Address], None]
wire_log = logging.getLogger("voipalert.sip.wire")


def log_wire(direction: str, data: bytes, peer: Address) -> None:
    """The default trace: every message at DEBUG on ``voipalert.sip.wire``. Credentials
    are never logged (SIP-CHECKLIST §4.9): digest responses are masked."""
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
    ) -> None:  # fmt: skip
        self.agent = agent
        self._trace = trace
        self._tls = tls
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
        self._resolved: dict[str, str] = {}
        self._last_destination: Address | None = None
        self._closed = False

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
            # No TLS listener: we have no server certificate. The PBX reaches us over the
            # connection we registered on (Asterisk does this; RFC 5626 flows).
            pass
        else:
            self._server = await self._loop.create_server(
                lambda: _StreamProtocol(self, None), host, port
            )

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._connecting.values()):
            task.cancel()
        for task in list(self._connecting.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream in list(self._streams.values()):
            stream.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()

    async def resolve(self, host: str) -> str:
        """Resolve a host name once (no DNS in the sans-IO core); IPs pass through."""
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        if host not in self._resolved:
            infos = await self._loop.getaddrinfo(host, None, proto=0)
            self._resolved[host] = str(infos[0][4][0])
        return self._resolved[host]

    def act(self, command: Callable[[float], object]) -> object:
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
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.agent.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        # Timers fire early or late; hand the agent at least the deadline (pitfall 1).
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

    def failed(self, destination: Address) -> None:
        self.agent.transport_failed(destination, self._loop.time())
        self.process()

    # ------------------------------------------------------------ sending

    def _send(self, outbound: Outbound) -> None:
        self._trace("send", outbound.data, outbound.destination)
        host, port = outbound.destination
        if host in self._resolved:
            host = self._resolved[host]
        destination = (host, port)
        if self._udp is not None:
            self._last_destination = outbound.destination
            self._udp.sendto(outbound.data, destination)
            return
        stream = self._streams.get(outbound.destination)
        if stream is not None:
            stream.write(outbound.data)
            return
        self._connect_and_send(outbound.destination, destination, outbound.data)

    def _connect_and_send(self, key: Address, destination: Address, data: bytes) -> None:
        # Messages for a connection being opened wait for it, in order.
        self._queued.setdefault(key, []).append(data)
        if key not in self._connecting:
            self._connecting[key] = self._loop.create_task(self._connect(key, destination))

    async def _connect(self, key: Address, destination: Address) -> None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                _, protocol = await self._loop.create_connection(
                    lambda: _StreamProtocol(self, key), destination[0], destination[1],
                    ssl=self._tls, server_hostname=key[0] if self._tls else None,
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
        self._streams[key] = stream

    def stream_lost(self, key: Address, stream: _StreamProtocol, outbound: bool) -> None:
        if self._streams.get(key) is stream:
            del self._streams[key]
        if outbound and not self._closed:
            self.failed(key)

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
        by_ip = {ip: name for name, ip in self._resolved.items()}
        for host, port in failed:
            self.failed((by_ip.get(host, host), port))


# Linux reports ICMP errors (port unreachable...) on an *unconnected* UDP socket only with
# IP_RECVERR (ip(7)); Python's socket module has no name for it. Without it a dead
# destination costs a full Timer B/F (32 s) instead of failing at once.
_IP_RECVERR: Final = 11
_IPV6_RECVERR: Final = 25


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
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


class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._endpoint.received(data, (str(addr[0]), int(str(addr[1]))))

    def error_received(self, exc: Exception) -> None:
        self._endpoint.datagram_error(exc)


class _StreamProtocol(asyncio.Protocol):
    """One TCP connection: bytes → StreamFramer → agent. ``key`` is the destination we
    connected to (outbound) or, for accepted connections, the peer's address."""

    def __init__(self, endpoint: SipEndpoint, key: Address | None) -> None:
        self._endpoint = endpoint
        self._outbound = key is not None
        self._key: Address = key if key is not None else ("", 0)
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None

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
                continue
            self._endpoint.received_message(event, self._key)

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint.stream_lost(self._key, self, self._outbound)

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def client_tls_context(ca_file: Path | None, verify: bool = True) -> ssl.SSLContext:
    """TLS for SIP (RFC 3261 §26.3.1, SIP-CHECKLIST §4.11): the system CA store or a
    private CA bundle (self-hosted PBXs), certificate and host name checked, TLS 1.2 or
    newer. ``verify=False`` is for a lab only and is logged as such."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        log.warning("SIP TLS certificate verification is OFF: use this in a lab only")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
