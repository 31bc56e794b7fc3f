"""Turn one stream of frames into RTP packets (RFC 3550 §5.1, RFC 3551 §4.1, RFC 4733 §2.5.1).

One ``Packetizer`` per outgoing stream. Each call to ``build`` fills one ptime slot: the
sequence number goes up by one per packet sent, the timestamp by one frame of samples per
slot — also across slots that were skipped after a stall (``skip``), because the RTP clock
tracks sampling time, not packets. The initial sequence number, timestamp and SSRC are random
(RFC 3550 §5.1) and come from the injected generator (``random.SystemRandom()`` in
production, a seeded ``random.Random`` in tests).
"""

from __future__ import annotations

import random
import struct
from typing import Final

from voipalert.media.errors import LocalProtocolError
from voipalert.media.rtp import RTP_VERSION, SEQ_MOD, TS_MOD

_HEADER: Final = struct.Struct("!BBHII")


class Packetizer:
    """Sequence, timestamp, SSRC and marker bookkeeping for one outgoing RTP stream."""

    def __init__(
        self, payload_type: int, *, rng: random.Random, samples_per_frame: int = 160
    ) -> None:
        if not 0 <= payload_type <= 0x7F:
            raise LocalProtocolError(f"payload type {payload_type} is not 7 bits")
        if samples_per_frame <= 0:
            raise LocalProtocolError("a frame holds at least one sample")
        self.payload_type = payload_type
        self.samples_per_frame = samples_per_frame
        self.ssrc: Final = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts = rng.getrandbits(32)
        # RFC 3551 §4.1: the first packet of a stream starts a talk-spurt.
        self._marker_pending = True
        self.packets_sent = 0
        self.octets_sent = 0

    @property
    def next_sequence_number(self) -> int:
        return self._seq

    @property
    def next_timestamp(self) -> int:
        """The RTP timestamp of the slot the next ``build`` fills."""
        return self._ts

    def start_talkspurt(self) -> None:
        """Set the marker bit on the next audio packet (first packet after silence)."""
        self._marker_pending = True

    def build(
        self,
        payload: bytes,
        *,
        payload_type: int | None = None,
        timestamp: int | None = None,
        marker: bool | None = None,
    ) -> bytes:
        """The datagram for the current slot; then move to the next slot.

        ``timestamp`` overrides the slot's timestamp (RFC 4733 §2.5.1.1: every packet of an
        event carries the event's start time); ``marker`` overrides the talk-spurt rule.
        """
        use_marker = self._marker_pending if marker is None else marker
        if marker is None:
            self._marker_pending = False
        pt = self.payload_type if payload_type is None else payload_type
        header = _HEADER.pack(
            RTP_VERSION << 6,
            (0x80 if use_marker else 0) | pt,
            self._seq,
            self._ts if timestamp is None else timestamp,
            self.ssrc,
        )
        self._seq = (self._seq + 1) % SEQ_MOD
        self._ts = (self._ts + self.samples_per_frame) % TS_MOD
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload

    def skip(self, slots: int) -> None:
        """Slots that passed without a packet (a stall): time moves on, the sequence does not.

        The receiver sees a timestamp jump with no sequence gap, which is exactly what a
        silence period looks like, so the next packet carries the marker (RFC 3551 §4.1) and
        its jitter buffer may re-synchronise.
        """
        if slots < 0:
            raise LocalProtocolError("cannot skip a negative number of slots")
        if slots:
            self._ts = (self._ts + slots * self.samples_per_frame) % TS_MOD
            self._marker_pending = True
