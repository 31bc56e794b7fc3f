"""What arrives on one session's RTP socket, from datagram to key press (docs/dtmf.md).

Each datagram is SRTP-authenticated first when SRTP is on (a forged key press goes no
further), then admitted or refused by the receiver (``media.receiver``: source, probation,
NAT latching, SSRC); refusals are counted there and logged here at most once per
``REJECT_LOG_INTERVAL``. Decoded audio goes to the call's analysis (``net.rx_pool``: on
the loop or in a worker process), which runs the line's echo canceller (our own prompt's
echo out first), then the in-band key detector, and, only while the call script would act
on one, the mailbox-beep detector. RFC 4733 key presses go straight to the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from voipalert.media.dtmf import DtmfSource
from voipalert.media.receiver import (
    Address,
    AudioFrame,
    DigitReceived,
    DropReason,
    PacketDropped,
    RtpReceiver,
    SourceLatched,
)
from voipalert.net.rtp_config import SenderStats, normalise_address
from voipalert.net.rx_pool import Analysis
from voipalert.net.srtp import SrtpContext

log = logging.getLogger("voipalert.net.rtp")

MAX_CACHED_ADDRESSES: Final = 16
REJECT_LOG_INTERVAL: Final = 10.0
_REFUSALS: Final = frozenset(
    {DropReason.WRONG_SOURCE, DropReason.PROBATION, DropReason.CONTESTED, DropReason.WRONG_SSRC}
)


@dataclass(frozen=True, slots=True)
class InboundHooks:
    """What the session is told: ``key`` of each key press from RTP (RFC 4733 events)
    with its source, ``latched`` when the far end's NAT source is fixed (our packets
    follow it); ``on_audio`` sees every decoded frame."""

    key: Callable[[str, DtmfSource], None]
    latched: Callable[[Address], None]
    on_audio: Callable[[AudioFrame], None] | None = None


class InboundMedia:
    """The receive half of a session."""

    def __init__(
        self,
        *,
        receiver: RtpReceiver,
        stats: SenderStats,
        srtp: SrtpContext | None,
        hooks: InboundHooks,
    ) -> None:
        self._receiver = receiver
        self._stats = stats
        self._srtp = srtp
        self.analysis: Analysis | None = None
        self._key = hooks.key
        self._latched = hooks.latched
        self._on_audio = hooks.on_audio
        self._addresses: dict[tuple[object, ...], Address] = {}
        self._reject_logged_at: float | None = None
        self._rejected_since_log = 0
        self._loop = asyncio.get_running_loop()

    def datagram(self, data: bytes, addr: tuple[object, ...]) -> None:
        now = self._loop.time()
        if self._srtp is not None:
            plain = self._unprotect(self._srtp, data, addr)
            if plain is None:
                return
            data = plain
        source = self._addresses.get(addr)
        if source is None:
            if len(self._addresses) >= MAX_CACHED_ADDRESSES:
                self._addresses.clear()  # a flood of strangers: start over
            source = self._addresses[addr] = normalise_address(addr)
        for event in self._receiver.receive(data, source, now):
            if isinstance(event, AudioFrame):
                self._audio(event, now)
            elif isinstance(event, DigitReceived):
                self._key(event.digit.char, DtmfSource.RFC4733)
            elif isinstance(event, SourceLatched):
                log.info("RTP source latched to %s:%d (NAT)", *event.address)
                self._latched(event.address)
            elif isinstance(event, PacketDropped) and event.reason in _REFUSALS:
                self._refused(source, event.reason, now)

    def _unprotect(self, srtp: SrtpContext, data: bytes, addr: tuple[object, ...]) -> bytes | None:
        # Authenticated before anything reads it: a forged or replayed packet (a key press
        # among them) is counted here and goes no further.
        plain = srtp.unprotect(data)
        if plain is None:
            self._stats.srtp_rejected += 1
            if self._stats.srtp_rejected == 1:
                # Once per call: a far end on another key fails every packet, and the
                # counter alone would leave that silent.
                log.warning(
                    "SRTP packet from %s:%s failed authentication (forged, tampered, "
                    "replayed, or not under the far end's key); such packets are dropped "
                    "and counted", *addr[:2],
                )  # fmt: skip
        return plain

    def _audio(self, frame: AudioFrame, now: float) -> None:
        if self._on_audio is not None:
            self._on_audio(frame)
        if self.analysis is not None:
            self.analysis.received(frame.payload, frame.ssrc, frame.timestamp, now)

    def listen_for_beeps(self, enabled: bool) -> None:
        """Run the mailbox-beep detector only while a beep would change what the call
        does (the script says when): it costs more than the key detector
        (docs/capacity.md §4)."""
        if self.analysis is not None:
            self.analysis.listen_for_beeps(enabled)

    def _refused(self, source: Address, reason: DropReason, now: float) -> None:
        # Rate-limited: a spray must not turn into a log flood (the counters hold the rest).
        self._rejected_since_log += 1
        last = self._reject_logged_at
        if last is not None and now - last < REJECT_LOG_INTERVAL:
            return
        fixed = self._receiver.source
        # Probation is the normal start of a NAT'd far end's stream: not a warning.
        level = logging.INFO if reason is DropReason.PROBATION else logging.WARNING
        log.log(
            level,
            "RTP from %s:%d refused (%s); %d refused since the last report, source %s",
            source[0], source[1], reason.value, self._rejected_since_log,
            f"{fixed[0]}:{fixed[1]}" if fixed else "not fixed",
        )  # fmt: skip
        self._reject_logged_at, self._rejected_since_log = now, 0
