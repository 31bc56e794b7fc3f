"""A whole call with SDES-SRTP on real sockets (docs/security.md §SRTP): a scripted callee
on loopback answers our RTP/SAVP offer with its own key (or without one) and presses 1
inside SRTP. The phone's policy decides: keys accepted → the press acknowledges; no
acceptable keys under ``required`` → hung up at answer with the reason, FAILED."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pylibsrtp
from numpy.typing import NDArray

from tests.net.sip_harness import free_port
from voipalert.calls import MediaConfig, Phone
from voipalert.callscript import ScriptConfig
from voipalert.domain.alert import AttemptOutcome
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket
from voipalert.sip.config import UAConfig
from voipalert.sip.message import Request, Response, response_to
from voipalert.sip.parser import parse_message
from voipalert.sip.sdes import SUITE, SrtpPolicy
from voipalert.sip.uri import SipUri

HOST = "127.0.0.1"
TAG = "callee-tag"
TONE: NDArray[np.int16] = (3000 * np.sin(2 * np.pi * 440 * np.arange(2400) / 8000)).astype(np.int16)


async def prompts(key: str) -> NDArray[np.int16]:
    await asyncio.sleep(0)
    return TONE


@dataclass
class Callee(asyncio.DatagramProtocol):
    """Answers 200 with ``crypto`` (a=crypto values) on ``transport``, then presses 1
    protected with ``key``."""

    transport: str
    crypto: tuple[str, ...]
    key: bytes
    press: bool = True
    received: list[Request] = field(default_factory=list)
    sip: asyncio.DatagramTransport | None = None
    rtp: asyncio.DatagramTransport | None = None
    rtp_port: int = 0
    our_key: bytes | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        message = parse_message(data)
        source = (str(addr[0]), int(str(addr[1])))
        if not isinstance(message, Request):
            return
        self.received.append(message)
        if message.method == "INVITE" and len(self.received) == 1:
            task = asyncio.get_running_loop().create_task(self._answer(message, source))
            self.tasks.add(task)
        elif message.method == "BYE":
            self._send(response_to(message, 200), source)

    def _send(self, response: Response, to: tuple[str, int]) -> None:
        assert self.sip is not None
        self.sip.sendto(response.serialize(), to)

    async def _answer(self, invite: Request, source: tuple[str, int]) -> None:
        offer = invite.body.decode()
        port = re.search(r"m=audio (\d+) ", offer)
        inline = re.search(r"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:(\S{40})\r\n", offer)
        assert port is not None and inline is not None
        self.our_key = base64.b64decode(inline.group(1))
        lines = [
            "v=0", f"o=- 7 1 IN IP4 {HOST}", "s=-", f"c=IN IP4 {HOST}", "t=0 0",
            f"m=audio {self.rtp_port} {self.transport} 0 101", "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000", *(f"a=crypto:{c}" for c in self.crypto),
        ]  # fmt: skip
        sip_port = int(self.sip.get_extra_info("sockname")[1]) if self.sip else 0
        self._send(
            response_to(
                invite, 200, to_tag=TAG, body="\r\n".join([*lines, ""]).encode(),
                headers=[("Content-Type", "application/sdp"),
                         ("Contact", f"<sip:callee@{HOST}:{sip_port}>")],
            ),
            source,
        )  # fmt: skip
        # After our session has opened (it discards what arrived before the answer).
        await asyncio.sleep(0.8)
        if self.press:
            self._press_1((HOST, int(port.group(1))))

    def _press_1(self, to: tuple[str, int]) -> None:
        assert self.rtp is not None
        protect = pylibsrtp.Session(
            pylibsrtp.Policy(key=self.key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        ).protect
        steps = [(False, 160), (False, 320), (False, 480), (True, 640), (True, 640), (True, 640)]
        for n, (end, duration) in enumerate(steps):
            event = TelephoneEvent(event=1, end=end, volume=10, duration=duration).serialize()
            packet = RtpPacket(101, 500 + n, 8000, 0x4321, event, marker=n == 0).serialize()
            self.rtp.sendto(protect(packet), to)


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.packets.append(data)


@contextlib.asynccontextmanager
async def scenario(
    callee: Callee, policy: SrtpPolicy, repetitions: int = 2
) -> AsyncIterator[tuple[Phone, _Sink, SipUri]]:
    loop = asyncio.get_running_loop()
    sip_transport, _ = await loop.create_datagram_endpoint(lambda: callee, local_addr=(HOST, 0))
    sink = _Sink()
    rtp_transport, _ = await loop.create_datagram_endpoint(lambda: sink, local_addr=(HOST, 0))
    callee.sip, callee.rtp = sip_transport, rtp_transport
    callee.rtp_port = int(rtp_transport.get_extra_info("sockname")[1])
    sip_port, rtp = free_port(), free_port(even=True)
    # UDP here only because the test's callee is a datagram one: the settings refuse SRTP
    # without TLS (tests/test_settings_security.py); the Phone itself takes the policy as given.
    config = UAConfig(user="voipalert", domain=HOST, local_host=HOST, local_port=sip_port)
    phone = Phone(
        config, (HOST, sip_port), MediaConfig(HOST, HOST, rtp, rtp + 20, srtp=policy),
        script=ScriptConfig(repetitions=repetitions, pause_seconds=0.5), rng=random.Random(3),
    )  # fmt: skip
    await phone.start(register=False)
    try:
        target_port = int(sip_transport.get_extra_info("sockname")[1])
        yield phone, sink, SipUri(user="callee", host=HOST, port=target_port)
    finally:
        await phone.stop()
        for task in callee.tasks:
            task.cancel()
        sip_transport.close()
        rtp_transport.close()


async def test_srtp_call_is_acknowledged_by_a_key_inside_srtp() -> None:
    theirs = secrets.token_bytes(30)
    crypto = f"1 {SUITE} inline:{base64.b64encode(theirs).decode()}"
    callee = Callee("RTP/SAVP", (crypto,), theirs)
    async with scenario(callee, SrtpPolicy.REQUIRED) as (phone, sink, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 20)
    assert report.outcome is AttemptOutcome.ACKNOWLEDGED, report
    assert report.digit == "1" and report.digit_source == "rfc4733"
    invite = callee.received[0].body.decode()
    assert "RTP/SAVP 0 8 101" in invite
    # What we sent is SRTP under the key we offered: the callee can read it, nobody else.
    assert callee.our_key is not None and sink.packets
    rx = pylibsrtp.Session(
        pylibsrtp.Policy(key=callee.our_key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    )
    assert RtpPacket.parse(rx.unprotect(sink.packets[0])).payload_type in (0, 101)


async def test_required_srtp_and_a_plain_answer_hangs_up_failed() -> None:
    callee = Callee("RTP/AVP", (), secrets.token_bytes(30))
    async with scenario(callee, SrtpPolicy.REQUIRED) as (phone, sink, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 20)
    assert report.outcome is AttemptOutcome.FAILED, report
    assert "SRTP" in report.sip_reason and report.digit is None
    assert "BYE" in [r.method for r in callee.received]
    assert not sink.packets  # not one packet of audio in clear


async def test_bad_key_in_the_answer_hangs_up_failed() -> None:
    crypto = f"1 {SUITE} inline:{base64.b64encode(b'x' * 30).decode()}|2^10"
    callee = Callee("RTP/AVP", (crypto,), b"x" * 30)
    async with scenario(callee, SrtpPolicy.OPTIONAL) as (phone, sink, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 20)
    assert report.outcome is AttemptOutcome.FAILED and "lifetime" in report.sip_reason
    assert not sink.packets


async def test_optional_srtp_and_a_plain_answer_is_plain_rtp() -> None:
    callee = Callee("RTP/AVP", (), secrets.token_bytes(30), press=False)
    async with scenario(callee, SrtpPolicy.OPTIONAL, repetitions=1) as (phone, sink, target):
        report = await asyncio.wait_for(phone.call(target, prompts, ring_timeout=10), 20)
    assert "RTP/AVP 0 8 101" in callee.received[0].body.decode()
    assert report.outcome is AttemptOutcome.ANSWERED_NO_ACK, report
    assert sink.packets and RtpPacket.parse(sink.packets[0]).payload_type in (0, 101)
