from __future__ import annotations

import random

import pytest

from voipalert.media.errors import LocalProtocolError, RemoteProtocolError
from voipalert.media.rfc4733 import (
    EventDigit,
    EventReceiver,
    EventSender,
    TelephoneEvent,
    event_code,
)

SSRC = 0x1234


def _ev(event: int, duration: int, *, end: bool = False) -> bytes:
    return TelephoneEvent(event, end, 10, duration).serialize()


def _press(event: int, ts: int, length: int = 1440) -> list[tuple[int, bytes]]:
    """What Asterisk/baresip send: duration +160 per 20 ms, then the end packet 3 times."""
    packets = [(ts, _ev(event, d)) for d in range(160, length, 160)]
    packets += [(ts, _ev(event, length, end=True))] * 3
    return packets


def _run(rx: EventReceiver, packets: list[tuple[int, bytes]]) -> list[str]:
    digits = [rx.receive(SSRC, ts, payload) for ts, payload in packets]
    return [d.char for d in digits if d is not None]


def test_payload_round_trip_and_fields() -> None:
    raw = bytes.fromhex("018a05a0")
    ev = TelephoneEvent.parse(raw)
    assert ev == TelephoneEvent(event=1, end=True, volume=10, duration=1440)
    assert ev.char == "1"
    assert ev.serialize() == raw
    assert TelephoneEvent.parse(bytes.fromhex("0b4a0000")).end is False  # R bit ignored
    assert TelephoneEvent(16, False, 0, 0).char is None


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x0a\x00"])
def test_short_payloads_are_malformed(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="bytes"):
        EventReceiver().receive(SSRC, 0, payload)


@pytest.mark.parametrize("code", [17, 100, 255])
def test_events_above_16_are_malformed(code: int) -> None:
    with pytest.raises(RemoteProtocolError, match="not a DTMF event"):
        EventReceiver().receive(SSRC, 0, bytes([code, 0, 0, 160]))


def test_one_digit_per_press_reported_on_the_first_packet() -> None:
    rx = EventReceiver()
    packets = _press(1, 1000)
    first = rx.receive(SSRC, *packets[0])
    assert first == EventDigit("1", SSRC, 1000)
    assert _run(rx, packets[1:]) == []


def test_lost_start_packets_and_missing_marker() -> None:
    # Only the three end packets arrive (and no packet ever had the marker).
    assert _run(EventReceiver(), _press(5, 7000)[-3:]) == ["5"]


def test_a_repeated_key_has_a_new_timestamp() -> None:
    assert _run(EventReceiver(), _press(1, 1000) + _press(1, 4000)) == ["1", "1"]


def test_out_of_order_and_duplicated_packets() -> None:
    packets = _press(3, 100) + _press(9, 3000)
    shuffled = packets * 2
    random.Random(5).shuffle(shuffled)
    digits = _run(EventReceiver(), shuffled)
    assert sorted(digits) == ["3", "9"]


def test_late_end_packets_of_the_previous_press_are_absorbed() -> None:
    a, b = _press(2, 100), _press(2, 3000)
    assert _run(EventReceiver(), a[:2] + b[:1] + a[2:] + b[1:]) == ["2", "2"]


def test_long_event_in_segments_counts_once() -> None:
    # RFC 4733 §2.5.1.3: 0xFFFF units, then a new segment at ts + 0xFFFF, no E in between.
    seg1 = [(500, _ev(0, d)) for d in (160, 32000, 0xFFFF)]
    seg2 = [(500 + 0xFFFF, _ev(0, d)) for d in (160, 8000)]
    seg2 += [(500 + 0xFFFF, _ev(0, 9000, end=True))] * 3
    assert _run(EventReceiver(), seg1 + seg2) == ["0"]


def test_segment_continuation_found_even_if_the_last_packets_were_lost() -> None:
    seg1 = [(500, _ev(0, d)) for d in (160, 32000)]
    seg2 = [(500 + 0xFFFF, _ev(0, 160))]
    assert _run(EventReceiver(), seg1 + seg2) == ["0"]


def test_timestamp_wrap_between_presses() -> None:
    assert _run(EventReceiver(), _press(4, 0xFFFFFF00) + _press(4, 0x500)) == ["4", "4"]


def test_segment_rule_across_the_timestamp_wrap() -> None:
    start = 0xFFFFFF00
    seg1 = [(start, _ev(7, 0xFFFF))]
    seg2 = [((start + 0xFFFF) % (1 << 32), _ev(7, 160, end=True))]
    assert _run(EventReceiver(), seg1 + seg2) == ["7"]


def test_flash_is_not_a_digit() -> None:
    assert _run(EventReceiver(), _press(16, 100)) == []


def test_sources_are_independent_and_forget_resets_one() -> None:
    rx = EventReceiver()
    assert rx.receive(1, 100, _ev(1, 160)) is not None
    assert rx.receive(2, 100, _ev(1, 160)) is not None
    assert rx.receive(1, 100, _ev(1, 320)) is None
    rx.forget(1)
    assert rx.receive(1, 100, _ev(1, 480)) is not None
    assert rx.receive(2, 100, _ev(1, 480)) is None


def test_memory_is_bounded() -> None:
    rx = EventReceiver(memory=4)
    for i in range(10):
        rx.receive(SSRC, 1000 * i, _ev(1, 160))
    assert len(rx._seen) == 4


def test_event_code_mapping() -> None:
    assert [event_code(c) for c in "0123456789*#ABCD"] == list(range(16))
    assert event_code("a") == 12
    with pytest.raises(LocalProtocolError):
        event_code("E")
    with pytest.raises(LocalProtocolError):
        TelephoneEvent(17, False, 0, 0).serialize()


def test_event_sender_grows_the_duration_then_ends_three_times() -> None:
    sender = EventSender(event_code("#"), slots=5)
    blocks = []
    while not sender.done:
        blocks.append(sender.next_block(0, 160))
    assert [(b.first, b.end, b.duration) for b in blocks] == [
        (True, False, 160),
        (False, False, 320),
        (False, False, 480),
        (False, False, 640),
        (False, True, 800),
        (False, True, 800),
        (False, True, 800),
    ]


def test_event_sender_counts_skipped_slots_as_time() -> None:
    sender = EventSender(1, slots=6)
    assert sender.next_block(0, 160).duration == 160
    assert sender.next_block(2, 160).duration == 640
    assert sender.next_block(0, 160).duration == 800
    assert sender.next_block(0, 160).end is True


def test_event_sender_round_trips_through_the_receiver() -> None:
    sender = EventSender(9, slots=3)
    rx = EventReceiver()
    digits = []
    while not sender.done:
        b = sender.next_block(0, 160)
        payload = TelephoneEvent(9, b.end, 10, b.duration).serialize()
        digits.append(rx.receive(SSRC, 777, payload))
    assert [d.char for d in digits if d is not None] == ["9"]


def test_event_sender_refuses_bad_arguments() -> None:
    with pytest.raises(LocalProtocolError):
        EventSender(17, 3)
    with pytest.raises(LocalProtocolError):
        EventSender(1, 0)
