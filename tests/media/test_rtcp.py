"""RTCP reports (media.rtcp) and the call quality meter (media.quality)."""

from __future__ import annotations

import struct

import pytest

from voipalert.media.errors import RemoteProtocolError
from voipalert.media.quality import (
    CallQualityMeter,
    SourceCounts,
    mos_from_r,
    r_factor,
)
from voipalert.media.rtcp import (
    Report,
    ReportBlock,
    SenderInfo,
    compound,
    ntp_from_unix,
    ntp_middle,
    parse_compound,
    sdes_cname,
)

BLOCK = ReportBlock(0xCAFE, 26, -3, 70_123, 88, lsr=0x1234_5678, dlsr=65536)


def test_sender_and_receiver_reports_round_trip() -> None:
    sr = Report(0xBEEF, SenderInfo(ntp_from_unix(1.7e9), 160_000, 1000, 160_000), (BLOCK,))
    rr = Report(0xBEEF, None, (BLOCK, BLOCK))
    for report in (sr, rr):
        assert parse_compound(compound(report, "abc@voipalert")) == [report]


def test_the_first_packet_says_what_it_is() -> None:
    data = compound(Report(1, None), "x")
    assert data[1] == 201 and data[0] == 0x80  # RR, version 2, no blocks
    data = compound(Report(1, SenderInfo(0, 0, 0, 0), (BLOCK,)), "x")
    assert data[1] == 200 and data[0] == 0x81


def test_ntp_time() -> None:
    ntp = ntp_from_unix(0.5)
    assert ntp >> 32 == 2_208_988_800 and ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle(ntp) == ((2_208_988_800 & 0xFFFF) << 16) | 0x8000


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x80\xc9\x00", "truncated"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x01", "version"),
        (sdes_cname(1, "x"), "must start with SR or RR"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "runs past"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "block count"),
        # padding on the first of two packets
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x04" + compound(Report(1, None), "x"), "padding"),
        (b"\xa0\xc9\x00\x01\x00\x00\x00\x09", "padding"),
    ],
)
def test_malformed_compounds_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        parse_compound(data)


def test_trailing_padding_on_the_last_packet_is_accepted() -> None:
    rr = compound(Report(7, None), "x")
    padded = bytearray(rr + b"\x00\x00\x00\x04")
    # The SDES packet (the last) grows by one word and says it is padded.
    sdes_at = 8
    padded[sdes_at] |= 0x20
    words = struct.unpack_from("!H", padded, sdes_at + 2)[0] + 1
    struct.pack_into("!H", padded, sdes_at + 2, words)
    assert parse_compound(bytes(padded)) == [Report(7, None)]


def test_the_meter_reports_interval_loss_and_measures_the_round_trip() -> None:
    meter = CallQualityMeter(0xAAAA)
    first = meter.report(
        now=10.0, wall=1000.0, sent_packets=50, sent_octets=8000, rtp_timestamp=8000,
        source=SourceCounts(0xBBBB, 99, expected=100, received=90, jitter=40.0),
    )  # fmt: skip
    assert first.sender is not None  # we sent RTP: an SR
    (block,) = first.blocks
    assert (block.ssrc, block.cumulative_lost, block.fraction_lost) == (0xBBBB, 10, 25)
    # The next interval: 100 more expected, 100 more received: no new loss.
    second = meter.report(
        now=15.0, wall=1005.0, sent_packets=50, sent_octets=8000, rtp_timestamp=8000,
        source=SourceCounts(0xBBBB, 199, expected=200, received=190, jitter=40.0),
    )  # fmt: skip
    assert second.sender is None  # nothing sent since: an RR
    assert second.blocks[0].fraction_lost == 0
    # Their RR about us: our SR's middle NTP as LSR, held 0.25 s, arriving 0.3 s after we
    # sent it: 50 ms round trip.
    lsr = ntp_middle(ntp_from_unix(1000.0))
    theirs = Report(0xBBBB, None, (ReportBlock(0xAAAA, 64, 3, 1, 160, lsr, 65536 // 4),))
    meter.received([theirs], now=10.3, wall=1000.3)
    quality = meter.summary(expected=200, lost=10, jitter=40.0)
    assert quality.rtt_ms == pytest.approx(50.0, abs=0.1)
    assert quality.loss_percent == 5.0
    assert quality.far_loss_percent == 25.0
    assert quality.jitter_ms == 5.0
    assert quality.reports_received == 1 and quality.reports_sent == 2


def test_a_block_about_another_source_or_an_absurd_round_trip_is_ignored() -> None:
    meter = CallQualityMeter(1)
    meter.received([Report(2, None, (ReportBlock(3, 255, 9, 0, 0),))], now=1.0, wall=1.0)
    forged = ReportBlock(1, 0, 0, 0, 0, lsr=ntp_middle(ntp_from_unix(5000.0)), dlsr=0)
    meter.received([Report(2, None, (forged,))], now=2.0, wall=1.0)  # "sent" in the future
    quality = meter.summary(0, 0, 0.0)
    assert quality.rtt_ms is None
    assert quality.far_loss_percent == 0.0  # the forged block is about us; its loss is 0


def test_mos_falls_with_loss_and_delay() -> None:
    clean = mos_from_r(r_factor(0.0, 100.0))
    assert 4.3 < clean < 4.45
    assert mos_from_r(r_factor(2.0, 100.0)) < clean
    assert mos_from_r(r_factor(10.0, 100.0)) < mos_from_r(r_factor(2.0, 100.0))
    assert mos_from_r(r_factor(0.0, 400.0)) < mos_from_r(r_factor(0.0, 150.0))
    assert mos_from_r(-5) == 1.0 and mos_from_r(120) == 4.5
