"""The received-audio analysis in worker processes (net.rx_pool, docs/rx-workers.md): real
processes, real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from tests.media.dtmf_signals import dtmf, silence, to_pcm
from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.dtmf import DtmfSource
from voipalert.media.rtp import RtpPacket
from voipalert.media.rx_analysis import AnalysisEvent, AnalysisSpec
from voipalert.net.ports import RtpPortAllocator
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig
from voipalert.net.rx_pool import (
    FRAME_BURST,
    FRAME_RATE_FACTOR,
    MAX_MESSAGE,
    MAX_PENDING_BYTES,
    AnalysisHandle,
    AnalysisPool,
)

HOST = "127.0.0.1"
SLOT = 160


async def _eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until ``condition`` holds (polled every 10 ms)."""
    for _ in range(int(seconds * 100)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class FarEnd:
    """A raw socket playing the far end's RTP: one stream (SSRC, sequence, timestamp)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.seq, self.ts = 100, 8000

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()
        return str(host), int(port)

    def packet(self, pcm: np.ndarray, *, leap: int = 0) -> bytes:
        self.ts = (self.ts + leap) & 0xFFFFFFFF
        data = RtpPacket(
            payload_type=0, sequence_number=self.seq, timestamp=self.ts, ssrc=0x5EED,
            payload=g711.encode(Codec.PCMU, pcm),
        ).serialize()  # fmt: skip
        self.seq = (self.seq + 1) & 0xFFFF
        self.ts = (self.ts + pcm.size) & 0xFFFFFFFF
        return data

    async def play(self, pcm: np.ndarray, to: tuple[str, int]) -> None:
        """``pcm`` as 20 ms packets, paced as a phone sends them."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, at in enumerate(range(0, pcm.size - SLOT + 1, SLOT)):
            self.sock.sendto(self.packet(pcm[at : at + SLOT]), to)
            await asyncio.sleep(max(0.0, start + (n + 1) * 0.02 - loop.time()))


@pytest.fixture
async def pool() -> AsyncIterator[AnalysisPool]:
    pool = AnalysisPool(1)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def call(pool: AnalysisPool) -> AsyncIterator[tuple[RtpSession, FarEnd, list[int]]]:
    """Our session, analysed in the pool, and the far end's raw socket; the list counts
    the worker outages the session was told of."""
    far = FarEnd()
    allocator = RtpPortAllocator(HOST, 44000, 44999)
    ports = allocator.allocate()
    lost: list[int] = []
    config = RtpSessionConfig(
        local_port=ports.port, remote_addr=far.address, codec=Codec.PCMU, payload_type=0,
        telephone_event_pt=101, latching=False,
    )  # fmt: skip
    session = await RtpSession.open(
        config, ports=ports, rng=random.Random(4), analysis=pool,
        on_analysis_lost=lambda: lost.append(1),
    )  # fmt: skip
    try:
        yield session, far, lost
    finally:
        await session.close()
        allocator.release(ports)
        far.sock.close()


def _key(char: str) -> np.ndarray:
    return to_pcm(np.concatenate((silence(0.1), dtmf(char, 0.1), silence(0.2))))


async def test_a_worker_killed_mid_call_is_restarted_and_keys_are_heard_again(
    pool: AnalysisPool, call: tuple[RtpSession, FarEnd, list[int]]
) -> None:
    session, far, lost = call
    to = session.local_address
    await far.play(_key("4"), to)
    async with asyncio.timeout(3):
        digit = await session.next_digit()
    assert (digit.char, digit.source) == ("4", DtmfSource.INBAND)
    (pid,) = pool.pids
    os.kill(pid, signal.SIGKILL)
    await _eventually(lambda: pool.stats.restarts == 1 and pool.pids not in ([], [pid]))
    assert lost == [1], "the call was told its analysis was lost"
    assert not _alive(pid), "the dead worker was reaped"
    # The new worker took the call over from scratch: in-band keys are heard again.
    await far.play(_key("9"), to)
    async with asyncio.timeout(3):
        digit = await session.next_digit()
    assert (digit.char, digit.source) == ("9", DtmfSource.INBAND)
    handle = session._analysis
    assert isinstance(handle, AnalysisHandle) and handle.stats.outages == 1


async def test_a_flood_with_timestamp_leaps_is_bounded_and_counted(
    pool: AnalysisPool, call: tuple[RtpSession, FarEnd, list[int]]
) -> None:
    """A far end sending ten thousand packets at once, its timestamps leaping about: the
    call passes its rate to the worker and drops the rest, counted; the worker lives, and
    a key sent properly afterwards is still heard."""
    session, far, _ = call
    to = session.local_address
    rng = np.random.default_rng(8)
    noise = to_pcm(rng.normal(0, 2000, SLOT))
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(10_000):
        leap = int(rng.integers(0, 1 << 31)) if n % 7 == 0 else 0
        try:
            far.sock.sendto(far.packet(noise, leap=leap), to)
        except BlockingIOError:
            await asyncio.sleep(0)
        if n % 100 == 0:
            await asyncio.sleep(0)  # let the loop read: the socket buffer holds a few hundred
    await asyncio.sleep(0.1)  # what is still queued on the socket is read
    elapsed = loop.time() - started
    handle = session._analysis
    assert isinstance(handle, AnalysisHandle)
    assert session.receiver_stats.packets > 2 * FRAME_BURST
    assert handle.stats.flood_dropped > 0
    # One stream's rate (with a margin) and a burst: no more reaches the worker.
    assert handle.stats.frames <= FRAME_BURST + FRAME_RATE_FACTOR * 50 * elapsed + 1
    assert pool.pending_bytes <= MAX_PENDING_BYTES + MAX_MESSAGE
    await far.play(_key("6"), to)
    async with asyncio.timeout(3):
        digit = await session.next_digit()
    assert (digit.char, digit.source) == ("6", DtmfSource.INBAND)
    assert pool.stats.restarts == 0


async def test_a_worker_that_stops_reading_costs_dropped_frames_not_memory(
    pool: AnalysisPool,
) -> None:
    """The worker frozen (SIGSTOP): the kernel's buffer fills, then the pool's own; beyond
    ``MAX_PENDING_BYTES`` audio is dropped and counted, never queued."""
    events: list[AnalysisEvent] = []
    handles = [pool.attach(AnalysisSpec(Codec.PCMU, beeps=True), events.append) for _ in range(200)]
    (pid,) = pool.pids
    os.kill(pid, signal.SIGSTOP)
    try:
        payload = bytes(SLOT)
        now = asyncio.get_running_loop().time()
        for step in range(300):  # six seconds of audio for 200 calls, as fast as it goes
            now += 0.02
            for handle in handles:
                handle.sent(step, now, bytes(SLOT))
                handle.received(payload, 1, step * SLOT, now)
            pool._flush()
            assert pool.pending_bytes <= MAX_PENDING_BYTES + MAX_MESSAGE
        assert pool.stats.queue_dropped > 0
        assert sum(h.stats.queue_dropped for h in handles) > 0
        assert all(h.stats.flood_dropped == 0 for h in handles), "one stream's rate is not a flood"
    finally:
        os.kill(pid, signal.SIGCONT)
    for handle in handles:
        handle.close()
    assert pool.calls == 0


async def test_close_leaves_no_process_nor_descriptor() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    pool = AnalysisPool(2)
    await pool.start()
    pids = pool.pids
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    handle = pool.attach(AnalysisSpec(Codec.PCMU), lambda _: None)
    handle.received(bytes(SLOT), 1, 0, 0.0)
    await pool.close()
    assert not any(_alive(pid) for pid in pids)
    assert set(os.listdir("/proc/self/fd")) <= fds_before
    await pool.close()  # idempotent
    with pytest.raises(RuntimeError):
        pool.attach(AnalysisSpec(Codec.PCMU), lambda _: None)


async def test_a_malformed_message_is_skipped_by_the_worker(
    pool: AnalysisPool, call: tuple[RtpSession, FarEnd, list[int]]
) -> None:
    session, far, _ = call
    sock = pool._workers[0].sock
    assert sock is not None
    sock.send(b"\x05\x00")  # a record header cut short
    await far.play(_key("2"), session.local_address)
    async with asyncio.timeout(3):
        digit = await session.next_digit()
    assert digit.char == "2"
    assert pool.stats.restarts == 0


def test_pool_size_is_checked() -> None:
    for workers in (0, 65):
        with pytest.raises(ValueError, match="workers"):
            AnalysisPool(workers)
