"""RTCP for one RTP session (RFC 3550 §6): our reports out, the far end's in, the quality.

Our sender or receiver report, with an SDES CNAME, goes to the far end's RTP port + 1
(RFC 3550 §11) every ``interval`` seconds, each interval randomised over [0.5, 1.5]
(§6.3.1) so that sessions started together do not report together; the first at half the
interval (§6.2). The far end's reports are read only from the host our media comes from
(or the SDP's, before any media), SRTCP-authenticated when SRTP is on, and parsed; they
feed the call's quality meter (round trip, the far end's view of our stream:
docs/realtime.md §7). Everything malformed or foreign is counted, never raised.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from voipalert.clock import Clock
from voipalert.media.errors import RemoteProtocolError
from voipalert.media.quality import CallQuality, CallQualityMeter
from voipalert.media.receiver import Address, RtpReceiver
from voipalert.media.rtcp import compound, parse_compound
from voipalert.net.rtp_config import SenderStats, normalise_address
from voipalert.net.srtp import SrtpContext


@dataclass(frozen=True, slots=True)
class OurStream:
    """What our reports say about the stream we send: its counters, the RTP timestamp of
    the next slot, and where the far end is now (the SDP's address or the latched one)."""

    stats: SenderStats
    next_timestamp: Callable[[], int]
    destination: Callable[[], Address]


class RtcpLink:
    """The RTCP half of a session. ``attach`` gives it the RTCP socket's transport,
    ``start`` arms the first report, ``stop`` disarms it; ``datagram`` takes what the RTCP
    socket receives."""

    def __init__(
        self,
        *,
        ssrc: int,
        interval: float,
        rng: random.Random,
        clock: Clock,
        ours: OurStream,
        receiver: RtpReceiver,
        srtp: SrtpContext | None,
    ) -> None:
        self.quality = CallQualityMeter(ssrc)
        self._cname = f"{rng.getrandbits(64):016x}@voipalert"  # RFC 7022: random per session
        self._interval = interval
        self._rng = rng
        self._clock = clock
        self._stats = ours.stats
        self._receiver = receiver
        self._srtp = srtp
        self._next_timestamp = ours.next_timestamp
        self._destination = ours.destination
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def attach(self, transport: asyncio.DatagramTransport) -> None:
        self._transport = transport

    def start(self) -> None:
        self._schedule(self._interval / 2)  # §6.2: the first at half the interval

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self, interval: float) -> None:
        delay = interval * self._rng.uniform(0.5, 1.5)  # §6.3.1
        self._timer = self._loop.call_later(delay, self._send)

    def _send(self) -> None:
        self._timer = None
        if self._stopped or self._transport is None:
            return
        stats = self._stats
        report = self.quality.report(
            now=self._loop.time(), wall=self._wall(), sent_packets=stats.packets,
            sent_octets=stats.octets, rtp_timestamp=self._next_timestamp(),
            source=self._receiver.source_counts(),
        )  # fmt: skip
        host, port = self._destination()
        packet = compound(report, self._cname)
        if self._srtp is not None:
            packet = self._srtp.protect_rtcp(packet)
        try:
            self._transport.sendto(packet, (host, port + 1))
        except OSError:
            stats.transport_errors += 1
        self._schedule(self._interval)

    def datagram(self, data: bytes, addr: tuple[object, ...]) -> None:
        stats = self._stats
        stats.rtcp_packets_received += 1
        host = normalise_address(addr)[0]
        source = self._receiver.source
        # Only from the host our media comes from (or the SDP's, before any media): a
        # stranger's reports would falsify the call's quality record.
        if host not in {self._destination()[0], source[0] if source is not None else None}:
            stats.rtcp_refused += 1
            return
        if self._srtp is not None:
            plain = self._srtp.unprotect_rtcp(data)
            if plain is None:
                stats.srtcp_rejected += 1
                return
            data = plain
        try:
            reports = parse_compound(data)
        except RemoteProtocolError:
            stats.rtcp_malformed += 1
            return
        self.quality.received(reports, now=self._loop.time(), wall=self._wall())

    def _wall(self) -> float:
        """Unix time for the NTP timestamps of reports (§4)."""
        return self._clock.now_utc().timestamp()

    def summary(self) -> CallQuality:
        """The call's audio quality so far (both directions, from RTCP and our counters)."""
        received = self._receiver.stats
        return self.quality.summary(
            received.expected, received.lost, received.jitter,
            sent_skipped_slots=self._stats.skipped_slots, sent_dropped=self._stats.send_dropped,
        )  # fmt: skip


class RtcpSink(asyncio.DatagramProtocol):
    """Reads RTCP on port + 1 (RFC 3550 §11) for the call's quality record."""

    def __init__(self, link: RtcpLink, stats: SenderStats) -> None:
        self._link = link
        self._stats = stats

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._link.datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._stats.transport_errors += 1
