"""The RTP fixed header (RFC 3550 §5.1) and wrap-safe sequence/timestamp arithmetic.

``RtpPacket.parse`` accepts everything RFC 3550 lets a sender put on the wire (CSRC list,
header extension, padding) and raises ``RemoteProtocolError`` for anything else; the I/O
layer counts and drops those. ``serialize`` writes exactly what ``parse`` read, so golden
packets round-trip byte for byte (padding octets are written as zeros, RFC 3550 §5.1 leaves
their content open).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from voipalert.media.errors import LocalProtocolError, RemoteProtocolError

RTP_VERSION: Final = 2
HEADER_BYTES: Final = 12
MAX_CSRC: Final = 15
SEQ_MOD: Final = 1 << 16
TS_MOD: Final = 1 << 32

_FIXED: Final = struct.Struct("!BBHII")
_EXT_HEADER: Final = struct.Struct("!HH")


def seq_add(seq: int, delta: int) -> int:
    """Sequence number ``delta`` packets after ``seq`` (mod 2**16)."""
    return (seq + delta) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """How far ``a`` is ahead of ``b``, in -32768..32767 (RFC 3550 A.1 wrap rule)."""
    return (a - b + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def ts_add(ts: int, delta: int) -> int:
    """Timestamp ``delta`` sampling units after ``ts`` (mod 2**32)."""
    return (ts + delta) % TS_MOD


def ts_diff(a: int, b: int) -> int:
    """How far timestamp ``a`` is ahead of ``b``, in -2**31..2**31-1."""
    return (a - b + TS_MOD // 2) % TS_MOD - TS_MOD // 2


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """RFC 3550 §5.3.1 header extension: a 16-bit profile word and whole 32-bit words."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Decode one RTP datagram, or raise ``RemoteProtocolError`` saying what is wrong."""
        if len(data) < HEADER_BYTES:
            raise RemoteProtocolError(f"RTP packet of {len(data)} bytes is shorter than 12")
        first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RemoteProtocolError(f"RTP version {first >> 6}, expected 2")
        offset = HEADER_BYTES + 4 * (first & 0x0F)
        if offset > len(data):
            raise RemoteProtocolError("RTP packet shorter than its CSRC list")
        csrc = struct.unpack_from(f"!{first & 0x0F}I", data, HEADER_BYTES)
        extension = None
        if first & 0x10:
            if offset + 4 > len(data):
                raise RemoteProtocolError("RTP header extension truncated")
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            end = offset + 4 + 4 * words
            if end > len(data):
                raise RemoteProtocolError("RTP header extension longer than the packet")
            extension = RtpExtension(profile, bytes(data[offset + 4 : end]))
            offset = end
        end = len(data)
        padding = 0
        if first & 0x20:
            # RFC 3550 §5.1: the last octet counts the padding, itself included.
            padding = data[-1]
            if padding == 0 or offset + padding > end:
                raise RemoteProtocolError(f"RTP padding count {padding} is invalid")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=ts,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=tuple(csrc),
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        """Encode the packet; raises ``LocalProtocolError`` for a field out of range."""
        self._check()
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        parts = [
            _FIXED.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            ),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            words = len(self.extension.data) // 4
            parts += [_EXT_HEADER.pack(self.extension.profile, words), self.extension.data]
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)

    def _check(self) -> None:
        if not 0 <= self.payload_type <= 0x7F:
            raise LocalProtocolError(f"payload type {self.payload_type} is not 7 bits")
        if not 0 <= self.sequence_number < SEQ_MOD:
            raise LocalProtocolError(f"sequence number {self.sequence_number} out of range")
        if not (0 <= self.timestamp < TS_MOD and 0 <= self.ssrc < TS_MOD):
            raise LocalProtocolError("timestamp and SSRC are 32-bit unsigned")
        if len(self.csrc) > MAX_CSRC or not all(0 <= c < TS_MOD for c in self.csrc):
            raise LocalProtocolError("at most 15 CSRCs, each 32-bit unsigned")
        ext = self.extension
        if ext is not None and (len(ext.data) % 4 or len(ext.data) > 4 * 0xFFFF):
            raise LocalProtocolError("header extension data must be whole 32-bit words")
        if ext is not None and not 0 <= ext.profile <= 0xFFFF:
            raise LocalProtocolError("header extension profile is 16 bits")
        if not 0 <= self.padding <= 0xFF:
            raise LocalProtocolError(f"padding {self.padding} must be 0-255 octets")
