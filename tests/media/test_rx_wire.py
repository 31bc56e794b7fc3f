"""The messages between the loop and an analysis worker (media.rx_wire), and the analysis
they carry (media.rx_analysis): round trips and malformed input."""

from __future__ import annotations

import numpy as np
import pytest

from tests.media.dtmf_signals import dtmf, silence, sine, to_pcm
from voipalert.codec import Codec
from voipalert.media.rx_analysis import (
    AnalysisEvent,
    AnalysisSpec,
    BeepHeard,
    CallAnalysis,
    EchoSettled,
    KeyHeard,
)
from voipalert.media.rx_wire import (
    BeepsSwitched,
    Closed,
    Heard,
    Opened,
    Sent,
    beeps_record,
    close_record,
    decode_events,
    decode_records,
    encode_event,
    heard_record,
    open_record,
    sent_record,
)


def test_records_round_trip() -> None:
    spec = AnalysisSpec(Codec.PCMA, beeps=True)
    payload = bytes(range(160))  # G.711 bytes as they came off the wire
    message = b"".join(
        (
            open_record(7, spec),
            sent_record(7, 12, 3.25, b"\xff" * 160),
            sent_record(7, 13, 3.27, None),
            heard_record(7, 0xDEADBEEF, 0xFFFFFF00, 3.3, payload),
            beeps_record(7, True),
            close_record(7),
        )
    )
    records = list(decode_records(message))
    assert records[0] == Opened(7, spec)
    assert records[1] == Sent(7, 12, 3.25, b"\xff" * 160)
    assert records[2] == Sent(7, 13, 3.27, None)
    heard = records[3]
    assert isinstance(heard, Heard)
    assert (heard.call, heard.ssrc, heard.timestamp, heard.arrived) == (
        7,
        0xDEADBEEF,
        0xFFFFFF00,
        3.3,
    )
    assert heard.payload == payload
    assert records[4:] == [BeepsSwitched(7, True), Closed(7)]


@pytest.mark.parametrize(
    "message",
    [
        b"\x05\x00",  # a header cut short
        heard_record(1, 1, 1, 0.0, bytes(160))[:-1],  # a body cut short
        b"\x09\x01\x00\x00\x00\x00\x00",  # an unknown kind
        b"\x03\x01\x00\x00\x00\x02\x00\x01\x01",  # BEEPS with two bytes
        b"\x02\x01\x00\x00\x00\x01\x00\x00",  # CLOSE with a body
        b"\x05\x01\x00\x00\x00\x10\x00" + bytes(16),  # HEARD without a single byte of audio
    ],
)
def test_malformed_records_raise(message: bytes) -> None:
    with pytest.raises(ValueError):
        list(decode_records(message))


def test_events_round_trip_and_malformed_ones_raise() -> None:
    events: list[AnalysisEvent] = [
        KeyHeard("#"),
        BeepHeard(1000.5, 4321),
        EchoSettled(640),
        EchoSettled(None),
    ]
    data = b"".join(encode_event(3, e) for e in events)
    assert list(decode_events(data)) == [(3, e) for e in events]
    with pytest.raises(ValueError):
        list(decode_events(data[:-1]))
    with pytest.raises(ValueError):
        list(decode_events(b"\x09" + data[1 : len(data) // 4]))


def test_the_analysis_hears_a_key_and_a_beep_and_says_the_line_is_echo_free() -> None:
    analysis = CallAnalysis(AnalysisSpec(Codec.PCMU, beeps=True))
    analysis.listen_for_beeps(True)
    audio = to_pcm(
        np.concatenate(
            (silence(0.1), dtmf("5", 0.1), silence(0.2), sine(1000.0, 2400, -15.0), silence(0.1))
        )
    )
    ours = to_pcm(np.random.default_rng(1).normal(0, 3000, 8000 * 12))
    found = []
    for n in range(0, 8000 * 12 - 159, 160):
        analysis.sent(
            n // 160, n / 8000, bytes(np.clip(ours[n : n + 160] // 256, 0, 255).astype(np.uint8))
        )
        frame = audio[n : n + 160] if n + 160 <= audio.size else np.zeros(160, np.int16)
        found += analysis.received(frame, 1, n, n / 8000 + 0.02)
    assert KeyHeard("5") in found
    assert any(isinstance(e, BeepHeard) and abs(e.hz - 1000) < 10 for e in found)
    assert EchoSettled(None) in found and not analysis.wants_sent
