"""One call's audio quality: RTCP in and out (RFC 3550 §6.4) and an estimated MOS, sans-IO.

``CallQualityMeter`` is fed what the RTP session knows (what it sent, the receiver's RFC 3550
A.1/A.8 counters) and the RTCP reports that arrive, and it says what report to send next
and, at the end, one ``CallQuality`` kept with the attempt:

* our view of the far end's stream: packets expected and lost, the loss in percent, the
  interarrival jitter (the largest of the running estimate, in ms);
* the far end's view of ours, from its report blocks about our SSRC: its loss and jitter;
* the round trip from the LSR/DLSR of those blocks (§6.4.1);
* an estimated MOS (listening quality) from the ITU-T G.107 E-model for G.711 with packet
  loss concealment (G.113: Ie 0, Bpl 25.1, random loss), the one-way delay taken as half
  the round trip plus a 40 ms jitter buffer and 2 x 20 ms packetisation, and the delay
  impairment in Cole and Rosenbluth's approximation of G.107 (Id = 0.024·d, plus
  0.11·(d - 177.3) past 177.3 ms). It is an estimate for comparing calls and finding bad
  lines, not a measurement of what the person heard (docs/realtime.md §7).

Times come in as arguments (``now`` monotonic seconds, ``wall`` Unix seconds for NTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from voipalert.media.rtcp import Report, ReportBlock, SenderInfo, ntp_from_unix, ntp_middle

JITTER_BUFFER_MS: Final = 40.0
PACKETISATION_MS: Final = 40.0  # one 20 ms frame at each end
G711_BPL: Final = 25.1  # packet-loss robustness of G.711 with PLC (ITU-T G.113 Appendix I)
R0_MINUS_IS: Final = 93.2  # G.107 defaults


def r_factor(loss_percent: float, one_way_ms: float) -> float:
    """The E-model's R for G.711 (Ie 0) at random loss ``loss_percent``."""
    ie_eff = 95.0 * loss_percent / (loss_percent + G711_BPL)
    delay = 0.024 * one_way_ms + (0.11 * (one_way_ms - 177.3) if one_way_ms > 177.3 else 0.0)
    return R0_MINUS_IS - delay - ie_eff


def mos_from_r(r: float) -> float:
    """G.107 Annex B: R to the estimated mean opinion score (1.0 - 4.5)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


@dataclass(frozen=True, slots=True)
class CallQuality:
    packets_expected: int
    packets_lost: int
    loss_percent: float
    jitter_ms: float
    far_loss_percent: float | None  # what the far end reported about our stream
    far_jitter_ms: float | None
    rtt_ms: float | None
    mos: float
    reports_sent: int
    reports_received: int
    sent_skipped_slots: int = 0
    """Slots of our audio never sent: the loop stalled past the pacer's catch-up bound."""
    sent_dropped: int = 0
    """Packets of ours the socket refused (its buffer was full)."""


@dataclass(frozen=True, slots=True)
class SourceCounts:
    """The far end's current stream as the receiver counts it (RFC 3550 A.1, A.8)."""

    ssrc: int
    highest_seq: int  # extended: cycles + highest sequence number
    expected: int
    received: int
    jitter: float  # timestamp units


@dataclass(slots=True)
class _Prior:
    expected: int = 0
    received: int = 0


class CallQualityMeter:
    """RTCP reports for one call, and its quality at the end."""

    def __init__(self, ssrc: int, *, clock_rate: int = 8000) -> None:
        self.ssrc = ssrc
        self._rate = clock_rate
        self._prior = _Prior()
        self._last_sr: tuple[int, float] | None = None  # (middle 32 of its NTP, our now)
        self._rtts: list[float] = []
        self._max_jitter = 0.0
        self._far: ReportBlock | None = None
        self._sent_packets_at_last_report = 0
        self.reports_sent = 0
        self.reports_received = 0

    # ------------------------------------------------------------------ out

    def report(
        self,
        *,
        now: float,
        wall: float,
        sent_packets: int,
        sent_octets: int,
        rtp_timestamp: int,
        source: SourceCounts | None,
    ) -> Report:
        """The report to send now: an SR if we sent RTP since the last one, else an RR;
        with a block about the far end's stream once it has sent any."""
        blocks = () if source is None else (self._block(source, now),)
        sender = None
        if sent_packets > self._sent_packets_at_last_report:
            sender = SenderInfo(ntp_from_unix(wall), rtp_timestamp, sent_packets, sent_octets)
        self._sent_packets_at_last_report = sent_packets
        self.reports_sent += 1
        return Report(self.ssrc, sender, blocks)

    def _block(self, source: SourceCounts, now: float) -> ReportBlock:
        """§6.4.1 and A.3: the loss fraction over the interval since the last report."""
        expected, received, jitter = source.expected, source.received, source.jitter
        if expected < self._prior.expected:
            self._prior = _Prior()  # a new SSRC: its counts start again
        interval_expected = expected - self._prior.expected
        interval_received = received - self._prior.received
        self._prior = _Prior(expected, received)
        lost_interval = interval_expected - interval_received
        fraction = 0
        if interval_expected > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // interval_expected)
        self._max_jitter = max(self._max_jitter, jitter)
        lsr = dlsr = 0
        if self._last_sr is not None:
            lsr = self._last_sr[0]
            dlsr = int((now - self._last_sr[1]) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            source.ssrc, fraction, expected - received, source.highest_seq, int(jitter), lsr, dlsr
        )

    # ------------------------------------------------------------------ in

    def received(self, reports: list[Report], *, now: float, wall: float) -> None:
        """Reports from the far end (already parsed and admitted)."""
        for report in reports:
            self.reports_received += 1
            if report.sender is not None:
                self._last_sr = (ntp_middle(report.sender.ntp), now)
            for block in report.blocks:
                if block.ssrc != self.ssrc:
                    continue  # about another source (a conference, a PBX's other leg)
                self._far = block
                if block.lsr:
                    arrival = ntp_middle(ntp_from_unix(wall))
                    rtt = ((arrival - block.lsr - block.dlsr) & 0xFFFFFFFF) / 65536
                    if 0 <= rtt < 10:  # a clock step or a forged block otherwise
                        self._rtts.append(rtt * 1000)

    # ------------------------------------------------------------------ end

    def summary(
        self,
        expected: int,
        lost: int,
        jitter: float,
        *,
        sent_skipped_slots: int = 0,
        sent_dropped: int = 0,
    ) -> CallQuality:
        """The call's quality from the receiver's final counters (jitter in ts units) and
        what our sender could not send."""
        self._max_jitter = max(self._max_jitter, jitter)
        loss = 100.0 * max(0, lost) / expected if expected > 0 else 0.0
        rtt = sorted(self._rtts)[len(self._rtts) // 2] if self._rtts else None
        far = self._far
        far_loss = 100.0 * far.fraction_lost / 256 if far is not None else None
        one_way = (rtt or 0.0) / 2 + JITTER_BUFFER_MS + PACKETISATION_MS
        worst = max(loss, far_loss or 0.0)
        return CallQuality(
            packets_expected=expected,
            packets_lost=max(0, lost),
            loss_percent=round(loss, 2),
            jitter_ms=round(self._max_jitter / self._rate * 1000, 2),
            far_loss_percent=round(far_loss, 2) if far_loss is not None else None,
            far_jitter_ms=round(far.jitter / self._rate * 1000, 2) if far is not None else None,
            rtt_ms=round(rtt, 1) if rtt is not None else None,
            mos=round(mos_from_r(r_factor(worst, one_way)), 2),
            reports_sent=self.reports_sent,
            reports_received=self.reports_received,
            sent_skipped_slots=sent_skipped_slots,
            sent_dropped=sent_dropped,
        )
