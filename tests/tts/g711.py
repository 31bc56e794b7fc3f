"""ITU-T G.711 μ-law, written out here as the test's own reference (the classic Sun/CCITT
algorithm), so the "no clipping after G.711" check does not trust the code under test."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ULAW_BIAS = 0x84
ULAW_CLIP = 32635
ULAW_MAX_DECODED = 32124  # the largest magnitude a μ-law code decodes to


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint8]:
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), ULAW_CLIP) + ULAW_BIAS
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    codes: npt.NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    return codes


def ulaw_decode(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    c = ~codes.astype(np.int32) & 0xFF
    exponent = (c >> 4) & 0x07
    mantissa = c & 0x0F
    magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS
    return np.where(c & 0x80, -magnitude, magnitude).astype(np.int16)


def ulaw_round_trip(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    return ulaw_decode(ulaw_encode(pcm))
