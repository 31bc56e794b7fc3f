"""SRTP sessions (RFC 3711, keys from SDES) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pylibsrtp
import pytest
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf import DtmfSource
from voipalert.media.playout import PlayEnd
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.srtp import AUTH_TAG_BYTES
from voipalert.sip.sdes import SrtpKeys

HOST = "127.0.0.1"
KEY_A, KEY_B = secrets.token_bytes(30), secrets.token_bytes(30)


def _config(local: RtpPorts, remote: tuple[str, int], keys: SrtpKeys | None) -> RtpSessionConfig:
    return RtpSessionConfig(
        local_port=local.port, remote_addr=remote, codec=Codec.PCMU, payload_type=0,
        telephone_event_pt=101, rtcp_interval_s=0.3, srtp=keys,
    )  # fmt: skip


async def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


@pytest.fixture
def allocator() -> RtpPortAllocator:
    return RtpPortAllocator(HOST, 43000, 43999)


@pytest.fixture
async def pair(
    allocator: RtpPortAllocator,
) -> AsyncIterator[tuple[RtpSession, RtpSession, list[NDArray[np.int16]]]]:
    pa, pb = allocator.allocate(), allocator.allocate()
    heard: list[NDArray[np.int16]] = []
    a = await RtpSession.open(
        _config(pa, (HOST, pb.port), SrtpKeys(local=KEY_A, remote=KEY_B)),
        ports=pa, rng=random.Random(1),
    )  # fmt: skip
    b = await RtpSession.open(
        _config(pb, (HOST, pa.port), SrtpKeys(local=KEY_B, remote=KEY_A)),
        ports=pb, rng=random.Random(2), on_audio=lambda f: heard.append(f.pcm),
    )  # fmt: skip
    try:
        yield a, b, heard
    finally:
        await a.close()
        await b.close()
        allocator.release(pa)
        allocator.release(pb)


async def test_two_srtp_sessions_exchange_audio_keys_and_srtcp(
    pair: tuple[RtpSession, RtpSession, list[NDArray[np.int16]]],
) -> None:
    a, b, heard = pair
    t = np.arange(4000) / 8000
    # A chirp: no two 20 ms frames alike, so each received frame names its place.
    prompt = (8000 * np.sin(2 * np.pi * (300 * t + 700 * t**2))).astype(np.int16)
    async with asyncio.timeout(5):
        assert await a.play(prompt) == PlayEnd.FINISHED
    await _eventually(lambda: b.receiver_stats.packets >= a.stats.packets > 0)
    sent = g711.round_trip(Codec.PCMU, prompt)
    # The decrypted audio is ours: every frame of the prompt arrived intact, in order
    # (less any slot a loaded machine made the sender skip: a stall past the catch-up bound).
    frames = {sent[i : i + 160].tobytes(): i // 160 for i in range(0, sent.size, 160)}
    order = [frames[f.tobytes()] for f in heard if f.tobytes() in frames]
    assert order == sorted(order)
    assert len(order) >= sent.size // 160 - a.stats.skipped_slots
    a.send_digit("7", duration_ms=100)
    async with asyncio.timeout(3):
        digit = await b.next_digit()
    assert (digit.char, digit.source) == ("7", DtmfSource.RFC4733)
    # SRTCP both ways: each side reads the other's reports.
    await _eventually(lambda: a.quality.reports_received >= 1 and b.quality.reports_received >= 1)
    for session in (a, b):
        assert session.stats.srtp_rejected == session.stats.srtcp_rejected == 0
        assert session.stats.rtcp_malformed == 0


async def test_what_leaves_is_encrypted_and_authenticated(allocator: RtpPortAllocator) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((HOST, 0))
    port = allocator.allocate()
    session = await RtpSession.open(
        _config(port, listener.getsockname(), SrtpKeys(local=KEY_A, remote=KEY_B)),
        ports=port, rng=random.Random(3),
    )  # fmt: skip
    try:
        silence = np.zeros(1600, dtype=np.int16)
        async with asyncio.timeout(5):
            await session.play(silence)
        listener.settimeout(2)
        wire = listener.recv(2048)
    finally:
        await session.close()
        listener.close()
        allocator.release(port)
    assert len(wire) == 12 + 160 + AUTH_TAG_BYTES
    # G.711 silence is 0xFF bytes in clear: encrypted, they are not.
    assert wire[12:172] != b"\xff" * 160
    rx = pylibsrtp.Session(pylibsrtp.Policy(key=KEY_A, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    assert RtpPacket.parse(rx.unprotect(wire)).payload == b"\xff" * 160


async def test_forged_tampered_replayed_and_plain_key_presses_never_count(
    allocator: RtpPortAllocator,
) -> None:
    """The far end's key is ``KEY_B``; a packet protected with it is a real key press,
    anything else (tampered, unprotected, replayed, another key) is dropped and counted."""
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind((HOST, 0))
    far.setblocking(False)
    port = allocator.allocate()
    session = await RtpSession.open(
        _config(port, far.getsockname(), SrtpKeys(local=KEY_A, remote=KEY_B)),
        ports=port, rng=random.Random(4),
    )  # fmt: skip
    target = session.local_address
    honest = _sender(KEY_B)
    attacker = _sender(secrets.token_bytes(30))

    def press(seq: int, ts: int, end: bool = False) -> bytes:
        event = TelephoneEvent(1, end, 10, 800).serialize()
        return RtpPacket(101, seq, ts, 0x1234, event, marker=seq == 1).serialize()

    try:
        tampered = bytearray(honest.protect(press(1, 0)))
        tampered[14] ^= 0x01  # one bit of the encrypted payload
        bad = [bytes(tampered), press(2, 160), attacker.protect(press(3, 320)), b"\x80" * 30]
        for datagram in bad:
            far.sendto(datagram, target)
        await _eventually(lambda: session.stats.srtp_rejected >= len(bad))
        assert session.receiver_stats.packets == 0  # nothing reached the receiver
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await session.next_digit()
        # The same path with the right key: the press counts (the refusals above were
        # the keys' doing, not a broken setup). Then a replay of it is refused.
        genuine = honest.protect(press(10, 1600))
        far.sendto(genuine, target)
        async with asyncio.timeout(3):
            assert (await session.next_digit()).char == "1"
        before = session.stats.srtp_rejected
        far.sendto(genuine, target)
        await _eventually(lambda: session.stats.srtp_rejected == before + 1)
    finally:
        await session.close()
        far.close()
        allocator.release(port)


def _sender(key: bytes) -> pylibsrtp.Session:
    return pylibsrtp.Session(
        pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    )
