"""A key pressed while we speak, on a line that echoes: a real RTP session on 127.0.0.1
against a far end that returns every packet's audio through a hybrid's echo path (6 dB of
echo return loss, 75 ms late) and presses 7 under it (docs/dtmf.md §3)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, through_g711
from tests.media.echo_signals import FS, echo_path, speechlike
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf import DtmfSource
from voipalert.media.echo_line import EchoState
from voipalert.media.rtp import RtpPacket
from voipalert.media.rx_analysis import EchoSettled
from voipalert.net.ports import RtpPortAllocator
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.rx_pool import AnalysisHandle, AnalysisPool

from .conftest import BOTH_PLACES

HOST = "127.0.0.1"
KEY_AT_S = 4.5
SLOT = 160
PROMPT_S = 7.0


class EchoingPhone(asyncio.DatagramProtocol):
    """The far end: each of our packets comes back as its echo, plus a key at 4.5 s."""

    def __init__(self, rng: np.random.Generator) -> None:
        path = echo_path(rng, 600)
        self.path = path * 10 ** (-6 / 20) / np.sqrt(np.sum(path**2))  # ERL about 6 dB
        self.heard = np.zeros(0)
        key = dtmf("7", 0.08, row_dbm0=-20.0, rng=rng)
        self.key = np.zeros(int(PROMPT_S * FS))
        start = int(KEY_AT_S * FS)
        self.key[start : start + key.size] = key
        self.transport: asyncio.DatagramTransport | None = None
        self.first_ts: int | None = None
        self.sent_until = 0
        self.seq, self.origin = 4000, (1 << 32) - 2 * FS  # its own clock, wrapping 2 s in

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        packet = RtpPacket.parse(data)
        if packet.payload_type != 0:
            return
        # Played out by timestamp, as a phone's jitter buffer does: a slot we skipped (a
        # loaded machine) is silence at its place, and the phone's own clock goes on
        # sending through it, so the line's timeline stays continuous.
        if self.first_ts is None:
            self.first_ts = packet.timestamp
        start = (packet.timestamp - self.first_ts) & 0xFFFFFFFF
        pcm = g711.decode(Codec.PCMU, packet.payload)
        end = start + pcm.size
        if end > self.heard.size:
            self.heard = np.concatenate((self.heard, np.zeros(end - self.heard.size)))
        self.heard[start:end] = pcm
        while self.sent_until < end:
            self._send_frame(self.sent_until, addr)
            self.sent_until += SLOT

    def _send_frame(self, start: int, addr: tuple[str | object, ...]) -> None:
        assert self.transport is not None
        window = self.heard[max(0, start - self.path.size + 1) : start + SLOT]
        echo = np.convolve(window, self.path)[window.size - SLOT : window.size]
        key = self.key[start : start + SLOT]
        back = echo + np.pad(key, (0, SLOT - key.size))
        reply = RtpPacket(
            payload_type=0, sequence_number=self.seq, timestamp=(self.origin + start) & 0xFFFFFFFF,
            ssrc=0x7E57, payload=g711.encode(Codec.PCMU, through_g711(back, Codec.PCMU)),
        )  # fmt: skip
        self.seq = (self.seq + 1) & 0xFFFF
        self.transport.sendto(reply.serialize(), addr)


@contextlib.asynccontextmanager
async def _call(
    echo_canceller: bool, pool: AnalysisPool | None = None
) -> AsyncIterator[tuple[RtpSession, EchoingPhone]]:
    loop = asyncio.get_running_loop()
    phone = EchoingPhone(np.random.default_rng(75))
    far, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=(HOST, 0))
    far_port = far.get_extra_info("sockname")[1]
    allocator = RtpPortAllocator(HOST, 43000, 43999)
    ports = allocator.allocate()
    config = RtpSessionConfig(
        local_port=ports.port, remote_addr=(HOST, far_port), codec=Codec.PCMU, payload_type=0,
        telephone_event_pt=101, echo_canceller=echo_canceller,
    )  # fmt: skip
    session = await RtpSession.open(config, ports=ports, rng=random.Random(3), analysis=pool)
    try:
        yield session, phone
    finally:
        await session.close()
        allocator.release(ports)
        far.close()


def _prompt() -> NDArray[np.int16]:
    return through_g711(speechlike(np.random.default_rng(9), PROMPT_S), Codec.PCMU)


@BOTH_PLACES
async def test_a_key_under_our_echo_is_heard_with_the_canceller(
    analysis_pool: AnalysisPool | None,
) -> None:
    async with _call(echo_canceller=True, pool=analysis_pool) as (session, _):
        playing = session.play(_prompt(), interrupt_on_digit=False)
        async with asyncio.timeout(PROMPT_S + 2):
            digit = await session.next_digit()
        assert (digit.char, digit.source) == ("7", DtmfSource.INBAND)
        assert not playing.done(), "heard while we were still speaking"
        if analysis_pool is None:
            assert session.echo is not None
            assert session.echo.state is EchoState.CANCELLING
            delay = session.echo.stats.delay_samples
        else:  # the worker's verdict, as it told the loop
            handle = session._analysis
            assert isinstance(handle, AnalysisHandle)
            assert isinstance(handle.echo_settled, EchoSettled)
            delay = handle.echo_settled.delay_samples
        # The echo path's 600 samples, its strongest tap, and the anchor of the far end's clock
        # (its first frame taken as ending when it arrived: up to a frame early).
        assert delay is not None and 600 - SLOT <= delay <= 600 + 64 + SLOT


async def test_without_the_canceller_the_same_key_is_lost() -> None:
    """The control: the key is there, but our own echo hides it from the detector."""
    async with _call(echo_canceller=False) as (session, phone):
        assert session.echo is None
        playing = session.play(_prompt(), interrupt_on_digit=False)
        async with asyncio.timeout(PROMPT_S + 2):
            await playing
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await session.next_digit()
        assert phone.heard.size > (KEY_AT_S + 0.5) * FS, "the far end never reached the key"
