"""What our RTP looked like on the wire: an AF_PACKET capture on loopback, with the kernel's
timestamps, of every UDP datagram our RTP ports send (needs root, which CI has).

``RtpCapture`` keeps each packet's RTP header and payload so ``tests.slot_audit`` can check
every 20 ms slot of a prompt against what it should have carried. The capture sees the
datagram when the kernel delivers it on ``lo``, which on loopback is the moment ``sendto``
ran: its timestamp is when the packet really left, whatever the sender believes.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import socket
import struct
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Final

ETH_P_IP: Final = 0x0800
# Linux constants the socket module does not export (<asm-generic/socket.h>,
# <linux/if_packet.h>).
SO_TIMESTAMPNS: Final = 35
SO_ATTACH_FILTER: Final = 26
SO_RCVBUFFORCE: Final = 33
SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6
PACKET_IGNORE_OUTGOING: Final = 23
UDP: Final = 17
CAPTURE_BUFFER: Final = 64 << 20  # a second of 200 calls both ways, with room
_RTP: Final = struct.Struct("!BBHII")
# The capture process reads in batches every 10 ms (RtpCapture's batch_interval): 200 calls
# queue about 200 packets meanwhile, far below the 64 MiB buffer.
CHILD_BATCH_INTERVAL: Final = 0.01


def open_loopback_capture(timeout: float = 0.2, ports: range | None = None) -> socket.socket:
    """A raw IPv4 socket on ``lo`` with kernel receive timestamps.

    With ``ports``, the kernel passes only UDP datagrams whose source port lies in the range
    (a classic BPF filter) and only their delivery, not their transmission: at 200 calls the
    loopback carries 40,000 copies a second, and a capture parsing all of them in Python
    falls behind and drops, which would read as packets we never sent. Drops that remain
    are counted (``capture_drops``)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    try:
        if ports is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, _source_port_filter(ports))
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # Linux 4.20+
            except OSError:
                pass  # the reader skips PACKET_OUTGOING copies itself
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)  # root
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CAPTURE_BUFFER)
        sock.bind(("lo", ETH_P_IP))
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.settimeout(timeout)
    except OSError:
        sock.close()
        raise
    return sock


def capture_drops(sock: socket.socket) -> int:
    """Packets the kernel dropped for this capture socket since the last call (reading the
    statistics resets them): its receive buffer was full."""
    _, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    return int(drops)


def _source_port_filter(ports: range) -> bytes:
    """A ``struct sock_fprog`` accepting IPv4 UDP datagrams (not fragments) whose source
    port is in ``ports``. On a SOCK_DGRAM packet socket the data starts at the IP header."""
    bpf = struct.Struct("HBBI")  # struct sock_filter: code, jt, jf, k
    ld_b, ld_h_ind, ldx_msh, jeq, jge, jgt, ret = 0x30, 0x48, 0xB1, 0x15, 0x35, 0x25, 0x06
    jset, ld_h = 0x45, 0x28
    program = [
        (ld_b, 0, 0, 9),  # protocol
        (jeq, 0, 7, UDP),
        (ld_h, 0, 0, 6),  # flags and fragment offset
        (jset, 5, 0, 0x1FFF),  # a later fragment has no UDP header
        (ldx_msh, 0, 0, 0),  # x = IP header length
        (ld_h_ind, 0, 0, 0),  # UDP source port
        (jge, 0, 2, ports.start),
        (jgt, 1, 0, ports.stop - 1),
        (ret, 0, 0, 0xFFFF),
        (ret, 0, 0, 0),
    ]
    filters = b"".join(bpf.pack(*instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(filters)
    _FILTERS.append(buffer)  # the kernel copies it at setsockopt; keep it alive until then
    return struct.pack("HL", len(program), ctypes.addressof(buffer))


_FILTERS: list[ctypes.Array[ctypes.c_char]] = []


def kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float:
    """The SO_TIMESTAMPNS time of a received packet (epoch seconds), or now."""
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
            seconds, nanos = struct.unpack_from("qq", value)
            return float(seconds + nanos / 1e9)
    return time.time()  # noqa: TID251  # wall clock, like the kernel's stamps


def udp_ports(data: bytes) -> tuple[int, int, int] | None:
    """(source port, destination port, offset of the UDP payload) of an IPv4 UDP datagram."""
    if len(data) < 28 or data[0] >> 4 != 4 or data[9] != UDP:
        return None
    header = (data[0] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", data, header)
    return sport, dport, header + 8


@dataclass(frozen=True, slots=True)
class RtpPacket:
    at: float  # kernel time, epoch seconds
    sport: int
    dport: int
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


class RtpCapture:
    """Captures the RTP packets whose source port lies in ``ports``; a context manager."""

    def __init__(self, ports: range, snaplen: int = 2048, batch_interval: float = 0.0) -> None:
        self._ports = ports
        self._snaplen = snaplen
        # > 0: read what is queued, then sleep this long, instead of waiting on the socket.
        # A reader asleep on the socket is woken by every packet, and on loopback the
        # sender pays for that wake-up in its own sendto (tens of µs in a virtual machine,
        # where waking another vCPU is an interrupt between processors): at 20,000 packets
        # a second the capture made the benchmarked process look slower than it is. The
        # kernel time stamps each packet as it arrives, so reading late changes no figure.
        self._batch_interval = batch_interval
        self._packets: list[RtpPacket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = open_loopback_capture(ports=ports)
        self.drops = 0  # packets the kernel dropped for us: the capture, not the sender
        self._thread = threading.Thread(target=self._run, name="rtp-capture", daemon=True)

    def __enter__(self) -> RtpCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.drops += capture_drops(self._sock)
        self._sock.close()

    def _run(self) -> None:
        batched = self._batch_interval > 0
        if batched:
            self._sock.settimeout(0.0)
        # Batched, the reader ends only once the queue is empty after the stop: what it had
        # not read yet is still captured.
        while batched or not self._stop.is_set():
            try:
                data, ancillary, _, address = self._sock.recvmsg(self._snaplen, 64)
            except TimeoutError:
                continue
            except BlockingIOError:
                if self._stop.is_set():
                    return
                self._stop.wait(self._batch_interval)  # nothing queued: nobody waits on it
                continue
            except OSError:
                return
            if address[2] == socket.PACKET_OUTGOING:
                continue  # loopback shows each packet twice: keep the delivery
            packet = self._parse(data, ancillary)
            if packet is not None:
                with self._lock:
                    self._packets.append(packet)

    def _parse(self, data: bytes, ancillary: list[tuple[int, int, bytes]]) -> RtpPacket | None:
        ports = udp_ports(data)
        if ports is None or ports[0] not in self._ports:
            return None
        sport, dport, offset = ports
        if len(data) < offset + _RTP.size or data[offset] >> 6 != 2:
            return None  # RTCP and anything else: not RTP version 2 with a full header
        first, second, seq, timestamp, ssrc = _RTP.unpack_from(data, offset)
        if 72 <= second & 0x7F <= 76:
            return None  # RTCP on an odd port shares the first byte's shape (RFC 5761 §4)
        start = offset + _RTP.size + 4 * (first & 0x0F)
        return RtpPacket(
            kernel_time(ancillary), sport, dport, second & 0x7F, bool(second & 0x80),
            seq, timestamp, ssrc, bytes(data[start:]),
        )  # fmt: skip

    def packets(self) -> list[RtpPacket]:
        with self._lock:
            return list(self._packets)

    def streams(self) -> dict[int, list[RtpPacket]]:
        """Packets by SSRC, in the order they left."""
        by_ssrc: dict[int, list[RtpPacket]] = {}
        for packet in self.packets():
            by_ssrc.setdefault(packet.ssrc, []).append(packet)
        return by_ssrc


class RtpCaptureProcess:
    """``RtpCapture`` in a child process, for a capture beside voipalert code running in this
    process: the capture thread parses every packet in Python, and in-process it would take
    the GIL from the event loop it measures (a benchmark artefact, not a cost of ours)."""

    def __init__(self, ports: range) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_capture_child, args=(ports.start, ports.stop, child), daemon=True
        )
        self._packets: list[RtpPacket] = []
        self.drops = 0

    def __enter__(self) -> RtpCaptureProcess:
        self._process.start()
        if not self._conn.poll(30) or self._conn.recv() != "ready":
            self._process.kill()
            raise RuntimeError("the capture process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(60):
                self._packets, self.drops = self._conn.recv()
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
            self._conn.close()

    def streams(self) -> dict[int, list[RtpPacket]]:
        by_ssrc: dict[int, list[RtpPacket]] = {}
        for packet in self._packets:
            by_ssrc.setdefault(packet.ssrc, []).append(packet)
        return by_ssrc


def _capture_child(start: int, stop: int, conn: Connection) -> None:
    with RtpCapture(range(start, stop), batch_interval=CHILD_BATCH_INTERVAL) as capture:
        conn.send("ready")
        conn.recv()  # "stop"
        time.sleep(0.2)  # noqa: TID251  # the last packets in flight reach the socket
    conn.send((capture.packets(), capture.drops))
