"""ITU-T G.711 μ-law (PCMU) and A-law (PCMA) with numpy lookup tables.

Bit-exact to the ITU-T G.191 reference (``ulaw_compress``/``alaw_compress``): μ-law keeps
the 14 most significant bits of a 16-bit sample, A-law the 13, and a negative sample is
taken in one's complement (``~x``), so that ``x`` and ``-x - 1`` give mirror-image codes.
Each table is built once at import from the G.191 integer arithmetic; encoding a frame is
then one fancy-indexing operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray

from voipalert.codec import Codec

# The code of a zero sample: what a silent frame is made of (docs/sip.md §4.7).
SILENCE_BYTE: Final[Mapping[Codec, int]] = MappingProxyType({Codec.PCMU: 0xFF, Codec.PCMA: 0xD5})
SAMPLE_RATE_HZ: Final = 8000


def _all_int16() -> NDArray[np.int32]:
    return np.arange(-32768, 32768, dtype=np.int32)


def _ones_complement_magnitude(x: NDArray[np.int32], drop_bits: int) -> NDArray[np.int32]:
    return np.where(x < 0, (~x) >> drop_bits, x >> drop_bits)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    x = _all_int16()
    # G.191 ulaw_compress: bias 33 on the 14-bit magnitude, clip to 13 bits.
    absno = np.minimum(_ones_complement_magnitude(x, 2) + 33, 0x1FFF)
    segno = np.ones_like(absno)
    rest = absno >> 6
    while np.any(rest):
        segno += rest > 0
        rest >>= 1
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    code = (high << 4) | low | np.where(x >= 0, 0x80, 0)
    table = np.empty(65536, dtype=np.uint8)
    # Index the table by the sample's bit pattern (int16 viewed as uint16).
    table[x.astype(np.int16).view(np.uint16)] = code.astype(np.uint8)
    return table


def _build_alaw_encode() -> NDArray[np.uint8]:
    x = _all_int16()
    ix = _ones_complement_magnitude(x, 4)  # 12-bit magnitude
    iexp = np.zeros_like(ix)
    big = ix > 15
    iexp[big] = 1
    while np.any(ix > 31):
        shift = ix > 31
        ix = np.where(shift, ix >> 1, ix)
        iexp += shift
    ix = np.where(big, ix - 16 + (iexp << 4), ix)
    code = (ix | np.where(x >= 0, 0x80, 0)) ^ 0x55  # even-bit inversion
    table = np.empty(65536, dtype=np.uint8)
    table[x.astype(np.int16).view(np.uint16)] = code.astype(np.uint8)
    return table


def _build_ulaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * (mantissa & 0x0F) + step // 2 - 4 * 33
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = (ix & 0x0F) + np.where(iexp > 0, 16, 0)
    mant = (mant << 4) + 8
    mant = np.where(iexp > 1, mant << np.maximum(iexp - 1, 0), mant)
    return np.where(code > 127, mant, -mant).astype(np.int16)


_ULAW_ENCODE: Final = _build_ulaw_encode()
_ALAW_ENCODE: Final = _build_alaw_encode()
_ULAW_DECODE: Final = _build_ulaw_decode()
_ALAW_DECODE: Final = _build_alaw_decode()
_ENCODE: Final = {Codec.PCMU: _ULAW_ENCODE, Codec.PCMA: _ALAW_ENCODE}
_DECODE: Final = {Codec.PCMU: _ULAW_DECODE, Codec.PCMA: _ALAW_DECODE}


def encode(codec: Codec, pcm: NDArray[np.int16]) -> bytes:
    """16-bit linear samples → one G.711 byte per sample."""
    if pcm.dtype != np.int16:
        raise TypeError(f"G.711 encodes int16 samples, got {pcm.dtype}")
    return _ENCODE[codec][pcm.view(np.uint16)].tobytes()


def decode(codec: Codec, payload: bytes) -> NDArray[np.int16]:
    """G.711 bytes → 16-bit linear samples (a new array)."""
    return _DECODE[codec][np.frombuffer(payload, dtype=np.uint8)]


def ulaw_encode(pcm: NDArray[np.int16]) -> bytes:
    return encode(Codec.PCMU, pcm)


def ulaw_decode(payload: bytes) -> NDArray[np.int16]:
    return decode(Codec.PCMU, payload)


def alaw_encode(pcm: NDArray[np.int16]) -> bytes:
    return encode(Codec.PCMA, pcm)


def alaw_decode(payload: bytes) -> NDArray[np.int16]:
    return decode(Codec.PCMA, payload)


def round_trip(codec: Codec, pcm: NDArray[np.int16]) -> NDArray[np.int16]:
    """What the far end hears: encode then decode (used to test the detector after G.711)."""
    return _DECODE[codec][_ENCODE[codec][pcm.view(np.uint16)]]
