"""Media admission under attack: forged RTP on 127.0.0.1 must never acknowledge an alert.

The attacker is a plain UDP socket on this host (or on 127.0.0.2, "another host"): it sends
well-formed PCMU carrying in-band DTMF "1" and RFC 4733 events "1", paced like a phone, in
sequence, with one SSRC, before and after the answer. The far end is a real ``RtpSession``
(or a raw socket when the test needs to control its SSRC).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.media.dtmf_signals import dtmf, to_pcm
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf import Digit, DtmfSource
from voipalert.media.receiver import DigitReceived, DropReason, ReceiverConfig, RtpReceiver
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig

HOST = "127.0.0.1"
OTHER_HOST = "127.0.0.2"
ATTACKER_SSRC = 0x5EED
# In-band "1" in 20 ms frames: the spray's audio is a key press too.
_TONE = g711.encode(Codec.PCMU, to_pcm(dtmf("1", 0.2)))
_FRAMES = [_TONE[i : i + 160] for i in range(0, len(_TONE) - 159, 160)]


@pytest.fixture
def allocator() -> Iterator[RtpPortAllocator]:
    yield RtpPortAllocator(HOST, 43000, 43999)


def _udp(host: str = HOST) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def _config(local: RtpPorts, remote: tuple[str, int], **kw: object) -> RtpSessionConfig:
    return RtpSessionConfig(
        local_port=local.port, remote_addr=remote, codec=Codec.PCMU, payload_type=0,
        telephone_event_pt=101, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _spray_packets(count: int, first_seq: int = 1000, ssrc: int = ATTACKER_SSRC) -> list[bytes]:
    """A plausible stream: audio frames with in-band "1", an RFC 4733 "1" every 10th slot."""
    out = []
    for i in range(count):
        seq, ts = (first_seq + i) % 65536, (160 * (first_seq + i)) % (1 << 32)
        if i % 10 == 9:
            event = TelephoneEvent(1, i % 20 == 19, 10, 800).serialize()
            out.append(RtpPacket(101, seq, ts - 640, ssrc, event, marker=True).serialize())
        else:
            out.append(RtpPacket(0, seq, ts, ssrc, _FRAMES[i % len(_FRAMES)]).serialize())
    return out


async def _spray(sock: socket.socket, target: tuple[str, int], seconds: float) -> int:
    """Send the stream paced at 20 ms for ``seconds``; how many datagrams went out."""
    packets = _spray_packets(int(seconds / 0.02))
    for data in packets:
        sock.sendto(data, target)
        await asyncio.sleep(0.02)
    return len(packets)


async def _heard(session: RtpSession) -> None:
    for _ in range(300):
        if session.receiver_stats.packets > 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the far end's audio never arrived")


async def _no_digit(session: RtpSession, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(seconds):
            digit = await session.next_digit()
            raise AssertionError(f"a forged key press got through: {digit}")


async def _digit(session: RtpSession) -> Digit:
    async with asyncio.timeout(3):
        return await session.next_digit()


@contextlib.asynccontextmanager
async def _far_end(
    allocator: RtpPortAllocator, remote: tuple[str, int]
) -> AsyncIterator[RtpSession]:
    ports = allocator.allocate()
    session = await RtpSession.open(_config(ports, remote), ports=ports, rng=random.Random(3))
    try:
        yield session
    finally:
        await session.close()
        allocator.release(ports)


async def test_spray_before_answer_is_discarded_unread(allocator: RtpPortAllocator) -> None:
    ours = allocator.allocate()  # bound before the INVITE leaves, like calls.py does
    attacker = _udp()
    try:
        target = (HOST, ours.port)
        # While the phone rings: a whole stream with key presses waits in our buffer.
        sprayed = 0
        for data in _spray_packets(200):
            attacker.sendto(data, target)
            sprayed += 1
        attacker.sendto(b"\x80\xc8" + bytes(26), (HOST, ours.rtcp_port))  # RTCP too
        await asyncio.sleep(0.05)
        far_ports = allocator.allocate()
        far = await RtpSession.open(_config(far_ports, target), ports=far_ports)
        try:
            # The answer: the session opens and must discard all of it.
            session = await RtpSession.open(_config(ours, far.local_address), ports=ours)
            async with session:
                assert session.stats.drained_before_answer == sprayed + 1
                await _no_digit(session, 0.6)
                assert session.receiver_stats.dropped(DropReason.WRONG_SOURCE) == 0
                assert session.remote == far.local_address
                # The legitimate key press still works.
                far.send_digit("5")
                digit = await _digit(session)
                assert (digit.char, digit.source) == ("5", DtmfSource.RFC4733)
        finally:
            await far.close()
            allocator.release(far_ports)
    finally:
        attacker.close()
        allocator.release(ours)


@pytest.mark.parametrize("attacker_host", [HOST, OTHER_HOST])
async def test_spray_after_answer_while_the_far_end_talks(
    allocator: RtpPortAllocator, attacker_host: str, caplog: pytest.LogCaptureFixture
) -> None:
    ours = allocator.allocate()
    attacker = _udp(attacker_host)
    try:
        async with _far_end(allocator, (HOST, ours.port)) as far:
            session = await RtpSession.open(_config(ours, far.local_address), ports=ours)
            async with session:
                await _heard(session)  # the far end talks: its address is the source
                sent = await _spray(attacker, (HOST, ours.port), 1.0)
                await _no_digit(session, 0.3)
                stats = session.receiver_stats
                assert stats.dropped(DropReason.WRONG_SOURCE) == sent
                assert session.remote == far.local_address  # never latched to the spray
                # Logged with the source, but once per interval, not once per packet.
                refused = [r for r in caplog.records if "refused (wrong-source)" in r.message]
                assert len(refused) == 1 and attacker_host in refused[0].message
                far.send_digit("7")
                assert (await _digit(session)).char == "7"
    finally:
        attacker.close()
        allocator.release(ours)


async def test_spray_from_another_host_while_the_far_end_is_silent(
    allocator: RtpPortAllocator,
) -> None:
    """No audio at all from the far end: a stranger's perfect stream still never latches."""
    ours = allocator.allocate()
    silent = _udp()  # the SDP address: a far end that sends nothing
    attacker = _udp(OTHER_HOST)
    try:
        session = await RtpSession.open(_config(ours, silent.getsockname()), ports=ours)
        async with session:
            sent = await _spray(attacker, (HOST, ours.port), 1.0)
            await _no_digit(session, 0.3)
            assert session.receiver_stats.dropped(DropReason.WRONG_SOURCE) == sent
            assert session.remote == silent.getsockname()
            assert session.receiver_stats.packets == 0
    finally:
        attacker.close()
        silent.close()
        allocator.release(ours)


async def test_spray_after_answer_before_the_far_end_speaks(allocator: RtpPortAllocator) -> None:
    """Same host, racing the far end's first packet: probation lets the real audio win."""
    ours = allocator.allocate()
    attacker = _udp()
    far_ports = allocator.allocate()
    try:
        session = await RtpSession.open(_config(ours, (HOST, far_ports.port)), ports=ours)
        async with session:
            spray = asyncio.create_task(_spray(attacker, (HOST, ours.port), 1.0))
            await asyncio.sleep(0.08)  # the far end starts its media 80 ms after answer
            far = await RtpSession.open(_config(far_ports, (HOST, ours.port)), ports=far_ports)
            async with far:
                await spray
                await _no_digit(session, 0.3)
                assert session.remote == far.local_address
                refused = session.receiver_stats
                assert refused.dropped(DropReason.PROBATION) >= 1
                assert refused.dropped(DropReason.WRONG_SOURCE) >= 30
    finally:
        attacker.close()
        allocator.release(ours)
        allocator.release(far_ports)


async def test_telephone_event_from_another_port_or_ssrc_is_refused(
    allocator: RtpPortAllocator,
) -> None:
    ours = allocator.allocate()
    phone = _udp()  # the far end, under our control so that we choose its SSRCs
    attacker = _udp()
    try:
        session = await RtpSession.open(_config(ours, phone.getsockname()), ports=ours)
        async with session:
            target = (HOST, ours.port)
            for seq in range(5):
                audio = RtpPacket(0, seq, seq * 160, 0xAAAA, b"\xff" * 160).serialize()
                phone.sendto(audio, target)
            await asyncio.sleep(0.05)
            for seq, end in ((5, False), (6, True), (7, True)):
                event = TelephoneEvent(1, end, 10, 480).serialize()
                # The attacker copies the phone's SSRC but not its port ...
                attacker.sendto(RtpPacket(101, seq, 800, 0xAAAA, event).serialize(), target)
                # ... or sneaks through the phone's socket under another SSRC.
                phone.sendto(RtpPacket(101, seq, 800, 0xBBBB, event).serialize(), target)
            await _no_digit(session, 0.4)
            stats = session.receiver_stats
            assert stats.dropped(DropReason.WRONG_SOURCE) == 3
            assert stats.dropped(DropReason.WRONG_SSRC) == 3
            event = TelephoneEvent(4, True, 10, 480).serialize()
            phone.sendto(RtpPacket(101, 8, 1600, 0xAAAA, event).serialize(), target)
            assert (await _digit(session)).char == "4"
    finally:
        attacker.close()
        phone.close()
        allocator.release(ours)


async def test_latching_follows_a_far_end_whose_rtp_comes_from_another_port(
    allocator: RtpPortAllocator,
) -> None:
    """NAT: the SDP names a port that stays silent; the far end's media comes from another
    port on the same host. We latch after probation, send there and hear its key press."""
    ours = allocator.allocate()
    sdp_port = _udp()  # what the answer SDP says: nothing ever comes from there
    try:
        async with _far_end(allocator, (HOST, ours.port)) as far:
            session = await RtpSession.open(_config(ours, sdp_port.getsockname()), ports=ours)
            async with session:
                for _ in range(300):  # latched within 3 s
                    if session.remote == far.local_address:
                        break
                    await asyncio.sleep(0.01)
                assert session.remote == far.local_address
                assert session.receiver_stats.dropped(DropReason.PROBATION) >= 9
                before = far.receiver_stats.packets
                await asyncio.sleep(0.2)
                assert far.receiver_stats.packets > before  # symmetric RTP: we answer there
                far.send_digit("9")
                digit = await _digit(session)
                assert (digit.char, digit.source) == ("9", DtmfSource.RFC4733)
    finally:
        sdp_port.close()
        allocator.release(ours)


async def test_latching_off_never_latches(allocator: RtpPortAllocator) -> None:
    ours = allocator.allocate()
    sdp_port = _udp()
    try:
        async with _far_end(allocator, (HOST, ours.port)) as far:
            config = _config(ours, sdp_port.getsockname(), latching=False)
            session = await RtpSession.open(config, ports=ours)
            async with session:
                far.send_digit("3")
                await _no_digit(session, 0.8)
                assert session.remote == sdp_port.getsockname()
                assert session.receiver_stats.dropped(DropReason.WRONG_SOURCE) >= 20
    finally:
        sdp_port.close()
        allocator.release(ours)


def test_spray_packets_are_a_plausible_stream() -> None:
    """The attack is a real one: the same stream from the SDP address is heard."""
    rx = RtpReceiver(ReceiverConfig(Codec.PCMU, 0, 101, remote=(HOST, 1)))
    out = []
    for i, data in enumerate(_spray_packets(20)):
        out += rx.receive(data, (HOST, 1), i * 0.02)
    assert {e.digit.char for e in out if isinstance(e, DigitReceived)} == {"1"}
    assert all(len(frame) == 160 for frame in _FRAMES)
