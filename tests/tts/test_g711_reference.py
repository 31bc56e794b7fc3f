import numpy as np

from tests.tts.g711 import ULAW_MAX_DECODED, ulaw_decode, ulaw_encode, ulaw_round_trip


def test_reference_matches_known_codes() -> None:
    # G.711 Table 2a: 0 → 0xFF, full scale → 0x80 (positive) / 0x00 (negative).
    pcm = np.array([0, 32767, -32768, 1000, -1000], dtype=np.int16)
    codes = ulaw_encode(pcm)
    assert codes[0] == 0xFF and codes[1] == 0x80 and codes[2] == 0x00
    assert ulaw_decode(np.array([0x80, 0x00], dtype=np.uint8)).tolist() == [
        ULAW_MAX_DECODED,
        -ULAW_MAX_DECODED,
    ]


def test_round_trip_error_is_within_half_a_step() -> None:
    pcm = np.arange(-32000, 32000, 7, dtype=np.int16)
    error = np.abs(ulaw_round_trip(pcm).astype(np.int32) - pcm)
    # The top segment's step is 1024: the error never exceeds half of it.
    assert error.max() <= 512
    assert (error[np.abs(pcm) < 100] <= 4).all()
