"""RTP sessions over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import dtmf, silence, sine, to_pcm
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.beep import Beep
from voipalert.media.dtmf import DtmfSource
from voipalert.media.playout import PlayEnd
from voipalert.media.receiver import AudioFrame, DropReason
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket, seq_diff, ts_diff
from voipalert.net import rtp_socket
from voipalert.net.errors import RtpSessionClosedError
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_pacer import RtpPacer
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.rx_pool import AnalysisPool

from .conftest import BOTH_PLACES

HOST = "127.0.0.1"


@pytest.fixture
def allocator() -> Iterator[RtpPortAllocator]:
    alloc = RtpPortAllocator(HOST, 42000, 42999)
    yield alloc


def _raw_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    sock.setblocking(False)
    return sock


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(2048))
        except BlockingIOError:
            return out


def _config(
    local: RtpPorts, remote: tuple[str, int], codec: Codec = Codec.PCMU
) -> RtpSessionConfig:
    return RtpSessionConfig(
        local_port=local.port,
        remote_addr=remote,
        codec=codec,
        payload_type=codec.payload_type,
        telephone_event_pt=101,
    )


async def _eventually(condition: Callable[[], bool]) -> None:
    """Wait until ``condition`` holds (polled every 10 ms, at most 3 s)."""
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


class Pair:
    """Two sessions sending to each other; B records the audio it receives."""

    def __init__(self, a: RtpSession, b: RtpSession, heard: list[NDArray[np.int16]]) -> None:
        self.a, self.b, self.heard = a, b, heard


@pytest.fixture
async def pair(
    allocator: RtpPortAllocator, analysis_pool: AnalysisPool | None
) -> AsyncIterator[Pair]:
    pa, pb = allocator.allocate(), allocator.allocate()
    heard: list[NDArray[np.int16]] = []

    def record(frame: AudioFrame) -> None:
        heard.append(frame.pcm)

    a = await RtpSession.open(_config(pa, (HOST, pb.port)), ports=pa, rng=random.Random(1))
    b = await RtpSession.open(
        _config(pb, (HOST, pa.port)), ports=pb, rng=random.Random(2), on_audio=record,
        analysis=analysis_pool,
    )  # fmt: skip
    try:
        yield Pair(a, b, heard)
    finally:
        await a.close()
        await b.close()
        allocator.release(pa)
        allocator.release(pb)


def _chirp(seconds: float) -> NDArray[np.int16]:
    t = np.arange(int(seconds * 8000)) / 8000
    return to_pcm(8000 * np.sin(2 * np.pi * (300 * t + 700 * t**2)))


async def test_audio_arrives_intact(pair: Pair) -> None:
    prompt = _chirp(1.0)
    done = pair.a.play(prompt)
    async with asyncio.timeout(5):
        assert await done == PlayEnd.FINISHED
    # Every packet that left has arrived (loopback loses none): wait for the count.
    await _eventually(lambda: pair.b.receiver_stats.packets >= pair.a.stats.packets)
    heard = np.concatenate(pair.heard).astype(np.float64)
    sent = g711.round_trip(Codec.PCMU, prompt).astype(np.float64)
    assert pair.b.receiver_stats.lost == 0
    assert pair.b.remote == pair.a.local_address
    if pair.a.stats.skipped_slots == 0:
        corr = np.correlate(heard, sent, "valid")
        lag = int(np.argmax(corr))
        segment = heard[lag : lag + sent.size]
        normalised = corr[lag] / np.sqrt(np.dot(segment, segment) * np.dot(sent, sent))
        assert normalised > 0.999
        assert lag % 160 == 0  # frame-aligned: nothing lost, nothing duplicated
        np.testing.assert_array_equal(segment, sent)
    else:
        # A loaded machine stalled the sender: the skipped slots' audio is gone (never
        # bursted late), every frame that did go out arrived intact and in order.
        frames = {sent[i : i + 160].tobytes(): i // 160 for i in range(0, sent.size, 160)}
        got = [frames.get(f.astype(np.float64).tobytes()) for f in pair.heard]
        order = [i for i in got if i is not None]
        assert order == sorted(order) and len(order) >= sent.size // 160 - 10


async def test_rfc4733_digit_from_one_is_detected_by_the_other(pair: Pair) -> None:
    pair.a.send_digit("5", duration_ms=120)
    async with asyncio.timeout(3):
        digit = await pair.b.next_digit()
    assert (digit.char, digit.source) == ("5", DtmfSource.RFC4733)
    await asyncio.sleep(0.2)  # the end packets arrive: still one key press
    assert pair.a.stats.events_sent == 1
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await pair.b.next_digit()


@BOTH_PLACES
async def test_inband_tones_sent_as_audio_are_detected(pair: Pair) -> None:
    tones = np.concatenate(
        [silence(0.1), dtmf("7", 0.08), silence(0.1), dtmf("#", 0.08), silence(0.1)]
    )
    _ = pair.a.play(to_pcm(tones))
    async with asyncio.timeout(3):
        first = await pair.b.next_digit()
        second = await pair.b.next_digit()
    assert [(d.char, d.source) for d in (first, second)] == [
        ("7", DtmfSource.INBAND),
        ("#", DtmfSource.INBAND),
    ]


async def test_a_key_press_interrupts_the_prompt(pair: Pair) -> None:
    long_prompt = pair.b.play(_chirp(10.0))
    background = pair.b.play(_chirp(10.0), interrupt_on_digit=False)
    assert await long_prompt == PlayEnd.REPLACED
    pair.a.send_digit("1")
    async with asyncio.timeout(3):
        await pair.b.next_digit()
    assert not background.done()  # this one asked not to be interrupted
    foreground = pair.b.play(_chirp(10.0))
    pair.a.send_digit("2")
    async with asyncio.timeout(3):
        assert await foreground == PlayEnd.INTERRUPTED


async def test_sip_info_and_rfc4733_for_the_same_press_count_once(pair: Pair) -> None:
    assert pair.b.digit_received("9") is True
    for junk in ("", "10", "E", "\r\n"):
        assert pair.b.digit_received(junk) is False
    assert pair.b.stats.bad_info_digits == 4
    pair.a.send_digit("9")
    async with asyncio.timeout(3):
        digit = await pair.b.next_digit()
    assert digit.source == DtmfSource.SIP_INFO
    await asyncio.sleep(0.3)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await pair.b.next_digit()


async def test_garbage_and_strangers_are_dropped_and_counted(pair: Pair) -> None:
    await _eventually(lambda: pair.b.receiver_stats.packets > 0)  # B heard A: source fixed
    stranger = _raw_socket()
    try:
        target = pair.b.local_address
        for garbage in (b"", b"\x00" * 5, b"\xff" * 40, b"\x80\x00"):
            stranger.sendto(garbage, target)
        event = TelephoneEvent(1, False, 10, 160).serialize()
        forged = RtpPacket(101, 1, 0, 0x1234, event, marker=True).serialize()
        audio = RtpPacket(0, 2, 160, 0x1234, b"\x00" * 160).serialize()
        for datagram in (forged, audio, forged):
            stranger.sendto(datagram, target)
        stats = pair.b.receiver_stats
        await _eventually(lambda: sum(stats.drops.values()) >= 7)
    finally:
        stranger.close()
    stats = pair.b.receiver_stats
    assert stats.dropped(DropReason.MALFORMED) == 4
    assert stats.dropped(DropReason.WRONG_SOURCE) == 3
    with pytest.raises(TimeoutError):  # the forged key press never arrives
        async with asyncio.timeout(0.1):
            await pair.b.next_digit()


async def test_latching_follows_the_far_end_behind_nat(allocator: RtpPortAllocator) -> None:
    pa, pb = allocator.allocate(), allocator.allocate()
    decoy = _raw_socket()  # the address "in the SDP", where nothing answers for B
    try:
        a = await RtpSession.open(_config(pa, (HOST, pb.port)), ports=pa)
        b = await RtpSession.open(_config(pb, decoy.getsockname()), ports=pb)
        async with a, b:
            await _eventually(lambda: b.remote == a.local_address)  # latched after 2 packets
            before = a.receiver_stats.packets
            await _eventually(lambda: a.receiver_stats.packets > before)  # B sends to A now
            assert len(_drain(decoy)) >= 1  # B sent to the SDP address until then
    finally:
        decoy.close()
        allocator.release(pa)
        allocator.release(pb)


async def test_socket_errors_are_counted_not_raised(allocator: RtpPortAllocator) -> None:
    # Linux reports no ICMP error on an unconnected UDP socket, but sendto itself can
    # fail; port 0 (an SDP "rejected stream" sent to by mistake) gives EINVAL every time.
    pa = allocator.allocate()
    try:
        async with await RtpSession.open(_config(pa, (HOST, 0)), ports=pa) as session:
            await _eventually(lambda: session.stats.transport_errors >= 2)
            errors = session.stats.transport_errors
            assert session.last_error is not None
            await _eventually(lambda: session.stats.transport_errors > errors)  # still going
            assert not session.closed
    finally:
        allocator.release(pa)


async def test_close_releases_every_waiter(pair: Pair) -> None:
    playing = pair.a.play(_chirp(5.0))
    waiter = asyncio.ensure_future(pair.a.next_digit())
    await asyncio.sleep(0.05)
    await pair.a.close()
    assert await playing == PlayEnd.STOPPED
    with pytest.raises(RtpSessionClosedError):
        await waiter
    with pytest.raises(RtpSessionClosedError):
        _ = pair.a.play(_chirp(1.0))
    await pair.a.close()  # idempotent


async def test_a_stall_catches_up_recent_slots_and_skips_older_ones(
    allocator: RtpPortAllocator,
) -> None:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    pacer = RtpPacer(loop, on_lateness=lateness.append)
    sink = _raw_socket()
    pa = allocator.allocate()
    try:
        async with await RtpSession.open(
            _config(pa, sink.getsockname()), ports=pa, pacer=pacer, rng=random.Random(3)
        ) as session:
            began = loop.time()
            await asyncio.sleep(0.2)
            end = time.perf_counter() + 0.110
            while time.perf_counter() < end:  # block the loop: a 110 ms stall
                pass
            await asyncio.sleep(0.2)
            ran = loop.time() - began
        packets = [RtpPacket.parse(d) for d in _drain(sink)]
    finally:
        sink.close()
        allocator.release(pa)
    steps = [
        (seq_diff(b.sequence_number, a.sequence_number), ts_diff(b.timestamp, a.timestamp))
        for a, b in itertools.pairwise(packets)
    ]
    assert all(seq == 1 for seq, _ in steps)  # nothing lost on loopback, nothing repeated
    assert all(ts % 160 == 0 and ts >= 160 for _, ts in steps)
    stall = max(range(len(steps)), key=lambda i: steps[i][1])
    # The 110 ms stall: the slots older than CATCH_UP_S were skipped (a timestamp jump with
    # no sequence gap, and the marker: the receiver may re-sync its jitter buffer) ...
    assert steps[stall][1] >= 2 * 160
    assert packets[stall + 1].marker is True
    skipped = sum(ts // 160 - 1 for _, ts in steps)
    assert pacer.skipped_slots == skipped == session.stats.skipped_slots
    # Time kept counting: the timestamps span the run's duration in samples.
    span = ts_diff(packets[-1].timestamp, packets[0].timestamp) / 8000
    assert span == pytest.approx(ran, abs=0.045)
    # ... and the recent ones left at once, in order, each with its own timestamp (the
    # catch-up's bound is tests/net/test_rtp_pacer.py's, on a clock the test drives).
    assert sum(late > 0.020 for late in lateness) >= 2


async def test_hold_stops_sending_and_time_keeps_counting(allocator: RtpPortAllocator) -> None:
    sink = _raw_socket()
    pa = allocator.allocate()
    try:
        async with await RtpSession.open(
            _config(pa, sink.getsockname()), ports=pa, rng=random.Random(4)
        ) as session:
            await asyncio.sleep(0.1)
            session.set_sending(False)
            await asyncio.sleep(0.01)
            held_at = len(_drain(sink))
            await asyncio.sleep(0.2)
            assert _drain(sink) == []  # nothing while on hold
            session.set_sending(True)
            await asyncio.sleep(0.1)
        after = [RtpPacket.parse(d) for d in _drain(sink)]
    finally:
        sink.close()
        allocator.release(pa)
    assert held_at >= 3 and len(after) >= 3
    assert after[0].marker is True  # first packet after the hold
    assert all(not p.marker for p in after[1:])


async def test_open_on_a_configured_port_and_fail_cleanly(allocator: RtpPortAllocator) -> None:
    probe = allocator.allocate()
    port = probe.port
    allocator.release(probe)
    config = _config(probe, (HOST, 9))
    async with await RtpSession.open(config) as session:
        assert session.local_address == (HOST, port)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind((HOST, port + 1))  # someone holds the RTCP port
    try:
        with pytest.raises(OSError):
            await RtpSession.open(config)
    finally:
        blocker.close()
    again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    again.bind((HOST, port))  # the RTP port was not leaked
    again.close()


@BOTH_PLACES
async def test_beeps_are_listened_for_only_when_asked(
    allocator: RtpPortAllocator, analysis_pool: AnalysisPool | None
) -> None:
    """The beep detector runs while the script can act on a beep (docs/capacity.md §4):
    off, a beep goes unreported; on again, the next one is heard."""
    pa, pb = allocator.allocate(), allocator.allocate()
    beeps: list[Beep] = []
    a = await RtpSession.open(_config(pa, (HOST, pb.port)), ports=pa, rng=random.Random(1))
    b = await RtpSession.open(
        _config(pb, (HOST, pa.port)), ports=pb, rng=random.Random(2), on_beep=beeps.append,
        analysis=analysis_pool,
    )  # fmt: skip
    beep = to_pcm(np.concatenate((silence(0.1), sine(1000.0, 2400, -15.0), silence(0.1))))
    try:
        b.listen_for_beeps(False)
        async with asyncio.timeout(5):
            assert await a.play(beep) == PlayEnd.FINISHED
        await _eventually(lambda: b.receiver_stats.packets >= a.stats.packets)
        assert beeps == []
        b.listen_for_beeps(True)
        async with asyncio.timeout(5):
            assert await a.play(beep) == PlayEnd.FINISHED
        await _eventually(lambda: len(beeps) == 1)
        assert abs(beeps[0].hz - 1000.0) < 10.0
    finally:
        await a.close()
        await b.close()
        allocator.release(pa)
        allocator.release(pb)


async def test_a_backlog_on_the_socket_is_read_in_a_few_turns(
    allocator: RtpPortAllocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio reads one datagram per socket per turn of the loop; the session reads what
    is queued (at most ten a turn), so a call whose packets queued up during a stall
    catches up at once instead of staying seconds behind (docs/rx-workers.md §6). The
    time budget shared by all calls is lifted here (its own test is below): a first packet
    costs the cold analysis milliseconds."""
    monkeypatch.setattr(rtp_socket, "CATCH_UP_BUDGET_SECONDS", 10.0)
    far = _raw_socket()
    pb = allocator.allocate()
    b = await RtpSession.open(_config(pb, far.getsockname()), ports=pb, rng=random.Random(2))
    try:
        payload = g711.encode(Codec.PCMU, np.zeros(160, np.int16))
        for n in range(30):  # queued while the loop does not run
            packet = RtpPacket(
                payload_type=0, sequence_number=n, timestamp=160 * n, ssrc=77, payload=payload
            )
            far.sendto(packet.serialize(), b.local_address)
        turns = 0
        while b.receiver_stats.packets < 30 and turns < 30:
            await asyncio.sleep(0)
            turns += 1
        assert b.receiver_stats.packets == 30
        assert turns <= 6, f"{turns} turns of the loop to read 30 queued packets"
    finally:
        await b.close()
        far.close()
        allocator.release(pb)


def test_the_catch_up_budget_is_shared_and_renewed_every_window() -> None:
    budget = rtp_socket._CatchUpBudget()
    assert budget.allows(100.0)
    budget.spent += rtp_socket.CATCH_UP_BUDGET_SECONDS  # the calls' extra reads so far
    assert not budget.allows(100.0 + rtp_socket.CATCH_UP_WINDOW_SECONDS / 2)
    assert budget.allows(100.0 + rtp_socket.CATCH_UP_WINDOW_SECONDS)  # a new window
    assert budget.spent == 0.0
