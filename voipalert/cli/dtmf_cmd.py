"""``voipalert dtmf decode FILE.wav …``: run the in-band DTMF detector over recordings.

Any sample rate (resampled to 8 kHz with soxr) and any channel count (mixed down). One
line per file, ``FILE: 1 2 #`` (nothing after the colon when no key was heard); with
``--json``, one JSON object per line with each key's start time and duration in seconds.
A file that is missing or unreadable gets a message on stderr and exit status 1; the other
files are still decoded.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

EXIT_OK = 0
EXIT_UNREADABLE = 1


@dataclass(frozen=True, slots=True)
class HeardKey:
    key: str
    start_s: float
    duration_s: float


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dtmf = subparsers.add_parser("dtmf", help="DTMF tools")
    actions = dtmf.add_subparsers(dest="dtmf_command", metavar="ACTION", required=True)
    decode = actions.add_parser(
        "decode",
        help="list the in-band DTMF keys heard in audio recordings",
        description="Run voipalert's in-band DTMF detector over audio files (WAV, FLAC, …).",
    )
    decode.add_argument("files", nargs="+", type=Path, metavar="FILE.wav")
    decode.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per file, with each key's start time and duration",
    )
    decode.set_defaults(func=run_decode)


def load_8k_mono(path: Path) -> NDArray[np.int16]:
    """Read an audio file as 8 kHz mono int16 (mixing channels, resampling)."""
    # Imported here: numpy, libsndfile and soxr cost every other command time to import.
    import numpy as np
    import soundfile
    import soxr

    from voipalert.media.g711 import SAMPLE_RATE_HZ

    audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE_HZ:
        mono = soxr.resample(mono, rate, SAMPLE_RATE_HZ)
    pcm: NDArray[np.int16] = np.clip(np.round(mono * 32768), -32768, 32767).astype(np.int16)
    return pcm


def decode_keys(pcm: NDArray[np.int16]) -> list[HeardKey]:
    from voipalert.media.g711 import SAMPLE_RATE_HZ
    from voipalert.media.goertzel import DtmfDetector, ToneEnded

    detector = DtmfDetector()
    events = detector.feed(pcm) + detector.flush()
    return [
        HeardKey(e.char, e.start / SAMPLE_RATE_HZ, (e.end - e.start) / SAMPLE_RATE_HZ)
        for e in events
        if isinstance(e, ToneEnded)
    ]


def _read_error(path: Path) -> str | None:
    if not path.exists():
        return "no such file"
    if not path.is_file():
        return "not a regular file"
    return None


def run_decode(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for path in args.files:
        problem = _read_error(path)
        pcm = None
        if problem is None:
            try:
                pcm = load_8k_mono(path)
            except (OSError, RuntimeError, ValueError) as exc:
                # soundfile raises LibsndfileError (a RuntimeError) for unknown formats.
                problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if pcm is None:
            print(f"voipalert: cannot read {path}: {problem}", file=sys.stderr)
            status = EXIT_UNREADABLE
            continue
        keys = decode_keys(pcm)
        if args.json:
            document = {
                "file": str(path),
                "keys": [
                    {"key": k.key, "start": round(k.start_s, 3), "duration": round(k.duration_s, 3)}
                    for k in keys
                ],
            }
            print(json.dumps(document, ensure_ascii=False))
        else:
            print(f"{path}:" + "".join(f" {k.key}" for k in keys))
    return status
