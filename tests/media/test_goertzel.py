"""The in-band detector against the bar of docs/architecture.md §13, line by line.

Accept: every key, ±1.5 % frequency offset on each tone, twist -8..+4 dB, tones of 40 ms,
per-tone level down to -30 dBm0, white noise at 15 dB SNR, after a G.711 round trip.
Reject: ±3.5 % offsets, tones under 20 ms, single tones. Sequences with 40 ms pauses are
separated. Each test checks every case and lists the ones that fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray

from tests.media.dtmf_signals import (
    FS,
    add_noise,
    dtmf,
    silence,
    sine,
    through_g711,
    tone_power,
)
from voipalert.codec import Codec
from voipalert.media.dtmf_spectrum import (
    COLUMN_HZ,
    ROW_HZ,
    ZERO_DBM0_PEAK,
    DetectorConfig,
    dbm0_to_power,
    keypad_index,
)
from voipalert.media.goertzel import DtmfDetector, ToneEnded, ToneEvent, ToneStarted

KEYS = "0123456789*#ABCD"
CODECS: tuple[Codec, Codec] = (Codec.PCMU, Codec.PCMA)
TWISTS = (-8.0, -4.0, 0.0, 4.0)
WEAKER_TONE_DBM0 = (-30.0, -20.0, -10.0)
OFFSETS = (-0.015, 0.015)


def _events(pcm: NDArray[np.int16], chunk: int = 160) -> list[ToneEvent]:
    detector = DtmfDetector()
    events: list[ToneEvent] = []
    for i in range(0, pcm.size, chunk):
        events += detector.feed(pcm[i : i + chunk])
    return events + detector.flush()


def _keys(pcm: NDArray[np.int16]) -> str:
    return "".join(e.char for e in _events(pcm) if isinstance(e, ToneStarted))


def _row_level(weaker: float, twist: float) -> float:
    """Row tone level such that the weaker of the two tones is at ``weaker`` dBm0."""
    return weaker if twist >= 0 else weaker - twist


def _lone_tone(
    key: str,
    rng: np.random.Generator,
    *,
    seconds: float = 0.040,
    row_dbm0: float = -10.0,
    twist: float = 0.0,
    row_offset: float = 0.0,
    col_offset: float = 0.0,
    snr_db: float | None = None,
    codec: Codec = Codec.PCMU,
) -> NDArray[np.int16]:
    """A tone at a random sample offset between silences, noise over everything."""
    tone = dtmf(
        key,
        seconds,
        row_dbm0=row_dbm0,
        twist_db=twist,
        row_offset=row_offset,
        col_offset=col_offset,
        rng=rng,
    )
    lead = np.zeros(400 + int(rng.integers(0, 160)))
    signal = np.concatenate((lead, tone, silence(0.06)))
    if snr_db is not None:
        signal = add_noise(signal, snr_db, tone_power(row_dbm0, twist), rng)
    return through_g711(signal, codec)


def test_zero_dbm0_is_three_point_17_db_below_mu_law_full_scale() -> None:
    # ITU-T G.711: the μ-law full-scale sine (peak 8159 of 8192 on 14 bits) is +3.17 dBm0.
    assert ZERO_DBM0_PEAK == pytest.approx(22657, abs=1)
    assert np.abs(sine(1000, FS, 3.17)).max() == pytest.approx(8159 * 4, rel=1e-4)
    assert dbm0_to_power(-30) == pytest.approx(ZERO_DBM0_PEAK**2 / 2 / 1000)


@pytest.mark.parametrize("key", KEYS)
def test_accepts_every_key_across_the_grid(key: str) -> None:
    rng = np.random.default_rng(ord(key))
    failures = []
    grid = itertools.product(TWISTS, WEAKER_TONE_DBM0, OFFSETS, OFFSETS, CODECS, (None, 15.0))
    for twist, weaker, row_off, col_off, codec, snr in grid:
        pcm = _lone_tone(
            key,
            rng,
            row_dbm0=_row_level(weaker, twist),
            twist=twist,
            row_offset=row_off,
            col_offset=col_off,
            snr_db=snr,
            codec=codec,
        )
        got = _keys(pcm)
        if got != key:
            failures.append((twist, weaker, row_off, col_off, codec, snr, got))
    assert failures == []


@pytest.mark.parametrize("codec", CODECS)
def test_accepts_at_the_worst_corner_every_time(codec: Codec) -> None:
    """-30 dBm0 weaker tone, 8 dB of reverse or 4 of forward twist, ±1.5 %, 15 dB SNR,
    40 ms at a random alignment: 400 fresh noise realisations."""
    rng = np.random.default_rng(15 if codec == Codec.PCMU else 16)
    failures = []
    for i in range(400):
        key = KEYS[i % 16]
        twist = -8.0 if i % 3 else 4.0
        pcm = _lone_tone(
            key,
            rng,
            row_dbm0=_row_level(-30.0, twist),
            twist=twist,
            row_offset=float(rng.choice(OFFSETS)),
            col_offset=float(rng.choice(OFFSETS)),
            snr_db=15.0,
            codec=codec,
        )
        if _keys(pcm) != key:
            failures.append(i)
    assert failures == []


@pytest.mark.parametrize("key", KEYS)
def test_rejects_offsets_of_3_5_percent_and_more(key: str) -> None:
    rng = np.random.default_rng(100 + ord(key))
    failures = []
    offsets = [(o, 0.0) for o in (-0.035, 0.035, -0.05, 0.05)]
    offsets += [(0.0, o) for o in (-0.035, 0.035, -0.05, 0.05)]
    offsets += [(0.035, 0.035), (-0.035, -0.035), (0.035, -0.035)]
    for (row_off, col_off), level, codec, snr in itertools.product(
        offsets, (-30.0, -10.0, -3.0), CODECS, (None, 15.0)
    ):
        pcm = _lone_tone(
            key,
            rng,
            seconds=0.5,
            row_dbm0=level,
            row_offset=row_off,
            col_offset=col_off,
            snr_db=snr,
            codec=codec,
        )
        got = _keys(pcm)
        if got:
            failures.append((row_off, col_off, level, codec, snr, got))
    assert failures == []


@pytest.mark.parametrize("seconds", [0.005, 0.010, 0.015, 0.0199])
def test_rejects_tones_shorter_than_20_ms(seconds: float) -> None:
    rng = np.random.default_rng(int(seconds * 1e4))
    failures = []
    for key, level, codec, snr in itertools.product(
        KEYS, (-30.0, -10.0, -3.0), CODECS, (None, 15.0)
    ):
        for _ in range(3):  # three random alignments against the 5 ms hop
            pcm = _lone_tone(key, rng, seconds=seconds, row_dbm0=level, snr_db=snr, codec=codec)
            got = _keys(pcm)
            if got:
                failures.append((key, level, codec, snr, got))
    assert failures == []


def test_rejects_single_tones() -> None:
    rng = np.random.default_rng(7)
    failures = []
    for freq, offset, level, codec, snr in itertools.product(
        ROW_HZ + COLUMN_HZ, (-0.015, 0.0, 0.015), (-30.0, -10.0, 0.0), CODECS, (None, 15.0)
    ):
        tone = sine(freq * (1 + offset), int(0.5 * FS), level, rng.uniform(0, 2 * np.pi))
        signal = np.concatenate((silence(0.05), tone, silence(0.05)))
        if snr is not None:
            signal = add_noise(signal, snr, dbm0_to_power(level), rng)
        got = _keys(through_g711(signal, codec))
        if got:
            failures.append((freq, offset, level, codec, snr, got))
    assert failures == []


@pytest.mark.parametrize("keys", ["123A456B789C*0#D", "1111", "5050", "99##99", "DDDD0000"])
@pytest.mark.parametrize("codec", CODECS)
def test_sequences_with_40_ms_pauses_are_separated(keys: str, codec: Codec) -> None:
    rng = np.random.default_rng(len(keys))
    for twist, noisy in ((-8.0, True), (4.0, True), (0.0, False)):
        row = _row_level(-30.0, twist)
        parts = [silence(0.05)]
        for key in keys:
            offsets = rng.uniform(-0.015, 0.015, 2)
            tone = dtmf(
                key,
                0.040,
                row_dbm0=row,
                twist_db=twist,
                row_offset=offsets[0],
                col_offset=offsets[1],
                rng=rng,
            )
            parts += [tone, silence(0.040)]
        signal = np.concatenate([*parts, silence(0.05)])
        if noisy:
            signal = add_noise(signal, 15.0, tone_power(row, twist), rng)
        assert _keys(through_g711(signal, codec)) == keys, (twist, noisy)


def test_a_long_noisy_press_is_one_key() -> None:
    rng = np.random.default_rng(3)
    for key in KEYS:
        row = _row_level(-30.0, -8.0)
        pcm = _lone_tone(key, rng, seconds=2.0, row_dbm0=row, twist=-8.0, snr_db=15.0)
        assert _keys(pcm) == key


def test_start_and_end_positions() -> None:
    rng = np.random.default_rng(4)
    tone = dtmf("7", 0.250, rng=rng)
    signal = np.concatenate((silence(0.5), tone, silence(0.3), tone, silence(0.2)))
    events = _events(through_g711(signal, Codec.PCMU))
    starts = [e for e in events if isinstance(e, ToneStarted)]
    ends = [e for e in events if isinstance(e, ToneEnded)]
    assert [e.char for e in starts] == ["7", "7"]
    expected = [(4000, 6000), (8400, 10400)]
    for end, (first, last) in zip(ends, expected, strict=True):
        assert abs(end.start - first) <= 80  # within 10 ms
        assert abs(end.end - last) <= 80
    assert [s.start for s in starts] == [e.start for e in ends]


def test_flush_reports_a_tone_still_sounding() -> None:
    detector = DtmfDetector()
    tone = through_g711(np.concatenate((silence(0.1), dtmf("#", 0.2))), Codec.PCMU)
    events = detector.feed(tone)
    assert [type(e) for e in events] == [ToneStarted]
    assert detector.flush() == [ToneEnded("#", events[0].start, tone.size)]
    assert detector.flush() == []


@pytest.mark.parametrize("chunk", [1, 37, 160, 333, 8000])
def test_chunk_size_does_not_change_the_result(chunk: int) -> None:
    rng = np.random.default_rng(5)
    parts = []
    for key in "19*D":
        parts += [silence(0.07), dtmf(key, 0.06, rng=rng)]
    pcm = through_g711(add_noise(np.concatenate(parts), 20.0, tone_power(-10, 0), rng), Codec.PCMA)
    assert _events(pcm, chunk) == _events(pcm, pcm.size)
    assert _keys(pcm) == "19*D"
    detector = DtmfDetector()
    detector.feed(pcm[:1000])
    assert detector.samples_seen == 1000


def test_silence_and_full_scale_noise_give_nothing() -> None:
    rng = np.random.default_rng(6)
    noise = np.clip(rng.normal(0, 12000, 5 * FS), -32768, 32767)
    assert _keys(through_g711(noise, Codec.PCMU)) == ""
    assert _keys(np.zeros(FS, dtype=np.int16)) == ""


def test_configuration_moves_the_lines() -> None:
    rng = np.random.default_rng(8)
    pcm = _lone_tone("5", rng, seconds=0.2, row_offset=0.03)
    assert _keys(pcm) == ""
    wide = DtmfDetector(DetectorConfig(max_offset=0.04))
    assert [type(e) for e in wide.feed(pcm)] == [ToneStarted, ToneEnded]


def test_keypad_layout() -> None:
    assert keypad_index("1") == (0, 0)
    assert keypad_index("d") == (3, 3)
    assert keypad_index("0") == (3, 1)
    with pytest.raises(ValueError, match="not a DTMF key"):
        keypad_index("E")


def test_a_lost_packet_inside_a_tone_does_not_split_it() -> None:
    # The receiver splices the audio around a lost packet (it feeds only what arrived).
    rng = np.random.default_rng(9)
    for key in KEYS:
        pcm = _lone_tone(key, rng, seconds=0.3, row_dbm0=-20, snr_db=20)
        start = 400 + 160 * 8
        spliced = np.concatenate((pcm[:start], pcm[start + 160 :]))
        assert _keys(spliced) == key
