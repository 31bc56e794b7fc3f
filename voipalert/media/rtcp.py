"""RTCP sender and receiver reports (RFC 3550 §6.4) with a CNAME (§6.5.1), sans-IO.

Every compound packet we send is what §6.1 requires: a report first (SR when we sent RTP
since the last report, else RR), then SDES with our CNAME. What we parse is validated as
§A.2 says: version 2, the first packet an SR or RR, padding only on the last one, and the
lengths adding up to the datagram exactly. Anything else raises ``RemoteProtocolError``:
RTCP comes from the network and is hostile until checked.

Times in reports are NTP timestamps (§4): 32 bits of seconds since 1900 and 32 of fraction.
The round trip (§6.4.1) is measured in the "middle 32 bits" of NTP time (1/65536 s units):
``A - LSR - DLSR`` where A is when the report arrived.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from voipalert.media.errors import RemoteProtocolError

SR: Final = 200
RR: Final = 201
SDES: Final = 202
BYE: Final = 203
CNAME: Final = 1
NTP_EPOCH_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
MAX_BLOCKS: Final = 31


def ntp_from_unix(seconds: float) -> int:
    """64-bit NTP timestamp of a Unix time."""
    whole = int(seconds)
    fraction = int((seconds - whole) * (1 << 32)) & 0xFFFFFFFF
    return ((whole + NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32 | fraction


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp (LSR, §6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """What one receiver says about one source (§6.4.1)."""

    ssrc: int
    fraction_lost: int  # 0-255: lost / expected since the previous report, times 256
    cumulative_lost: int  # signed 24 bits (duplicates can make it negative)
    highest_seq: int  # extended: cycles * 65536 + highest sequence number
    jitter: int  # interarrival jitter, timestamp units
    lsr: int = 0  # middle 32 bits of the last SR received from that source (0: none)
    dlsr: int = 0  # delay since that SR, 1/65536 s

    def serialize(self) -> bytes:
        lost = max(-(1 << 23), min((1 << 23) - 1, self.cumulative_lost)) & 0xFFFFFF
        return struct.pack(
            "!IIIIII", self.ssrc, (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & 0xFFFFFFFF, self.jitter & 0xFFFFFFFF, self.lsr, self.dlsr,
        )  # fmt: skip

    @classmethod
    def parse(cls, data: bytes) -> ReportBlock:
        ssrc, loss, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", data)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 1 << 24
        return cls(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    ntp: int
    rtp_timestamp: int
    packets: int
    octets: int


@dataclass(frozen=True, slots=True)
class Report:
    """An SR (``sender`` set) or an RR, from ``ssrc``."""

    ssrc: int
    sender: SenderInfo | None
    blocks: tuple[ReportBlock, ...] = ()

    def serialize(self) -> bytes:
        if len(self.blocks) > MAX_BLOCKS:
            raise ValueError("at most 31 report blocks")
        body = struct.pack("!I", self.ssrc)
        if self.sender is not None:
            s = self.sender
            body += struct.pack(
                "!QIII", s.ntp, s.rtp_timestamp & 0xFFFFFFFF, s.packets & 0xFFFFFFFF,
                s.octets & 0xFFFFFFFF,
            )  # fmt: skip
        body += b"".join(block.serialize() for block in self.blocks)
        kind = SR if self.sender is not None else RR
        return _header(len(self.blocks), kind, body) + body


def _header(count: int, kind: int, body: bytes) -> bytes:
    return struct.pack("!BBH", 0x80 | count, kind, len(body) // 4)


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk: our CNAME (§6.5), padded to 32 bits with nulls."""
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, CNAME, len(text)) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(1, SDES, chunk) + chunk


def compound(report: Report, cname: str) -> bytes:
    """The datagram to send: the report, then our CNAME (§6.1)."""
    return report.serialize() + sdes_cname(report.ssrc, cname)


def parse_compound(data: bytes) -> list[Report]:
    """The SR/RR packets of a compound RTCP datagram (SDES, BYE and others are skipped
    once their framing is checked). Raises ``RemoteProtocolError`` on anything malformed."""
    reports: list[Report] = []
    offset = 0
    while offset < len(data):
        kind, count, body, offset = _next_packet(data, offset, first=not reports)
        if kind in (SR, RR):
            reports.append(_report(kind, count, body))
    if not reports:
        raise RemoteProtocolError("empty RTCP datagram")
    return reports


def _next_packet(data: bytes, offset: int, *, first: bool) -> tuple[int, int, bytes, int]:
    """(type, count, body without padding, next offset) of the packet at ``offset``."""
    if len(data) - offset < 4:
        raise RemoteProtocolError("truncated RTCP header")
    b0, kind, words = struct.unpack_from("!BBH", data, offset)
    if b0 >> 6 != 2:
        raise RemoteProtocolError("RTCP version is not 2")
    end = offset + (words + 1) * 4
    if end > len(data):
        raise RemoteProtocolError("RTCP length runs past the datagram")
    if first and kind not in (SR, RR):
        raise RemoteProtocolError("a compound RTCP packet must start with SR or RR")
    body = data[offset + 4 : end]
    if b0 & 0x20:  # padding: only on the last packet (A.2)
        pad = body[-1] if body else 0
        if end != len(data) or pad == 0 or pad > len(body):
            raise RemoteProtocolError("bad RTCP padding")
        body = body[:-pad]
    return kind, b0 & 0x1F, body, end


def _report(kind: int, count: int, body: bytes) -> Report:
    fixed = 4 + (20 if kind == SR else 0)
    if len(body) < fixed + 24 * count:
        raise RemoteProtocolError("RTCP report shorter than its block count says")
    (ssrc,) = struct.unpack_from("!I", body)
    sender = None
    if kind == SR:
        ntp, rtp_ts, packets, octets = struct.unpack_from("!QIII", body, 4)
        sender = SenderInfo(ntp, rtp_ts, packets, octets)
    blocks = tuple(
        ReportBlock.parse(body[fixed + 24 * i : fixed + 24 * (i + 1)]) for i in range(count)
    )
    return Report(ssrc, sender, blocks)
