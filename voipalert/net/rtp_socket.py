"""One call's RTP session on an asyncio datagram socket.

* Symmetric RTP (RFC 4961): packets leave from the socket they arrive on, to the address of
  the SDP answer until the far end's media fixes the source (``media.receiver`` decides:
  the SDP address, or a latched NAT source after probation); from then on to that source.
* Admission starts at answer: the ports are bound before the INVITE leaves, so whatever
  anyone sprayed at them before the call was answered waits in the socket buffers. The
  session is opened on answer and discards that backlog unread (counted in
  ``stats.drained_before_answer``) before it attaches its protocol.
* Refused sources (wrong address, probation, contested latching, wrong SSRC) are counted by
  the receiver and logged by the receive half (``net.rtp_inbound``), at most once per
  ``REJECT_LOG_INTERVAL`` per call; RTCP is ``net.rtp_rtcp``'s.
* Sending is paced by the loop's shared ``RtpPacer`` on a deadline schedule; after a stall the
  slots still within a jitter buffer's depth leave at once, older ones are skipped; the
  RTP timestamp keeps counting sampling time (docs/realtime.md §1).
* A play queue: the prompt, then G.711 silence until the call ends (PBX media timeouts hang
  up silent calls). A key press stops the prompt at the next slot.
* Received audio is decoded for the call's analysis (echo line, in-band key and beep
  detectors: ``media.rx_analysis``), on the loop or in a worker process
  (``net.rx_pool``, docs/rx-workers.md); RFC 4733 events, in-band tones and SIP INFO
  digits (``digit_received``) merge in one ``DtmfCollector``.
* Hostile datagrams are dropped and counted (``receiver_stats``); ICMP errors arrive in
  ``error_received`` and are counted, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import weakref
from collections.abc import Callable
from typing import Final, Self

import numpy as np
from numpy.typing import NDArray

from voipalert.clock import Clock, SystemClock
from voipalert.media.beep import Beep
from voipalert.media.dtmf import Digit, DtmfSource
from voipalert.media.echo_line import EchoLine
from voipalert.media.g711 import SAMPLE_RATE_HZ
from voipalert.media.packetizer import Packetizer
from voipalert.media.playout import PlayEnd, PlayEnded, PlayQueue
from voipalert.media.quality import CallQuality, CallQualityMeter
from voipalert.media.receiver import (
    Address,
    AudioFrame,
    ReceiverConfig,
    ReceiverStats,
    RtpReceiver,
)
from voipalert.media.rfc4733 import DTMF_CHARS, EventSender, TelephoneEvent, event_code
from voipalert.media.rx_analysis import AnalysisEvent, AnalysisSpec, BeepHeard, KeyHeard
from voipalert.net.errors import RtpSessionClosedError
from voipalert.net.ports import RtpPorts, bind_pair
from voipalert.net.rtp_config import (
    RtpSessionConfig,
    SenderStats,
    normalise_address,
)
from voipalert.net.rtp_dtmf import DigitInbox
from voipalert.net.rtp_inbound import InboundHooks, InboundMedia
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rtp_rtcp import OurStream, RtcpLink, RtcpSink
from voipalert.net.rx_pool import Analysis, AnalysisPool, LocalAnalysis
from voipalert.net.srtp import SrtpContext

log = logging.getLogger("voipalert.net.rtp")

# A socket buffer holds a few hundred datagrams (rmem_default ~208 KiB); the bound only
# keeps a spray that goes on during the drain from holding the loop.
MAX_DRAINED: Final = 4096
# Datagrams read from one RTP socket per turn of the loop (see _RtpProtocol): ten packet
# intervals, so a backlog clears within a few turns, and a flood costs each turn at most
# that many reads from the call. All sessions of a loop together spend at most
# CATCH_UP_BUDGET_SECONDS of every CATCH_UP_WINDOW_SECONDS on such extra reads: after a
# stall, 200 calls' backlogs read at once would be the next stall.
MAX_READS_PER_TURN: Final = 10
CATCH_UP_WINDOW_SECONDS: Final = 0.02
CATCH_UP_BUDGET_SECONDS: Final = 0.004
# Larger than any RTP packet we accept (G.711 at up to 60 ms, SRTP's tag); a longer
# datagram is cut here and fails the receiver's or SRTP's checks.
RECEIVE_BYTES: Final = 4096

__all__ = ["RtpSession", "RtpSessionClosedError", "RtpSessionConfig", "SenderStats"]


class RtpSession:
    """The media half of one call. Create with ``await RtpSession.open(config)``."""

    def __init__(
        self,
        config: RtpSessionConfig,
        *,
        pacer: RtpPacer,
        rng: random.Random,
        on_audio: Callable[[AudioFrame], None] | None = None,
        on_beep: Callable[[Beep], None] | None = None,
        clock: Clock | None = None,
        analysis: AnalysisPool | None = None,
        on_analysis_lost: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        self._pacer = pacer
        samples = SAMPLE_RATE_HZ * config.ptime_ms // 1000
        self._packetizer = Packetizer(config.payload_type, rng=rng, samples_per_frame=samples)
        self._queue = PlayQueue(config.codec, samples)
        self._dest = normalise_address(config.remote_addr)
        self._receiver = RtpReceiver(
            ReceiverConfig(
                codec=config.codec,
                payload_type=config.payload_type,
                telephone_event_pt=config.telephone_event_pt,
                remote=self._dest,
                latching=config.latching,
                latch_hosts=frozenset(normalise_address((h, 0))[0] for h in config.latch_hosts),
            )
        )
        self._inbox = DigitInbox(self._loop, window_s=config.dtmf_window_s)
        self._on_beep = on_beep
        # SRTP (RFC 3711) when the SDP exchange agreed keys: docs/security.md §SRTP.
        self._srtp = SrtpContext(config.srtp) if config.srtp is not None else None
        self.stats = SenderStats()
        self.last_error: OSError | None = None
        # The receive half: datagrams to key presses, audio to the detectors.
        self._inbound = InboundMedia(
            receiver=self._receiver, stats=self.stats, srtp=self._srtp,
            hooks=InboundHooks(self._key, self._latched, on_audio),
        )  # fmt: skip
        # The analysis of what comes back, when anything listens: the echo line only in
        # front of the key detector (docs/dtmf.md §3), the beep detector only for a caller
        # that acts on a beep. In a worker process when the phone has a pool.
        spec = AnalysisSpec(
            codec=config.codec, samples_per_slot=samples, inband=config.inband_dtmf,
            echo_canceller=config.echo_canceller, beeps=on_beep is not None,
        )  # fmt: skip
        self.echo: EchoLine | None = None
        self._analysis: Analysis | None = None
        if spec.inband or spec.beeps:
            if analysis is None:
                local = LocalAnalysis(spec, self._analysed)
                self.echo = local.analysis.echo
                self._analysis = local
            else:
                self._analysis = analysis.attach(spec, self._analysed, on_analysis_lost)
        self._inbound.analysis = self._analysis
        # RTCP (RFC 3550 §6): our reports every interval (randomised), theirs read, checked.
        self._rtcp_link = RtcpLink(
            ssrc=self._packetizer.ssrc, interval=config.rtcp_interval_s, rng=rng,
            clock=clock or SystemClock(), receiver=self._receiver, srtp=self._srtp,
            ours=OurStream(self.stats, lambda: self._packetizer.next_timestamp, lambda: self._dest),
        )  # fmt: skip
        self._plays: dict[int, tuple[asyncio.Future[PlayEnd], bool]] = {}
        self._event: EventSender | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._closed = False
        self._sending = True

    @classmethod
    async def open(
        cls,
        config: RtpSessionConfig,
        *,
        ports: RtpPorts | None = None,
        pacer: RtpPacer | None = None,
        rng: random.Random | None = None,
        on_audio: Callable[[AudioFrame], None] | None = None,
        on_beep: Callable[[Beep], None] | None = None,
        analysis: AnalysisPool | None = None,
        on_analysis_lost: Callable[[], None] | None = None,
    ) -> Self:
        """Start the session on ``ports`` (from the allocator) or on ``config.local_port``.

        The first packet leaves within one ptime (the pacer picks the least busy phase of
        the cycle). Sessions share a timer only when given the same ``pacer`` (a
        ``Phone`` gives all its calls one); without one the session paces itself. The
        sockets are closed by ``close``; give the ports back
        to their allocator afterwards. ``on_audio`` sees every decoded audio frame
        (recording, diagnostics); ``on_beep`` is told of each beep in the far end's audio
        (a mailbox about to record, ``media.beep``). With ``analysis`` the echo line and
        the in-band detectors run in its worker processes; ``on_analysis_lost`` is told
        when the call's worker died (keys and beeps in the audio go unheard until it is
        back)."""
        if ports is not None and ports.port != config.local_port:
            raise ValueError(f"ports {ports.port} do not match local_port {config.local_port}")
        session = cls(
            config,
            pacer=pacer if pacer is not None else RtpPacer(asyncio.get_running_loop()),
            rng=rng if rng is not None else random.SystemRandom(),
            on_audio=on_audio,
            on_beep=on_beep,
            analysis=analysis,
            on_analysis_lost=on_analysis_lost,
        )
        if ports is None:
            ports = bind_pair(config.local_host, config.local_port)
        try:
            await session._attach(ports)
        except BaseException:
            for transport in (session._transport, session._rtcp):
                if transport is not None:
                    transport.close()
            ports.close()
            raise
        session._pacer.add(session, ptime=config.ptime_ms / 1000)
        session._rtcp_link.start()
        return session

    async def _attach(self, ports: RtpPorts) -> None:
        # Nothing received before answer counts (media.receiver): discard the backlog.
        drained = _drain(ports.rtp) + _drain(ports.rtcp)
        self.stats.drained_before_answer = drained
        if drained:
            log.info("discarded %d RTP/RTCP datagrams that arrived before answer", drained)
        loop = self._loop
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpProtocol(self), sock=ports.rtp
        )
        self._sock = ports.rtp
        self._rtcp, _ = await loop.create_datagram_endpoint(
            lambda: RtcpSink(self._rtcp_link, self.stats), sock=ports.rtcp
        )
        self._rtcp_link.attach(self._rtcp)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def remote(self) -> Address:
        """Where packets go now (the SDP address, or the latched source)."""
        return self._dest

    @property
    def local_address(self) -> Address:
        assert self._transport is not None
        return normalise_address(self._transport.get_extra_info("sockname"))

    @property
    def receiver_stats(self) -> ReceiverStats:
        return self._receiver.stats

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def quality(self) -> CallQualityMeter:
        """The call's RTCP quality meter (reports sent and received, round trips)."""
        return self._rtcp_link.quality

    def quality_summary(self) -> CallQuality:
        """The call's audio quality so far (both directions, from RTCP and our counters)."""
        return self._rtcp_link.summary()

    def listen_for_beeps(self, enabled: bool) -> None:
        """Run the mailbox-beep detector only while the script would act on a beep."""
        self._inbound.listen_for_beeps(enabled)

    # ------------------------------------------------------------------ playing

    def play(
        self,
        pcm: NDArray[np.int16],
        *,
        repeat: int = 1,
        gap_s: float = 0.0,
        interrupt_on_digit: bool = True,
    ) -> asyncio.Future[PlayEnd]:
        """Play 8 kHz ``pcm`` from the next slot on, replacing what was playing. The
        future tells how it ended; with ``interrupt_on_digit`` a key press stops it."""
        self._check_open()
        gap_frames = round(gap_s * 1000 / self.config.ptime_ms)
        item, replaced = self._queue.play(pcm, repeat=repeat, gap_frames=gap_frames)
        future: asyncio.Future[PlayEnd] = self._loop.create_future()
        self._plays[item] = (future, interrupt_on_digit)
        self._ended(replaced)
        return future

    def stop_playing(self) -> None:
        """Silence from the next slot on."""
        self._ended(self._queue.stop(PlayEnd.STOPPED))

    def _ended(self, ended: PlayEnded | None) -> None:
        if ended is None:
            return
        future, _ = self._plays.pop(ended.item, (None, False))
        if future is not None and not future.done():
            future.set_result(ended.how)

    # ------------------------------------------------------------------ digits

    async def next_digit(self) -> Digit:
        """The next key press from any path (RFC 4733, in-band, SIP INFO)."""
        return await self._inbox.next()

    def digit_received(self, char: str, source: DtmfSource = DtmfSource.SIP_INFO) -> bool:
        """A key press the signalling saw (SIP INFO ``application/dtmf-relay``). Text that
        is not a DTMF key comes from the far end: it is counted and ignored (False)."""
        if len(char) != 1 or char.upper() not in DTMF_CHARS:
            self.stats.bad_info_digits += 1
            return False
        self._key(char, source)
        return True

    def _analysed(self, event: AnalysisEvent) -> None:
        if isinstance(event, KeyHeard):
            self._key(event.char, DtmfSource.INBAND)
        elif isinstance(event, BeepHeard):
            if self._on_beep is not None:
                self._on_beep(Beep(event.hz, event.start))

    def _key(self, char: str, source: DtmfSource) -> None:
        if self._inbox.key(char, source, self._loop.time()) is not None:
            self._interrupt()

    def _interrupt(self) -> None:
        playing = self._queue.playing
        if playing is not None and self._plays.get(playing, (None, False))[1]:
            self._ended(self._queue.stop(PlayEnd.INTERRUPTED))

    def send_digit(self, char: str, duration_ms: int = 100) -> None:
        """Send a key press as RFC 4733 events in the next slots (audio pauses meanwhile)."""
        self._check_open()
        if self.config.telephone_event_pt is None:
            raise ValueError("no telephone-event payload type was negotiated")
        slots = max(1, round(duration_ms / self.config.ptime_ms))
        self._event = EventSender(event_code(char), slots)

    def set_remote(self, remote: Address) -> None:
        """A re-INVITE moved the far end's media."""
        self._dest = normalise_address(remote)
        self._receiver.set_remote(self._dest)

    def set_sending(self, enabled: bool) -> None:
        """Hold (``a=sendonly``/``inactive``, ``c=0.0.0.0``: RFC 3264 §8.4) stops sending;
        the slots go on, so the RTP timestamp keeps counting and the first packet after
        the hold carries the marker bit."""
        self._sending = enabled

    # ------------------------------------------------------------------ pacing

    def on_slot(self, slot: int, skipped: int, deadline: float) -> None:
        """Called by the pacer at ``start + slot * ptime``."""
        sock = self._sock
        if sock is None or self._closed:
            return
        if skipped:
            self._packetizer.skip(skipped)
            self.stats.skipped_slots += skipped
        payload, ended = self._queue.next_frame(skipped)
        event = self._event
        analysis = self._analysis
        if analysis is not None and analysis.wants_sent:
            audible = self._sending and event is None
            analysis.sent(slot, deadline, payload if audible else None)
        if not self._sending:
            self._packetizer.skip(1)
            self._ended(ended)
            return
        data = (
            self._packetizer.build(payload) if event is None else self._event_packet(event, skipped)
        )
        octets = len(data) - 12
        if self._srtp is not None:
            data = self._srtp.protect(data)
        try:
            # Straight to the socket: a real-time packet that cannot leave now is dropped,
            # not queued behind the next one (what the transport's buffer would do).
            sock.sendto(data, self._dest)
        except BlockingIOError:
            self.stats.send_dropped += 1
        except OSError as exc:
            self._error(exc)
        else:
            self.stats.packets += 1
            self.stats.octets += octets
        if ended is not None:
            self._ended(ended)

    def _event_packet(self, event: EventSender, skipped: int) -> bytes:
        pt = self.config.telephone_event_pt
        assert pt is not None
        if event.start_ts is None:
            event.start_ts = self._packetizer.next_timestamp
        step = self._packetizer.samples_per_frame
        block = event.next_block(skipped, step)
        if event.done:
            self._event = None
            self.stats.events_sent += 1
        payload = TelephoneEvent(event.code, block.end, 10, block.duration).serialize()
        return self._packetizer.build(
            payload, payload_type=pt, timestamp=event.start_ts, marker=block.first
        )

    # ------------------------------------------------------------------ datagrams

    def _datagram(self, data: bytes, addr: tuple[object, ...]) -> None:
        self._inbound.datagram(data, addr)

    def _latched(self, address: Address) -> None:
        self._dest = address

    def _error(self, exc: OSError) -> None:
        # Linux reports no ICMP errors on an unconnected UDP socket; what arrives here are
        # send errors. Counted, logged once, never fatal: the far end may come back.
        self.stats.transport_errors += 1
        level = logging.WARNING if self.last_error is None else logging.DEBUG
        self.last_error = exc
        log.log(level, "RTP send to %s:%d failed: %s", *self._dest, exc)

    def _lost(self, exc: Exception | None) -> None:
        if not self._closed:
            log.warning("RTP socket closed under the session: %s", exc)
            self._shutdown()

    # ------------------------------------------------------------------ closing

    def _check_open(self) -> None:
        if self._closed:
            raise RtpSessionClosedError("the RTP session is closed")

    def _shutdown(self) -> None:
        self._closed = True
        self._pacer.remove(self)
        self._rtcp_link.stop()
        self._ended(self._queue.stop(PlayEnd.STOPPED))
        for future, _ in self._plays.values():
            if not future.done():
                future.set_result(PlayEnd.STOPPED)
        self._plays.clear()
        self._inbox.close()
        if self._analysis is not None:
            self._analysis.close()

    def halt(self) -> None:
        """Stop sending now and release every waiter; the sockets stay open until
        ``close`` (idempotent)."""
        if not self._closed:
            self._shutdown()

    async def close(self) -> None:
        """Stop sending, close both sockets, release every waiter (idempotent)."""
        if not self._closed:
            self._shutdown()
        for transport in (self._transport, self._rtcp):
            if transport is not None:
                transport.close()
        await asyncio.sleep(0)  # let connection_lost run


def _drain(sock: socket.socket) -> int:
    """Read and discard what is queued on the non-blocking ``sock``; how many."""
    for count in range(MAX_DRAINED):
        try:
            sock.recv(1)
        except (BlockingIOError, InterruptedError):
            return count
        except OSError:
            continue  # a queued ICMP error (ECONNREFUSED...) is consumed like a datagram
    return MAX_DRAINED


class _CatchUpBudget:
    """The time a loop's sessions may spend reading their backlogs, per window."""

    def __init__(self) -> None:
        self.window_end = 0.0
        self.spent = 0.0

    def allows(self, now: float) -> bool:
        if now >= self.window_end:
            self.window_end, self.spent = now + CATCH_UP_WINDOW_SECONDS, 0.0
        return self.spent < CATCH_UP_BUDGET_SECONDS


_budgets: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _CatchUpBudget] = (
    weakref.WeakKeyDictionary()
)


def _budget(loop: asyncio.AbstractEventLoop) -> _CatchUpBudget:
    budget = _budgets.get(loop)
    if budget is None:
        budget = _budgets[loop] = _CatchUpBudget()
    return budget


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._session = session
        self._budget = _budget(session._loop)
        self._time = session._loop.time
        self._pacer = session._pacer

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._handle(data, addr)
        self._pacer.poll()  # a slot due meanwhile is not kept for the end of the loop's turn
        # asyncio reads one datagram per socket per turn of the loop. After a stall, or
        # whenever a turn takes longer than a packet interval (hundreds of calls on a busy
        # machine), the queue on the socket then grows and never shrinks: at 200 calls
        # against SIPp every call's socket sat full (208 KiB, about 4 s of audio, read 4 s
        # late) and dropped 300 packets (docs/rx-workers.md §6). So what is queued is read
        # now, a bounded number per call and a bounded time for all calls together.
        session, budget, time = self._session, self._budget, self._time
        sock = session._sock
        if sock is None:
            return
        for _ in range(MAX_READS_PER_TURN - 1):
            started = time()
            if session.closed or not budget.allows(started):
                return
            try:
                data, addr = sock.recvfrom(RECEIVE_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                session._error(exc)  # what error_received would have been told
                continue
            self._handle(data, addr)
            self._pacer.poll()
            budget.spent += time() - started

    def _handle(self, data: bytes, addr: tuple[object, ...]) -> None:
        try:
            self._session._datagram(data, addr)
        except Exception:
            # Parsing already drops bad packets; this is the last line: one datagram must
            # never end the call's media (pyVoIP's receiver thread died on one).
            log.exception("RTP datagram from %s could not be handled; dropped", addr[:2])

    def error_received(self, exc: Exception) -> None:
        self._session._error(exc if isinstance(exc, OSError) else OSError(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._session._lost(exc)
