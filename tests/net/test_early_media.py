"""Early media on real sockets (docs/sip.md §4.5.1): a scripted callee on loopback answers
the phone's INVITE with 100, then 183 Session Progress with SDP, and plays "press 1" into
our RTP port during early media — an RFC 4733 event and the in-band tone — before its
final answer. Whatever it then does, the announcement is recorded as call progress, is
never an answer, and its key never acknowledges."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tests.net.sip_harness import free_port
from voipalert.calls import MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.domain.alert import AttemptOutcome
from voipalert.media.g711 import ulaw_encode
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket
from voipalert.sip.config import UAConfig
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
TAG = "callee-tag"
SECOND = np.arange(8000) / 8000
TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * SECOND[:2400])).astype(np.int16)
DTMF_1: NDArray[np.int16] = (
    6000 * (np.sin(2 * np.pi * 697 * SECOND[:2000]) + np.sin(2 * np.pi * 1209 * SECOND[:2000]))
).astype(np.int16)


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return TONE


def sdp(port: int) -> bytes:
    return (
        f"v=0\r\no=- 7 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
    ).encode()


def offer_port(invite: Request) -> int:
    found = re.search(rb"m=audio (\d+) ", invite.body)
    assert found is not None
    return int(found.group(1))


@dataclass
class Callee(asyncio.DatagramProtocol):
    """The far end: ``final`` is 486, 200 (answer, then silence) or None (never answers:
    CANCEL gets 200 and the INVITE 487)."""

    final: int | None
    reason: str | None = None
    received: list[Request] = field(default_factory=list)
    early_packets: int = 0
    sip: asyncio.DatagramTransport | None = None
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    invite: Request | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_message(data)
        source = (str(addr[0]), int(str(addr[1])))
        if not isinstance(message, Request):
            return
        self.received.append(message)
        if message.method == "INVITE" and self.invite is None:
            self.invite = message
            task = asyncio.get_running_loop().create_task(self._progress(message, source))
            self.tasks.add(task)
        elif message.method == "CANCEL" and self.invite is not None:
            self._send(response_to(message, 200, to_tag=TAG), source)
            self._send(response_to(self.invite, 487, to_tag=TAG), source)
        elif message.method == "BYE":
            self._send(response_to(message, 200), source)

    def _send(self, response: Response, to: tuple[str, int]) -> None:
        assert self.sip is not None
        self.sip.sendto(response.serialize(), to)

    async def _progress(self, invite: Request, source: tuple[str, int]) -> None:
        self._send(response_to(invite, 100), source)
        headers: list[tuple[str, str]] = [("Content-Type", "application/sdp")]
        if self.reason:
            headers.append(("Reason", self.reason))
        progress = response_to(invite, 183, headers=headers, body=sdp(self.rtp_port), to_tag=TAG)
        self._send(progress, source)
        await asyncio.sleep(0.05)
        self._press_1((HOST, offer_port(invite)))
        await asyncio.sleep(0.5)
        if self.final == 486:
            self._send(response_to(invite, 486, to_tag=TAG), source)
        elif self.final == 200:
            answer = response_to(
                invite, 200, to_tag=TAG, body=sdp(self.rtp_port),
                headers=[("Content-Type", "application/sdp"),
                         ("Contact", f"<sip:callee@{HOST}:{source_port(self)}>")],
            )  # fmt: skip
            self._send(answer, source)

    def _press_1(self, to: tuple[str, int]) -> None:
        """The announcement's "press 1": in-band tone, then an RFC 4733 event for it."""
        assert self.rtp is not None
        seq, ts, ssrc = 1000, 160000, 0x1234
        frames = [DTMF_1[i : i + 160] for i in range(0, len(DTMF_1), 160)]
        for n, frame in enumerate(frames):
            packet = RtpPacket(0, seq + n, ts + 160 * n, ssrc, ulaw_encode(frame), marker=n == 0)
            self.rtp.sendto(packet.serialize(), to)
            self.early_packets += 1
        seq += len(frames)
        for n, (end, duration) in enumerate(
            [(False, 160), (False, 320), (False, 480), (True, 640), (True, 640), (True, 640)]
        ):
            event = TelephoneEvent(event=1, end=end, volume=10, duration=duration)
            packet = RtpPacket(101, seq + n, ts, ssrc, event.serialize(), marker=n == 0)
            self.rtp.sendto(packet.serialize(), to)
            self.early_packets += 1


def source_port(callee: Callee) -> int:
    assert callee.sip is not None
    return int(callee.sip.get_extra_info("sockname")[1])


class _Sink(asyncio.DatagramProtocol):
    pass


@contextlib.asynccontextmanager
async def scenario(
    final: int | None, reason: str | None = None
) -> AsyncIterator[tuple[Phone, Callee, SipUri]]:
    loop = asyncio.get_running_loop()
    callee = Callee(final, reason)
    sip_transport, _ = await loop.create_datagram_endpoint(lambda: callee, local_addr=(HOST, 0))
    rtp_transport, _ = await loop.create_datagram_endpoint(_Sink, local_addr=(HOST, 0))
    callee.sip, callee.rtp = sip_transport, rtp_transport
    callee.rtp_port = int(rtp_transport.get_extra_info("sockname")[1])
    sip_port, rtp = free_port(), free_port(even=True)
    config = UAConfig(user="voipalert", domain=HOST, local_host=HOST, local_port=sip_port)
    phone = Phone(
        config, (HOST, sip_port), MediaConfig(HOST, HOST, rtp, rtp + 20),
        script=ScriptConfig(repetitions=1, pause_seconds=0.5), rng=random.Random(3),
    )  # fmt: skip
    await phone.start(register=False)
    try:
        yield phone, callee, SipUri(user="callee", host=HOST, port=source_port(callee))
    finally:
        await phone.stop()
        for task in callee.tasks:
            task.cancel()
        sip_transport.close()
        rtp_transport.close()


async def test_183_with_sdp_then_486_is_busy_and_recorded() -> None:
    async with scenario(486) as (phone, callee, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 15)
    assert report.outcome is AttemptOutcome.BUSY and report.sip_status == 486
    assert not report.answered and report.digit is None
    assert report.early_media and report.classified_by == "status"
    assert report.progress == "183 Session Progress (early media only, no ringing)"
    assert callee.early_packets > 0
    assert [r.method for r in callee.received] == ["INVITE", "ACK"]


async def test_announcement_then_no_final_answer_is_classified_by_its_cause() -> None:
    async with scenario(None, reason='Q.850;cause=20;text="Subscriber absent"') as (
        phone, callee, target,
    ):  # fmt: skip
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=1.5), 15)
    assert report.outcome is AttemptOutcome.UNREACHABLE and report.sip_status == 487
    assert report.q850_cause == 20 and report.classified_by == "cause"
    assert "CANCEL" in [r.method for r in callee.received]
    # The ring clock started at the 183, not at the INVITE: the CANCEL came >= 1.5 s later.
    assert report.ring_seconds is not None and report.ring_seconds >= 1.5


async def test_press_1_heard_in_early_media_does_not_acknowledge() -> None:
    async with scenario(200) as (phone, callee, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 20)
    assert callee.early_packets > 0
    assert report.answered
    assert report.outcome is AttemptOutcome.ANSWERED_NO_ACK, report
    assert report.digit is None
    assert "BYE" in [r.method for r in callee.received]
