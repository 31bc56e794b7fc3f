"""What to do with each datagram arriving on a call's RTP port (sans-IO).

An acknowledgement stops an escalation, so the receiver decides *who* may speak before it
decides what was said. Without SRTP nothing in a packet proves its origin; what we can
check is where it comes from, whether it looks like one continuous stream, and when it
arrives. The rules, with RFC 3550 §8.2, RFC 4961 and RFC 7362 in mind:

* Before answer nothing counts. The port is bound before the INVITE leaves, so packets
  sprayed at it wait in the socket buffer; the session discards them when it attaches at
  answer time (``net.rtp_socket``), they never reach this receiver.
* Anything that does not parse as RTP, or carries a payload type we did not negotiate, is
  dropped and counted; nothing a datagram holds can raise out of ``receive``.
* The address and port of the SDP answer is the expected source (symmetric RTP, RFC 4961:
  the far end sends from where it receives). Its first valid packet fixes the source for
  good; every other address is then "wrong source".
* Latching (RFC 7362) is the exception for a far end behind NAT, whose packets come from
  another port or address than its SDP says. Because latching is exactly what a media
  hijacker exploits (RFC 7362's security considerations), a candidate must earn it:

  - latching is on (``latching=False`` means only the SDP address ever counts);
  - the SDP address has stayed silent (once it spoke, the source is fixed);
  - the candidate's host is the SDP host or one of ``latch_hosts`` (the signalling peer):
    a stranger elsewhere on the network can never latch;
  - the candidate passes probation (RFC 3550 §8.2 / A.1): ``probation_packets`` audio
    packets in sequence with one SSRC and a plausible G.711 length, spread over at least
    ``probation_seconds``; a gap, another SSRC or a telephone-event restarts it (so a
    digit can never be in progress while a source is being admitted);
  - no other candidate is on probation at the same time: two streams claiming the same
    call mean one is forged, and we cannot tell which, so nobody latches (contested).

* A telephone-event (RFC 4733) counts only from the accepted source *and* its current
  SSRC (the SSRC of the source's audio, RFC 4733 §2.1: events share the audio's SSRC).
* Per SSRC: RFC 3550 A.1 sequence tracking (cycles, loss), A.8 interarrival jitter on audio
  packets. A new SSRC from the source (re-INVITE, a PBX bridging another leg) resets it.
* Audio goes to the caller decoded, but only packets that advance the sequence: a late or
  duplicated packet would splice old audio into the in-band detector's input.
* Every refused packet is counted by reason; the adapter logs refused sources
  (rate-limited). ``set_remote`` (a re-INVITE) starts the admission over.

Time comes in as an argument (``now``, monotonic seconds): no clock is read here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.errors import RemoteProtocolError
from voipalert.media.quality import SourceCounts
from voipalert.media.rfc4733 import EventDigit, EventReceiver
from voipalert.media.rtp import SEQ_MOD, RtpPacket, seq_diff

Address = tuple[str, int]

# Probation for latching (RFC 3550 §8.2 / A.1): 10 packets over at least 0.18 s (a
# continuous 20 ms stream), long enough that the far end's own audio from its SDP address
# arrives first when it is not behind NAT.
PROBATION_PACKETS: Final = 10
PROBATION_SECONDS: Final = 0.18
MAX_CANDIDATES: Final = 8
MAX_DROPOUT: Final = 3000  # RFC 3550 A.1
MAX_MISORDER: Final = 100
# Plausible G.711 frames for latching: 10 ms steps up to 60 ms (RFC 3551 §4.5).
_FRAME_STEP: Final = 80
_MAX_FRAME: Final = 480


class DropReason(enum.Enum):
    MALFORMED = "malformed"
    WRONG_SOURCE = "wrong-source"
    UNKNOWN_PAYLOAD_TYPE = "unknown-payload-type"
    BAD_EVENT = "bad-telephone-event"
    PROBATION = "probation"
    CONTESTED = "contested-latching"
    WRONG_SSRC = "wrong-ssrc"
    LATE = "late-or-duplicate"


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """The audio of one packet that advanced the sequence, still G.711: whoever looks at
    the samples decodes them (``pcm``). With the analysis in a worker process the loop
    never does: the worker decodes (docs/rx-workers.md §2)."""

    payload: bytes
    codec: Codec
    ssrc: int
    sequence_number: int
    timestamp: int
    lost_before: int  # packets missing between the previous audio frame and this one

    @property
    def pcm(self) -> NDArray[np.int16]:
        """The frame's 16-bit linear samples (decoded at each read)."""
        return g711.decode(self.codec, self.payload)


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """An RFC 4733 key press (reported once per event)."""

    digit: EventDigit


@dataclass(frozen=True, slots=True)
class SourceLatched:
    """Media comes from ``address``: send there from now on (symmetric RTP, RFC 4961)."""

    address: Address


@dataclass(frozen=True, slots=True)
class PacketDropped:
    reason: DropReason


ReceiveEvent = AudioFrame | DigitReceived | SourceLatched | PacketDropped


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    codec: Codec
    payload_type: int
    telephone_event_pt: int | None
    remote: Address | None
    latching: bool = True
    clock_rate: int = g711.SAMPLE_RATE_HZ
    latch_hosts: frozenset[str] = frozenset()
    """Hosts besides the SDP host a NAT'd far end may latch from (the signalling peer)."""
    probation_packets: int = PROBATION_PACKETS
    probation_seconds: float = PROBATION_SECONDS


@dataclass(slots=True)
class ReceiverStats:
    """Counters for the audit trail and metrics; ``jitter`` is in timestamp units."""

    packets: int = 0
    octets: int = 0
    expected: int = 0
    lost: int = 0
    jitter: float = 0.0
    ssrc_changes: int = 0
    drops: dict[DropReason, int] = field(default_factory=dict)

    def dropped(self, reason: DropReason) -> int:
        return self.drops.get(reason, 0)

    @property
    def jitter_ms(self) -> float:
        return self.jitter / g711.SAMPLE_RATE_HZ * 1000


@dataclass(slots=True)
class _Sequence:
    """RFC 3550 A.1 state of one SSRC."""

    base: int
    max_seq: int
    cycles: int = 0
    bad_seq: int = SEQ_MOD + 1
    received: int = 1
    transit: float | None = None

    def update(self, seq: int) -> bool:
        """Count ``seq``; True when it advances the sequence (new audio for the detector)."""
        delta = (seq - self.max_seq) % SEQ_MOD
        if 0 < delta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = seq
            self.received += 1
            return True
        if delta <= SEQ_MOD - MAX_MISORDER and delta != 0:
            if seq == self.bad_seq:
                # Two packets in a row after a big jump: the sender restarted. Resync.
                self.base = self.max_seq = seq
                self.cycles, self.received, self.bad_seq = 0, 1, SEQ_MOD + 1
                self.transit = None
                return True
            self.bad_seq = (seq + 1) % SEQ_MOD
            return False
        self.received += 1  # duplicate or reordered: counted, not replayed
        return False

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base + 1


@dataclass(slots=True)
class _Candidate:
    """A source on probation for latching."""

    ssrc: int
    next_seq: int
    first_at: float
    last_at: float
    count: int = 1


class RtpReceiver:
    """Validates, filters and accounts the packets of one call's incoming RTP stream."""

    def __init__(self, config: ReceiverConfig) -> None:
        self.config = config
        self.stats = ReceiverStats()
        self.events = EventReceiver()
        self._remote = config.remote
        self._source: Address | None = None
        self._source_ssrc: int | None = None
        self._candidates: dict[Address, _Candidate] = {}
        self._ssrc: int | None = None
        self._seq: _Sequence | None = None
        self._lost_base = 0  # loss of previous SSRCs
        self._expected_base = 0

    @property
    def source(self) -> Address | None:
        """The address media is accepted from, once fixed."""
        return self._source

    def source_counts(self) -> SourceCounts | None:
        """The current stream's counters for an RTCP report block (None before audio)."""
        seq, ssrc = self._seq, self._ssrc
        if seq is None or ssrc is None:
            return None
        return SourceCounts(
            ssrc, seq.cycles + seq.max_seq, seq.expected, seq.received, self.stats.jitter
        )

    def set_remote(self, remote: Address | None) -> None:
        """New SDP answer (re-INVITE): media may come from somewhere else now."""
        self._remote, self._source, self._source_ssrc = remote, None, None
        self._candidates.clear()

    def receive(self, data: bytes, src: Address, now: float) -> list[ReceiveEvent]:
        """One datagram from ``src`` at monotonic time ``now`` (seconds)."""
        try:
            packet = RtpPacket.parse(data)
        except RemoteProtocolError:
            return [self._drop(DropReason.MALFORMED)]
        cfg = self.config
        is_audio = packet.payload_type == cfg.payload_type
        is_event = (
            cfg.telephone_event_pt is not None and packet.payload_type == cfg.telephone_event_pt
        )
        if not (is_audio or is_event):
            return [self._drop(DropReason.UNKNOWN_PAYLOAD_TYPE)]
        out: list[ReceiveEvent] = []
        if self._source != src:
            verdict = self._admit(packet, src, is_audio, now)
            if isinstance(verdict, PacketDropped):
                self._count(verdict.reason)
                return [verdict]
            if verdict is not None:
                out.append(verdict)
        if is_audio or self._source_ssrc is None:
            self._source_ssrc = packet.ssrc
        elif packet.ssrc != self._source_ssrc:
            # An event under another SSRC than the source's audio: not the far end's key.
            return [self._drop(DropReason.WRONG_SSRC)]
        advanced, lost = self._account(packet)
        self.stats.packets += 1
        self.stats.octets += len(packet.payload)
        if is_event:
            return out + self._event(packet)
        return [*out, self._audio(packet, now, advanced, lost)]

    def _audio(
        self, packet: RtpPacket, now: float, advanced: bool, lost: int
    ) -> AudioFrame | PacketDropped:
        if not packet.payload:
            return self._drop(DropReason.MALFORMED)
        self._jitter(packet, now)
        if not advanced:
            return self._drop(DropReason.LATE)
        return AudioFrame(
            packet.payload, self.config.codec, packet.ssrc, packet.sequence_number,
            packet.timestamp, lost,
        )  # fmt: skip

    def _admit(
        self, packet: RtpPacket, src: Address, is_audio: bool, now: float
    ) -> ReceiveEvent | None:
        """Decide about a packet from an address that is not (yet) the source."""
        if self._source is not None:
            return PacketDropped(DropReason.WRONG_SOURCE)
        if src == self._remote:
            # The SDP address spoke: it is the source, and nobody else can latch any more.
            self._source, self._candidates = src, {}
            return None
        if not self.config.latching or not self._may_latch_from(src[0]):
            return PacketDropped(DropReason.WRONG_SOURCE)
        candidate = self._probation(packet, src, is_audio, now)
        if candidate is None or not self._probation_passed(candidate, now):
            return PacketDropped(DropReason.PROBATION)
        if self._contested(src, now):
            return PacketDropped(DropReason.CONTESTED)
        self._source, self._source_ssrc, self._candidates = src, packet.ssrc, {}
        return SourceLatched(src)

    def _may_latch_from(self, host: str) -> bool:
        remote = self._remote
        return (remote is not None and host == remote[0]) or host in self.config.latch_hosts

    def _probation(
        self, packet: RtpPacket, src: Address, is_audio: bool, now: float
    ) -> _Candidate | None:
        """Track ``src``'s stream; the candidate if this packet continues it, else None."""
        plausible = (
            is_audio
            and 0 < len(packet.payload) <= _MAX_FRAME
            and len(packet.payload) % _FRAME_STEP == 0
        )
        seq = packet.sequence_number
        candidate = self._candidates.get(src)
        if not plausible:
            # Events or odd lengths restart probation: no key press can be in progress
            # when a source is admitted.
            self._candidates.pop(src, None)
            return None
        if candidate is not None and (candidate.ssrc, candidate.next_seq) == (packet.ssrc, seq):
            candidate.count += 1
            candidate.next_seq = (seq + 1) % SEQ_MOD
            candidate.last_at = now
            return candidate
        if candidate is None and len(self._candidates) >= MAX_CANDIDATES:
            oldest = min(self._candidates, key=lambda a: self._candidates[a].last_at)
            del self._candidates[oldest]
        self._candidates[src] = _Candidate(packet.ssrc, (seq + 1) % SEQ_MOD, now, now)
        return None

    def _probation_passed(self, candidate: _Candidate, now: float) -> bool:
        cfg = self.config
        return (
            candidate.count >= cfg.probation_packets
            and now - candidate.first_at >= cfg.probation_seconds
        )

    def _contested(self, src: Address, now: float) -> bool:
        """Another address sent a plausible stream within the probation window."""
        window = self.config.probation_seconds
        return any(
            address != src and now - other.last_at <= window
            for address, other in self._candidates.items()
        )

    def _account(self, packet: RtpPacket) -> tuple[bool, int]:
        """RFC 3550 A.1 bookkeeping; (advances the sequence, packets lost just before)."""
        seq = packet.sequence_number
        if self._ssrc != packet.ssrc or self._seq is None:
            if self._seq is not None:
                self.stats.ssrc_changes += 1
                self.events.forget(self._ssrc if self._ssrc is not None else 0)
                self._expected_base += self._seq.expected
                self._lost_base += self._seq.expected - self._seq.received
            self._ssrc = packet.ssrc
            self._seq = _Sequence(base=seq, max_seq=seq)
            self._publish_loss()
            return True, 0
        previous = self._seq.max_seq
        advanced = self._seq.update(seq)
        self._publish_loss()
        if not advanced:
            return False, 0
        return True, max(0, seq_diff(seq, previous) - 1)

    def _publish_loss(self) -> None:
        assert self._seq is not None
        self.stats.expected = self._expected_base + self._seq.expected
        self.stats.lost = self._lost_base + self._seq.expected - self._seq.received

    def _jitter(self, packet: RtpPacket, now: float) -> None:
        # RFC 3550 A.8: J += (|D| - J) / 16, in timestamp units, audio packets only
        # (RFC 4733 packets carry the event's start time, not their sampling time).
        assert self._seq is not None
        transit = now * self.config.clock_rate - packet.timestamp
        if self._seq.transit is not None:
            d = abs(transit - self._seq.transit)
            if d < 1 << 31:  # not across a timestamp wrap
                self.stats.jitter += (d - self.stats.jitter) / 16
        self._seq.transit = transit

    def _event(self, packet: RtpPacket) -> list[ReceiveEvent]:
        try:
            digit = self.events.receive(packet.ssrc, packet.timestamp, packet.payload)
        except RemoteProtocolError:
            return [self._drop(DropReason.BAD_EVENT)]
        return [] if digit is None else [DigitReceived(digit)]

    def _drop(self, reason: DropReason) -> PacketDropped:
        self._count(reason)
        return PacketDropped(reason)

    def _count(self, reason: DropReason) -> None:
        self.stats.drops[reason] = self.stats.drops.get(reason, 0) + 1
