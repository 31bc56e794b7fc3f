"""RTP/RTCP port pairs from the configured range (RFC 3550 §11: RTP on an even port, RTCP on
the next one).

The allocator binds both sockets before the port goes into an SDP offer, so nothing can take
it in between, and holds them until the call releases them. A port another process holds
fails with EADDRINUSE and the next even port is tried. ``SO_REUSEADDR`` is never set: on a
UDP socket it would let two calls share a port and split the packets between them (bpo-37228,
the reason asyncio dropped ``reuse_address`` for UDP). The search starts after the last
port handed out, so a port just released is not reused at once and stray late packets of
the previous call do not land in the next one.

``allocate`` is thread-safe, and the phone runs it in a worker thread: creating and binding
two sockets are system calls that a loaded VM has been seen to hold for over 100 ms, and at
call start nothing else may hold the event loop (docs/realtime.md §6). Only the bookkeeping
(which ports are held, where the search resumes) is under the lock; the binding is not, so
a release from the event loop never waits for a slow ``bind``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from dataclasses import dataclass, field

from voipalert.net.errors import PortRangeExhaustedError


@dataclass(slots=True)
class RtpPorts:
    """A bound RTP socket on an even port and its RTCP socket on the next one."""

    host: str
    port: int
    rtp: socket.socket
    rtcp: socket.socket
    closed: bool = field(default=False)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.rtp.close()
            self.rtcp.close()


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to ``host:port`` (never with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def bind_pair(host: str, port: int) -> RtpPorts:
    """Bind ``port`` and ``port + 1`` (an explicitly configured pair, no search)."""
    rtp = bind_udp(host, port)
    try:
        rtcp = bind_udp(host, port + 1)
    except BaseException:
        rtp.close()
        raise
    return RtpPorts(host, port, rtp, rtcp)


class RtpPortAllocator:
    """Hands out RTP/RTCP port pairs between ``port_min`` and ``port_max`` (inclusive)."""

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        ipaddress.ip_address(host)  # an address, never a name: no DNS on this path
        first = port_min + (port_min % 2)
        if not 0 < first < port_max <= 65535:
            raise ValueError(f"no even/odd port pair in {port_min}-{port_max}")
        self.host = host
        self._ports = list(range(first, port_max, 2))  # even p with p + 1 <= port_max
        self._next = 0
        self._held: set[int] = set()  # handed out, or being bound by some thread
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return len(self._held)

    def allocate(self) -> RtpPorts:
        """Bind the next free pair; ``PortRangeExhaustedError`` when none is left.

        Safe to call from several threads at once: a port is claimed under the lock before
        it is bound, so two callers never try the same one."""
        for _ in range(len(self._ports)):
            port = self._claim_next()
            if port is None:
                break
            try:
                pair = self._try(port)
            except BaseException:
                self._unclaim(port)
                raise
            if pair is not None:
                return pair
            self._unclaim(port)  # another process holds it: try the next one
        raise PortRangeExhaustedError(
            errno.EADDRINUSE,
            f"no free RTP port pair in {self._ports[0]}-{self._ports[-1] + 1} on {self.host}",
        )

    def release(self, ports: RtpPorts) -> None:
        """Close the pair and make its port available again (idempotent)."""
        ports.close()
        self._unclaim(ports.port)

    def _claim_next(self) -> int | None:
        """The next port not held, now held; None when every port is."""
        with self._lock:
            for _ in range(len(self._ports)):
                port = self._ports[self._next]
                self._next = (self._next + 1) % len(self._ports)
                if port not in self._held:
                    self._held.add(port)
                    return port
            return None

    def _unclaim(self, port: int) -> None:
        with self._lock:
            self._held.discard(port)

    def _try(self, port: int) -> RtpPorts | None:
        try:
            rtp = bind_udp(self.host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return None
            raise
        try:
            rtcp = bind_udp(self.host, port + 1)
        except OSError as exc:
            rtp.close()
            if exc.errno == errno.EADDRINUSE:
                return None
            raise
        return RtpPorts(self.host, port, rtp, rtcp)
