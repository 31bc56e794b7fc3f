from __future__ import annotations

import itertools
import random

import pytest

from voipalert.media.errors import LocalProtocolError
from voipalert.media.packetizer import Packetizer
from voipalert.media.rtp import RtpPacket, seq_diff, ts_diff


def _packets(p: Packetizer, n: int) -> list[RtpPacket]:
    return [RtpPacket.parse(p.build(b"\xff" * 160)) for _ in range(n)]


def test_initial_values_come_from_the_injected_rng() -> None:
    a = Packetizer(0, rng=random.Random(7))
    b = Packetizer(0, rng=random.Random(7))
    c = Packetizer(0, rng=random.Random(8))
    assert (a.ssrc, a.next_sequence_number, a.next_timestamp) == (
        b.ssrc,
        b.next_sequence_number,
        b.next_timestamp,
    )
    assert (a.ssrc, a.next_sequence_number, a.next_timestamp) != (
        c.ssrc,
        c.next_sequence_number,
        c.next_timestamp,
    )


def test_frames_advance_seq_by_one_and_timestamp_by_160() -> None:
    p = Packetizer(8, rng=random.Random(1))
    packets = _packets(p, 5)
    assert [pk.marker for pk in packets] == [True, False, False, False, False]
    for before, after in itertools.pairwise(packets):
        assert seq_diff(after.sequence_number, before.sequence_number) == 1
        assert ts_diff(after.timestamp, before.timestamp) == 160
    assert {pk.ssrc for pk in packets} == {p.ssrc}
    assert {pk.payload_type for pk in packets} == {8}
    assert p.packets_sent == 5 and p.octets_sent == 800


class _Fixed(random.Random):
    """Initial values just below the wrap: getrandbits returns 2**k - 2."""

    def getrandbits(self, k: int, /) -> int:
        return (1 << k) - 2


def test_sequence_and_timestamp_wrap_around() -> None:
    p = Packetizer(0, rng=_Fixed())
    packets = _packets(p, 4)
    assert [pk.sequence_number for pk in packets] == [0xFFFE, 0xFFFF, 0, 1]
    assert [pk.timestamp for pk in packets] == [
        0xFFFFFFFE,
        (0xFFFFFFFE + 160) % (1 << 32),
        (0xFFFFFFFE + 320) % (1 << 32),
        (0xFFFFFFFE + 480) % (1 << 32),
    ]


def test_skipped_slots_advance_time_not_sequence_and_mark_the_next_packet() -> None:
    p = Packetizer(0, rng=random.Random(3))
    first = _packets(p, 2)[-1]
    p.skip(3)
    after = RtpPacket.parse(p.build(b"\xff" * 160))
    assert seq_diff(after.sequence_number, first.sequence_number) == 1
    assert ts_diff(after.timestamp, first.timestamp) == 4 * 160
    assert after.marker is True
    assert RtpPacket.parse(p.build(b"\xff" * 160)).marker is False
    p.skip(0)
    assert RtpPacket.parse(p.build(b"\xff" * 160)).marker is False


def test_talkspurt_start_sets_the_marker_once() -> None:
    p = Packetizer(0, rng=random.Random(3))
    _packets(p, 2)
    p.start_talkspurt()
    assert [pk.marker for pk in _packets(p, 2)] == [True, False]


def test_event_packets_share_seq_space_and_keep_their_timestamp() -> None:
    p = Packetizer(0, rng=random.Random(4))
    _packets(p, 1)
    start = p.next_timestamp
    ev = [
        RtpPacket.parse(p.build(b"\x01\x0a\x00\xa0", payload_type=101, timestamp=start, marker=m))
        for m in (True, False, False)
    ]
    assert [e.timestamp for e in ev] == [start] * 3
    assert [e.marker for e in ev] == [True, False, False]
    audio = RtpPacket.parse(p.build(b"\xff" * 160))
    assert ts_diff(audio.timestamp, start) == 3 * 160
    assert seq_diff(audio.sequence_number, ev[-1].sequence_number) == 1
    assert audio.marker is False


@pytest.mark.parametrize("pt", [-1, 128])
def test_payload_type_must_fit_seven_bits(pt: int) -> None:
    with pytest.raises(LocalProtocolError):
        Packetizer(pt, rng=random.Random(1))


def test_negative_skip_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        Packetizer(0, rng=random.Random(1)).skip(-1)
