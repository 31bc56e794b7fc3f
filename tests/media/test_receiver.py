from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from voipalert.codec import Codec
from voipalert.media import g711
from voipalert.media.receiver import (
    AudioFrame,
    DigitReceived,
    DropReason,
    PacketDropped,
    ReceiveEvent,
    ReceiverConfig,
    RtpReceiver,
    SourceLatched,
)
from voipalert.media.rfc4733 import TelephoneEvent
from voipalert.media.rtp import RtpPacket

REMOTE = ("192.0.2.10", 40000)
NAT = ("198.51.100.7", 61234)
SSRC = 0xCAFE
TONE = (np.sin(np.arange(160) * 0.3) * 8000).astype(np.int16)


BASE = ReceiverConfig(codec=Codec.PCMU, payload_type=0, telephone_event_pt=101, remote=REMOTE)


def _config(**changes: Any) -> ReceiverConfig:
    return dataclasses.replace(BASE, **changes)


def _audio(seq: int, ts: int | None = None, ssrc: int = SSRC, pt: int = 0) -> bytes:
    payload = g711.encode(Codec.PCMU, TONE)
    ts = seq * 160 if ts is None else ts
    return RtpPacket(pt, seq % 65536, ts % (1 << 32), ssrc, payload).serialize()


def _event(seq: int, ts: int, event: int = 1, end: bool = False, duration: int = 160) -> bytes:
    payload = TelephoneEvent(event, end, 10, duration).serialize()
    return RtpPacket(101, seq, ts, SSRC, payload).serialize()


def test_audio_from_the_signalled_address_is_decoded() -> None:
    rx = RtpReceiver(_config())
    [frame] = rx.receive(_audio(10), REMOTE, 0.0)
    assert isinstance(frame, AudioFrame)
    np.testing.assert_array_equal(frame.pcm, g711.round_trip(Codec.PCMU, TONE))
    assert (frame.ssrc, frame.sequence_number, frame.lost_before) == (SSRC, 10, 0)
    assert rx.source == REMOTE
    assert rx.stats.packets == 1 and rx.stats.octets == 160


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00" * 11, b"\x40" + b"\x00" * 20, bytes.fromhex("a0001234000000010000000100000009")],
)
def test_garbage_is_dropped_and_counted(garbage: bytes) -> None:
    rx = RtpReceiver(_config())
    assert rx.receive(garbage, REMOTE, 0.0) == [PacketDropped(DropReason.MALFORMED)]
    assert rx.stats.dropped(DropReason.MALFORMED) == 1
    assert rx.source is None


def test_unknown_payload_types_are_dropped_and_counted() -> None:
    rx = RtpReceiver(_config())
    for pt in (8, 13, 96, 72):
        assert rx.receive(_audio(1, pt=pt), REMOTE, 0.0) == [
            PacketDropped(DropReason.UNKNOWN_PAYLOAD_TYPE)
        ]
    assert rx.stats.dropped(DropReason.UNKNOWN_PAYLOAD_TYPE) == 4
    no_events = RtpReceiver(_config(telephone_event_pt=None))
    assert no_events.receive(_event(1, 0), REMOTE, 0.0) == [
        PacketDropped(DropReason.UNKNOWN_PAYLOAD_TYPE)
    ]


def test_once_the_source_is_fixed_other_addresses_are_refused() -> None:
    rx = RtpReceiver(_config())
    rx.receive(_audio(1), REMOTE, 0.0)
    for seq in (2, 3, 4):
        assert rx.receive(_audio(seq), NAT, 0.0) == [PacketDropped(DropReason.WRONG_SOURCE)]
    # An injected key press from elsewhere never reaches the collector.
    assert rx.receive(_event(5, 800), NAT, 0.0) == [PacketDropped(DropReason.WRONG_SOURCE)]
    assert rx.stats.dropped(DropReason.WRONG_SOURCE) == 4


NAT_SAME_HOST = (REMOTE[0], 50002)  # the far end's NAT kept its host, changed its port
STRANGER = ("203.0.113.66", 50000)


def _stream(
    rx: RtpReceiver, src: tuple[str, int], seqs: range, t0: float = 0.0, ssrc: int = SSRC
) -> list[ReceiveEvent]:
    """A 20 ms paced audio stream from ``src``; every event the receiver returned."""
    out: list[ReceiveEvent] = []
    for i, seq in enumerate(seqs):
        out += rx.receive(_audio(seq, ssrc=ssrc), src, t0 + i * 0.02)
    return out


def test_latching_to_a_nat_port_needs_a_probation_of_packets_and_time() -> None:
    rx = RtpReceiver(_config())
    out = _stream(rx, NAT_SAME_HOST, range(100, 109))  # 9 packets: still on probation
    assert out == [PacketDropped(DropReason.PROBATION)] * 9
    out = rx.receive(_audio(109), NAT_SAME_HOST, 0.18)
    assert out[0] == SourceLatched(NAT_SAME_HOST)
    assert isinstance(out[1], AudioFrame)
    assert rx.source == NAT_SAME_HOST
    # ... and only once: the signalled address is now the wrong source.
    assert rx.receive(_audio(102), REMOTE, 0.2) == [PacketDropped(DropReason.WRONG_SOURCE)]


def test_a_burst_does_not_shorten_probation() -> None:
    rx = RtpReceiver(_config())
    for seq in range(50):  # 50 packets in sequence, all within 49 ms
        assert rx.receive(_audio(seq), NAT_SAME_HOST, seq * 0.001) == [
            PacketDropped(DropReason.PROBATION)
        ]
    assert isinstance(rx.receive(_audio(50), NAT_SAME_HOST, 0.2)[0], SourceLatched)


def test_another_host_latches_only_when_it_is_a_latch_host() -> None:
    rx = RtpReceiver(_config())
    out = _stream(rx, NAT, range(100, 130))
    assert out == [PacketDropped(DropReason.WRONG_SOURCE)] * 30
    assert rx.source is None
    behind_nat = RtpReceiver(_config(latch_hosts=frozenset({NAT[0]})))
    out = _stream(behind_nat, NAT, range(100, 110))
    assert SourceLatched(NAT) in out and behind_nat.source == NAT


def test_the_sdp_address_wins_over_a_candidate_on_probation() -> None:
    rx = RtpReceiver(_config())
    _stream(rx, NAT_SAME_HOST, range(100, 105))
    assert isinstance(rx.receive(_audio(7), REMOTE, 0.1)[0], AudioFrame)
    out = _stream(rx, NAT_SAME_HOST, range(105, 140), t0=0.12)
    assert out == [PacketDropped(DropReason.WRONG_SOURCE)] * 35
    assert rx.source == REMOTE


def test_latching_refuses_events_odd_lengths_and_broken_sequences() -> None:
    rx = RtpReceiver(_config())
    src = NAT_SAME_HOST
    t = 0.0
    for seq in range(9):
        rx.receive(_audio(seq), src, t)
        t += 0.02
    # A telephone-event in the middle restarts probation: nothing in progress at latching.
    assert rx.receive(_event(9, 0), src, t) == [PacketDropped(DropReason.PROBATION)]
    assert rx.receive(_audio(10), src, t + 0.02) == [PacketDropped(DropReason.PROBATION)]
    odd = RtpPacket(0, 11, 320, SSRC, b"\xff" * 77).serialize()
    assert rx.receive(odd, src, t + 0.04) == [PacketDropped(DropReason.PROBATION)]
    out = _stream(rx, src, range(20, 40, 2), t0=t + 0.06)  # gaps in the sequence
    assert out == [PacketDropped(DropReason.PROBATION)] * 10
    out = _stream(rx, src, range(40, 45), t0=t + 0.3)
    out += _stream(rx, src, range(45, 50), t0=t + 0.4, ssrc=7)  # another SSRC
    assert out == [PacketDropped(DropReason.PROBATION)] * 10
    assert rx.source is None
    out = _stream(rx, src, range(50, 56), t0=t + 0.5, ssrc=7)
    assert SourceLatched(src) in out


def test_two_streams_claiming_the_call_means_nobody_latches() -> None:
    rx = RtpReceiver(_config())
    other = (REMOTE[0], 50004)
    out: list[ReceiveEvent] = []
    for i in range(40):  # interleaved: the real far end behind NAT and a forger
        out += rx.receive(_audio(100 + i), NAT_SAME_HOST, i * 0.02)
        out += rx.receive(_audio(900 + i, ssrc=1), other, i * 0.02 + 0.01)
    assert not any(isinstance(e, SourceLatched) for e in out)
    assert rx.stats.dropped(DropReason.CONTESTED) > 0
    # Once one of them has gone quiet for a probation window the other may latch.
    out = _stream(rx, NAT_SAME_HOST, range(140, 160), t0=0.8)
    assert SourceLatched(NAT_SAME_HOST) in out


def test_without_latching_only_the_signalled_address_counts() -> None:
    rx = RtpReceiver(_config(latching=False))
    out = _stream(rx, NAT_SAME_HOST, range(40))
    assert out == [PacketDropped(DropReason.WRONG_SOURCE)] * 40


def test_unknown_remote_latches_only_from_a_latch_host() -> None:
    rx = RtpReceiver(_config(remote=None))
    assert SourceLatched(NAT) not in _stream(rx, NAT, range(20))
    rx = RtpReceiver(_config(remote=None, latch_hosts=frozenset({NAT[0]})))
    assert SourceLatched(NAT) in _stream(rx, NAT, range(20))


def test_events_count_only_from_the_source_and_its_ssrc() -> None:
    rx = RtpReceiver(_config())
    rx.receive(_audio(1), REMOTE, 0.0)
    forged = RtpPacket(101, 2, 320, 0xBAD, TelephoneEvent(1, True, 10, 480).serialize())
    assert rx.receive(forged.serialize(), REMOTE, 0.02) == [PacketDropped(DropReason.WRONG_SSRC)]
    assert rx.receive(_event(3, 320, end=True), STRANGER, 0.04) == [
        PacketDropped(DropReason.WRONG_SOURCE)
    ]
    assert rx.receive(_event(4, 320, end=True), NAT_SAME_HOST, 0.06) == [
        PacketDropped(DropReason.WRONG_SOURCE)
    ]
    out = rx.receive(_event(5, 640, end=True), REMOTE, 0.08)
    assert [e.digit.char for e in out if isinstance(e, DigitReceived)] == ["1"]
    assert rx.stats.dropped(DropReason.WRONG_SSRC) == 1
    assert rx.stats.dropped(DropReason.WRONG_SOURCE) == 2


def test_set_remote_starts_over() -> None:
    rx = RtpReceiver(_config())
    rx.receive(_audio(1), REMOTE, 0.0)
    rx.set_remote(NAT)
    assert isinstance(rx.receive(_audio(2), NAT, 0.0)[0], AudioFrame)
    assert rx.source == NAT


def test_rfc4733_digits_are_reported_once() -> None:
    rx = RtpReceiver(_config())
    rx.receive(_audio(1), REMOTE, 0.0)
    out = []
    for i, (dur, end) in enumerate([(160, False), (320, False), (480, True), (480, True)]):
        out += rx.receive(_event(2 + i, 320, event=9, end=end, duration=dur), REMOTE, 0.0)
    assert [e.digit.char for e in out if isinstance(e, DigitReceived)] == ["9"]


def test_bad_event_payloads_are_dropped_and_counted() -> None:
    rx = RtpReceiver(_config())
    short = RtpPacket(101, 1, 0, SSRC, b"\x01\x02").serialize()
    big = RtpPacket(101, 2, 0, SSRC, bytes([40, 0, 0, 160])).serialize()
    assert rx.receive(short, REMOTE, 0.0) == [PacketDropped(DropReason.BAD_EVENT)]
    assert rx.receive(big, REMOTE, 0.0) == [PacketDropped(DropReason.BAD_EVENT)]
    assert rx.stats.dropped(DropReason.BAD_EVENT) == 2


def test_loss_is_counted_and_late_packets_are_not_replayed() -> None:
    rx = RtpReceiver(_config())
    frames = []
    for seq in (65530, 65531, 65534, 65535, 2, 65533, 3):  # wraps; 65532, 0, 1 lost
        frames += rx.receive(_audio(seq), REMOTE, 0.0)
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    assert [f.sequence_number for f in audio] == [65530, 65531, 65534, 65535, 2, 3]
    assert [f.lost_before for f in audio] == [0, 0, 2, 0, 2, 0]
    assert frames.count(PacketDropped(DropReason.LATE)) == 1
    assert rx.stats.expected == 10
    assert rx.stats.lost == 10 - 7  # 65533 arrived late: received, not lost


def test_jitter_follows_rfc_3550_a8() -> None:
    rx = RtpReceiver(_config())
    # Packets 20 ms apart in timestamp; arrivals alternate 15 and 25 ms apart.
    t = 0.0
    for seq in range(200):
        rx.receive(_audio(seq), REMOTE, t)
        t += 0.015 if seq % 2 == 0 else 0.025
    # |D| is always 5 ms = 40 units, so J converges to 40 units = 5 ms.
    assert rx.stats.jitter == pytest.approx(40, rel=0.01)
    assert rx.stats.jitter_ms == pytest.approx(5, rel=0.01)
    steady = RtpReceiver(_config())
    for seq in range(50):
        steady.receive(_audio(seq), REMOTE, seq * 0.02)
    assert steady.stats.jitter == pytest.approx(0, abs=1e-6)


def test_an_ssrc_change_resets_the_sequence_state() -> None:
    rx = RtpReceiver(_config())
    for seq in (1, 2, 3):
        rx.receive(_audio(seq), REMOTE, 0.0)
    events = rx.receive(_audio(50000, ssrc=0xBEEF), REMOTE, 0.0)
    assert isinstance(events[0], AudioFrame) and events[0].lost_before == 0
    assert isinstance(rx.receive(_audio(50001, ssrc=0xBEEF), REMOTE, 0.0)[0], AudioFrame)
    assert rx.stats.ssrc_changes == 1
    assert rx.stats.expected == 5 and rx.stats.lost == 0


def test_a_sender_restart_resynchronises_after_two_packets() -> None:
    rx = RtpReceiver(_config())
    rx.receive(_audio(1000), REMOTE, 0.0)
    assert rx.receive(_audio(40000), REMOTE, 0.0) == [PacketDropped(DropReason.LATE)]
    assert isinstance(rx.receive(_audio(40001), REMOTE, 0.0)[0], AudioFrame)
    assert isinstance(rx.receive(_audio(40002), REMOTE, 0.0)[0], AudioFrame)
