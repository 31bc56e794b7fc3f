"""RTCP between two real RTP sessions on loopback: reports both ways, the round trip, and
strangers' or malformed reports refused and counted (docs/realtime.md §7)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from voipalert.codec import Codec
from voipalert.media.rtcp import Report, ReportBlock, compound
from voipalert.net.ports import RtpPortAllocator, RtpPorts
from voipalert.net.rtp_socket import RtpSession, RtpSessionConfig

HOST = "127.0.0.1"


def _config(local: RtpPorts, remote: RtpPorts) -> RtpSessionConfig:
    return RtpSessionConfig(
        local_port=local.port, remote_addr=(HOST, remote.port), codec=Codec.PCMU, payload_type=0,
        telephone_event_pt=101, rtcp_interval_s=0.4,
    )  # fmt: skip


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


@pytest.fixture
async def sessions() -> AsyncIterator[tuple[RtpSession, RtpSession, RtpPorts]]:
    allocator = RtpPortAllocator(HOST, 44000, 44999)
    pa, pb = allocator.allocate(), allocator.allocate()
    a = await RtpSession.open(_config(pa, pb), ports=pa, rng=random.Random(1))
    b = await RtpSession.open(_config(pb, pa), ports=pb, rng=random.Random(2))
    try:
        yield a, b, pa
    finally:
        await a.close()
        await b.close()
        allocator.release(pa)
        allocator.release(pb)


async def test_reports_flow_both_ways_and_give_a_round_trip(
    sessions: tuple[RtpSession, RtpSession, RtpPorts],
) -> None:
    a, b, _ = sessions
    tone = (3000 * np.sin(np.arange(8000 * 3) * 0.3)).astype(np.int16)
    plays = [a.play(tone), b.play(tone)]
    # Each side's SR, then the other's report block with its LSR: a round trip.
    await _until(lambda: a.quality_summary().rtt_ms is not None and b.quality.reports_received >= 2)
    qa, qb = a.quality_summary(), b.quality_summary()
    assert qa.rtt_ms is not None and 0 <= qa.rtt_ms < 100
    assert qa.loss_percent == 0.0 and qb.loss_percent == 0.0
    assert qa.far_loss_percent == 0.0
    assert qa.mos > 4.3
    assert a.stats.rtcp_refused == a.stats.rtcp_malformed == 0
    assert not any(p.done() for p in plays)  # measured while both were still talking


async def test_strangers_and_garbage_are_refused_and_counted(
    sessions: tuple[RtpSession, RtpSession, RtpPorts],
) -> None:
    a, _, pa = sessions
    forged = compound(Report(0x666, None, (ReportBlock(a.quality.ssrc, 255, 9999, 0, 0),)), "x")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.2", 0))  # another host: never the call's media peer
        stranger.sendto(forged, (HOST, pa.rtcp_port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer_host:
        peer_host.bind((HOST, 0))  # the peer's host, but garbage
        peer_host.sendto(b"\x80\xc9\x00\x09junk", (HOST, pa.rtcp_port))
    await _until(lambda: a.stats.rtcp_refused >= 1 and a.stats.rtcp_malformed >= 1)
    # The forged report about our stream changed nothing.
    assert a.quality_summary().far_loss_percent != 100 * 255 / 256
