"""16-bit mono WAV files, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import io
import os
import tempfile
import wave
from pathlib import Path

import numpy as np

from voipalert.tts.audio import Int16Array


def encode_wav(pcm: Int16Array, rate: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())
    return buffer.getvalue()


def decode_wav(data: bytes) -> tuple[Int16Array, int]:
    """Samples and rate of a mono 16-bit WAV; ``ValueError`` for anything else."""
    try:
        with wave.open(io.BytesIO(data), "rb") as source:
            if source.getnchannels() != 1 or source.getsampwidth() != 2:
                raise ValueError("not a mono 16-bit WAV")
            frames = source.readframes(source.getnframes())
            rate = source.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc}") from None
    if len(frames) % 2:
        raise ValueError("truncated WAV data")
    return np.frombuffer(frames, dtype="<i2").astype(np.int16), rate


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_wav(path: Path, pcm: Int16Array, rate: int) -> None:
    atomic_write(path, encode_wav(pcm, rate))


def read_wav(path: Path) -> tuple[Int16Array, int]:
    return decode_wav(path.read_bytes())
