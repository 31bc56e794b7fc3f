"""G.711 against the standard's own tables, not against another implementation.

The expected values are rebuilt here from ITU-T G.711 Table 1 (A-law) and Table 2 (μ-law):
each segment's first decision value and step size, the decoder output in the middle of each
quantization interval, and the code layout (sign, 3-bit segment, 4-bit step; μ-law inverts
all bits, A-law the even ones). The input mapping from 16-bit samples is G.191's: keep the
14 (μ-law) or 12+sign (A-law) most significant bits, negative values in one's complement.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from voipalert.codec import Codec
from voipalert.media import g711

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
ALL_CODES = np.arange(256, dtype=np.int32)

# G.711 Table 2a (μ-law, 14-bit scale): first decision value of each segment and its step.
ULAW_SEGMENT_START = (0, 31, 95, 223, 479, 991, 2015, 4063)
ULAW_STEP = (2, 4, 8, 16, 32, 64, 128, 256)
# G.711 Table 1a (A-law, 4096 scale): first decision value of each segment and its step.
ALAW_SEGMENT_START = (0, 32, 64, 128, 256, 512, 1024, 2048)
ALAW_STEP = (2, 2, 4, 8, 16, 32, 64, 128)


def _ulaw_table() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """(lower decision value, decoder output, positive code) of every μ-law interval."""
    lower, output, code = [], [], []
    for seg, (start, step) in enumerate(zip(ULAW_SEGMENT_START, ULAW_STEP, strict=True)):
        for k in range(16):
            if seg == 0:
                # Segment 0: [0,1) → 0, then [1,3) → 2 … [29,31) → 30.
                lo = 0 if k == 0 else 2 * k - 1
                out = 2 * k
            else:
                lo = start + k * step
                out = lo + step // 2
            lower.append(lo)
            output.append(out)
            code.append(0xFF - (16 * seg + k))
    return np.array(lower), np.array(output), np.array(code)


def _alaw_table() -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    lower, output, code = [], [], []
    for seg, (start, step) in enumerate(zip(ALAW_SEGMENT_START, ALAW_STEP, strict=True)):
        for k in range(16):
            lo = start + k * step
            lower.append(lo)
            output.append(lo + step // 2)
            code.append((0x80 | (seg << 4) | k) ^ 0x55)
    return np.array(lower), np.array(output), np.array(code)


def _expected_ulaw_code(x: NDArray[np.int32]) -> NDArray[np.int64]:
    lower, _, code = _ulaw_table()
    magnitude = np.where(x < 0, (-x - 1) // 4, x // 4)  # 14-bit, one's complement
    interval = np.searchsorted(lower, magnitude, side="right") - 1
    positive = code[interval]
    return np.where(x < 0, positive & 0x7F, positive)


def _expected_alaw_code(x: NDArray[np.int32]) -> NDArray[np.int64]:
    lower, _, code = _alaw_table()
    magnitude = 2 * np.where(x < 0, (-x - 1) // 16, x // 16)  # 12 bits on the 4096 scale
    interval = np.searchsorted(lower, magnitude, side="right") - 1
    positive = code[interval]
    # The sign is bit 7 before the even-bit inversion (which leaves bit 7 alone).
    return np.where(x < 0, positive & 0x7F, positive)


def test_ulaw_encoder_matches_table_2_for_every_16_bit_sample() -> None:
    got = np.frombuffer(g711.ulaw_encode(ALL_SAMPLES.astype(np.int16)), dtype=np.uint8)
    np.testing.assert_array_equal(got, _expected_ulaw_code(ALL_SAMPLES))


def test_alaw_encoder_matches_table_1_for_every_16_bit_sample() -> None:
    got = np.frombuffer(g711.alaw_encode(ALL_SAMPLES.astype(np.int16)), dtype=np.uint8)
    np.testing.assert_array_equal(got, _expected_alaw_code(ALL_SAMPLES))


def test_ulaw_decoder_matches_table_2_outputs() -> None:
    _, output, code = _ulaw_table()
    decoded = g711.ulaw_decode(bytes(range(256))).astype(np.int64)
    for c, y in zip(code, output, strict=True):
        assert decoded[c] == 4 * y  # 14-bit scale → 16-bit
        assert decoded[c & 0x7F] == -4 * y


def test_alaw_decoder_matches_table_1_outputs() -> None:
    _, output, code = _alaw_table()
    decoded = g711.alaw_decode(bytes(range(256))).astype(np.int64)
    for c, y in zip(code, output, strict=True):
        assert decoded[c] == 8 * y  # 4096 scale → 16-bit
        assert decoded[c ^ 0x80] == -8 * y


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xFF, 0),  # positive zero
        (0x7F, 0),  # negative zero
        (0x80, 32124),  # full scale: 8031 on the 14-bit scale
        (0x00, -32124),
        (0xF0, 120),  # end of segment 0: output 30
        (0xEF, 132),  # start of segment 1: output 33
        (0xE0, 372),  # end of segment 1: output 93
        (0x8F, 16764),  # start of segment 7: output 4191
    ],
)
def test_ulaw_known_points(code: int, value: int) -> None:
    assert int(g711.ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xD5, 8),  # the A-law "silence" code: output 1 on the 4096 scale
        (0x55, -8),
        (0xAA, 32256),  # full scale: 4032
        (0x2A, -32256),
        (0xDA, 248),  # end of segment 0: output 31
        (0xC5, 264),  # start of segment 1: output 33
        (0xA5, 16896),  # start of segment 7: output 2112
    ],
)
def test_alaw_known_points(code: int, value: int) -> None:
    assert int(g711.alaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7F, 0x55),  # one's complement: -1 mirrors 0
        (3, 0xFF, 0xD5),
        (4, 0xFE, 0xD5),  # 14-bit value 1 opens μ-law's second interval
        (16, 0xFD, 0xD4),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (32124, 0x80, 0xAA),
    ],
)
def test_encoder_known_points(sample: int, ulaw: int, alaw: int) -> None:
    pcm = np.array([sample], dtype=np.int16)
    assert g711.ulaw_encode(pcm) == bytes([ulaw])
    assert g711.alaw_encode(pcm) == bytes([alaw])


def test_silence_bytes_decode_to_the_quietest_level() -> None:
    assert g711.SILENCE_BYTE == {Codec.PCMU: 0xFF, Codec.PCMA: 0xD5}
    assert g711.encode(Codec.PCMU, np.zeros(4, np.int16)) == b"\xff" * 4
    assert g711.encode(Codec.PCMA, np.zeros(4, np.int16)) == b"\xd5" * 4


def test_decode_then_encode_is_the_identity_on_every_code() -> None:
    codes = bytes(range(256))
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes
    # μ-law has two zeros; negative zero (0x7F) decodes to 0 and comes back as 0xFF.
    expected = bytearray(codes)
    expected[0x7F] = 0xFF
    assert g711.ulaw_encode(g711.ulaw_decode(codes)) == bytes(expected)


def test_encoding_is_monotonic_and_symmetric() -> None:
    for codec in (Codec.PCMU, Codec.PCMA):
        decoded = g711.round_trip(codec, ALL_SAMPLES.astype(np.int16)).astype(np.int64)
        assert np.all(np.diff(decoded) >= 0)
        # x and -x-1 land on mirror-image outputs.
        np.testing.assert_array_equal(decoded[:32768], -decoded[:32767:-1])


def test_round_trip_error_is_bounded_by_half_a_step() -> None:
    x = ALL_SAMPLES.astype(np.int16)
    err_u = np.abs(g711.round_trip(Codec.PCMU, x).astype(np.int64) - ALL_SAMPLES)
    err_a = np.abs(g711.round_trip(Codec.PCMA, x).astype(np.int64) - ALL_SAMPLES)
    inside_u = np.abs(ALL_SAMPLES) <= 32124
    inside_a = np.abs(ALL_SAMPLES) <= 32256
    assert err_u[inside_u].max() <= 4 * 256 // 2 + 3
    assert err_a[inside_a].max() <= 8 * 128 // 2 + 7


def test_encode_refuses_other_dtypes() -> None:
    with pytest.raises(TypeError, match="int16"):
        wrong: NDArray[np.int16] = np.zeros(3, dtype=np.float64)  # numpy stubs allow it
        g711.encode(Codec.PCMU, wrong)
